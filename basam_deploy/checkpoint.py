"""Loading SAM and BA-SAM checkpoints into a ``BasamSam``.

Three layouts are read (tests build each one):
- ``sam``: a plain state dict of the full Sam (``image_encoder.*``, ``prompt_encoder.*``,
  ``mask_decoder.*``), as Meta publishes them;
- ``training``: a dict whose ``state_dict`` holds the full Sam, as the official BA-SAM training code
  saves it (with ``epoch``, ``optimizer``, ...): ``image_encoder.blocks.{i}.attn.coefficient``, no
  ``pos_embed``, rel-pos tables at the training resolution's size; all of it is loaded, rel-pos
  tables included;
- ``image-encoder``: an image-encoder-only state dict (``patch_embed.*``, ``blocks.*``, ``neck.*``).

A checkpoint is data, never code: it is read with ``torch.load(weights_only=True)`` (numpy scalars,
which training scripts store as metrics, are allowed). Every problem is a one-line BasamError.
"""

import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from .configs import MODEL_CONFIGS, OFFICIAL_COEFFICIENT_INIT
from .errors import BasamError
from .modeling import BasamSam

ENCODER_PREFIX = "image_encoder."
COEFFICIENT_SUFFIX = ".attn.coefficient"
# Tables that BasamSam resizes to the grid on every call, so any stored length is valid.
RESIZABLE_SUFFIXES = (".rel_pos_h", ".rel_pos_w", "image_encoder.pos_embed")
LFS_POINTER = b"version https://git-lfs"


@dataclass
class CheckpointReport:
    """What ``load_checkpoint`` read: the file, its layout, and notes on anything left at init."""

    path: str
    layout: str
    notes: List[str] = field(default_factory=list)


def _numpy_scalar_globals() -> list:
    # numpy 2 renamed numpy.core to numpy._core; numpy 1.26 already has a numpy._core, but
    # without multiarray, so the attribute decides, not the module's presence.
    core = np._core if hasattr(getattr(np, "_core", None), "multiarray") else np.core
    dtypes = [np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_]
    return [core.multiarray.scalar, np.dtype] + [type(np.dtype(t)) for t in dtypes]


def _short_list(items: List[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", and {len(items) - limit} more" if len(items) > limit else "")


def read_checkpoint(path: Union[str, Path]) -> object:
    """``torch.load`` the file as data, turning every failure into one line."""
    path = Path(path)
    if not path.exists():
        raise BasamError(f"checkpoint not found: {path} (check the path)")
    if path.is_dir():
        raise BasamError(f"checkpoint {path} is a directory: give the checkpoint file itself")
    with torch.serialization.safe_globals(_numpy_scalar_globals()), warnings.catch_warnings():
        # torch warns (several lines, on stderr) before it fails on a newer pickle protocol; the
        # failure below names the protocol and the fix in one line.
        warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch.load raises many types for damaged files
            code, reason = _code_it_asks_for(path, exc), _load_failure_reason(exc)
            protocol = _pickle_protocol(path)
    if code:
        raise BasamError(
            f"checkpoint {path} is a pickle that asks for code ({_short_list(code, 3)}), which a "
            f"weights-only load refuses (a checkpoint is loaded as data, never run): re-save it "
            f"from trusted code as a plain state dict, torch.save(model.state_dict(), path)"
        ) from None
    if protocol is not None and protocol > torch.serialization.DEFAULT_PROTOCOL:
        raise BasamError(
            f"checkpoint {path} was saved with pickle protocol {protocol}, which a weights-only "
            f"load cannot read ({reason}): re-save it with torch.save's default protocol"
        ) from None
    with open(path, "rb") as f:
        if f.read(len(LFS_POINTER)) == LFS_POINTER:
            raise BasamError(
                f"checkpoint {path} is a Git LFS pointer, not the weights: run 'git lfs pull'"
            ) from None
    raise BasamError(
        f"checkpoint {path} is truncated or not a PyTorch checkpoint "
        f"({path.stat().st_size} bytes; {reason}): download or save it again"
    ) from None


def _load_failure_reason(exc: Exception) -> str:
    """The informative part of a torch.load failure, one short line."""
    message = str(exc)
    unpickler = re.search(r"WeightsUnpickler error: ([^\n]+)", message)
    text = unpickler.group(1) if unpickler else message.strip().split(". ")[0].split("\n")[0]
    return f"{type(exc).__name__}: {text[:100]}" if text else type(exc).__name__


def _pickle_protocol(path: Path) -> Optional[int]:
    """The pickle protocol of a zip checkpoint's ``data.pkl`` (its PROTO opcode), or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            with archive.open(name) as f:
                head = f.read(2)
    except (OSError, zipfile.BadZipFile, StopIteration):
        return None
    return head[1] if len(head) == 2 and head[0] == pickle.PROTO[0] else None


def _code_it_asks_for(path: Path, exc: Exception) -> List[str]:
    """The classes/functions (``module.name``) the file's pickle imports beyond what a weights-only
    load allows: what made ``torch.load(weights_only=True)`` refuse it, if that is the reason.

    Structural first: ``torch.serialization.get_unsafe_globals_in_checkpoint`` (public since torch
    2.5) disassembles the pickle without running it, whatever words the refusal uses (they changed
    across torch 2.6 .. 2.13: "Unsupported global: GLOBAL m.n was not an allowed global by
    default", "Trying to load unsupported GLOBAL m.n whose module m is blocked"; read in
    torch/_weights_only_unpickler.py of 2.13.0 and 2.14.1). It reads only the zip format with
    protocol-2 pickles (torch.save's defaults); for anything else the refusal's text names it.
    Must run inside the same ``safe_globals`` context as the load."""
    if not isinstance(exc, pickle.UnpicklingError):  # what the weights-only unpickler raises
        return []
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # not a zip checkpoint, another pickle protocol, or an older torch
        return re.findall(r"GLOBAL (\S+?)\.?(?:\s|$)", str(exc))[:1]


def sam_state_dict(obj: object, path: Union[str, Path]) -> Tuple[Dict[str, torch.Tensor], str]:
    """The full-Sam state dict in a loaded checkpoint, and the checkpoint's layout name."""
    if not isinstance(obj, Mapping):
        raise BasamError(
            f"checkpoint {path} holds a {type(obj).__name__}, not a state dict: save "
            f"model.state_dict() instead"
        )
    layout = "sam"
    if isinstance(obj.get("state_dict"), Mapping):
        obj, layout = obj["state_dict"], "training"
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    if any(k.startswith(ENCODER_PREFIX) for k in state):
        return state, layout
    if any(k.startswith(("patch_embed.", "blocks.")) for k in state):
        return {ENCODER_PREFIX + k: v for k, v in state.items()}, "image-encoder"
    raise BasamError(
        f"checkpoint {path} holds no SAM weights (keys such as {_short_list(sorted(obj)[:4])}): "
        f"expected a SAM state dict (image_encoder.*), an official BA-SAM checkpoint "
        f"(state_dict: image_encoder.*) or an image-encoder state dict (patch_embed.*, blocks.*)"
    )


def _encoder_shape(state: Mapping[str, torch.Tensor]) -> Tuple[int, int, int]:
    """(embed_dim, depth, num_heads) of the image encoder a state dict holds (0 if unknown)."""
    embed = state.get(ENCODER_PREFIX + "patch_embed.proj.weight")
    blocks = {
        int(m.group(1)) for k in state if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))
    }
    rel_pos = state.get(ENCODER_PREFIX + "blocks.0.attn.rel_pos_h")
    embed_dim = embed.shape[0] if embed is not None else 0
    heads = embed_dim // rel_pos.shape[1] if rel_pos is not None and embed_dim else 0
    return embed_dim, (max(blocks) + 1 if blocks else 0), heads


def _check_model_size(sam: BasamSam, state: Mapping[str, torch.Tensor], path) -> None:
    config = MODEL_CONFIGS[sam.model_name]
    found = _encoder_shape(state)
    expected = (config.embed_dim, config.depth, config.num_heads)
    if found == expected or found[0] == 0:
        return
    match = [n for n, c in MODEL_CONFIGS.items() if (c.embed_dim, c.depth, c.num_heads) == found]
    hint = f"build it as model {match[0]!r}" if match else "it is none of the known models"
    raise BasamError(
        f"checkpoint {path} holds an image encoder of width {found[0]}, depth {found[1]}, "
        f"{found[2]} heads, but model {sam.model_name!r} is width {expected[0]}, depth "
        f"{expected[1]}, {expected[2]} heads: {hint}"
    )


def load_checkpoint(sam: BasamSam, path: Union[str, Path]) -> CheckpointReport:
    """Load a checkpoint of any supported layout into ``sam``, or raise one BasamError line."""
    state, layout = sam_state_dict(read_checkpoint(path), path)
    report = CheckpointReport(path=str(path), layout=layout)
    _check_model_size(sam, state, path)
    target = sam.state_dict()
    preset = sam.image_encoder.preset.name
    allowed_missing = set()

    has_coefficients = any(k.endswith(COEFFICIENT_SUFFIX) for k in state)
    wants_coefficients = any(k.endswith(COEFFICIENT_SUFFIX) for k in target)
    if has_coefficients and not wants_coefficients:
        raise BasamError(
            f"checkpoint {path} holds the official BA-SAM's learned rel-pos 'coefficient' per "
            f"attention layer: load it with preset 'basam-official' (not {preset!r})"
        )
    if wants_coefficients and not has_coefficients:
        allowed_missing |= {k for k in target if k.endswith(COEFFICIENT_SUFFIX)}
        report.notes.append(
            f"no 'coefficient' weights: left at the official initial value "
            f"{OFFICIAL_COEFFICIENT_INIT}, as the official code does for a stock SAM checkpoint"
        )
    pos_key = ENCODER_PREFIX + "pos_embed"
    if pos_key in state and pos_key not in target:
        del state[pos_key]
        report.notes.append(
            f"dropped {pos_key}: preset {preset!r} has no absolute position embedding"
        )
    if layout == "image-encoder":
        allowed_missing |= {k for k in target if not k.startswith(ENCODER_PREFIX)}
        report.notes.append(
            "image-encoder-only checkpoint: the prompt encoder and mask decoder keep their "
            "random initialization"
        )

    missing = sorted(set(target) - set(state) - allowed_missing)
    unexpected = sorted(set(state) - set(target))
    resizable, mismatched = [], []
    for key in sorted(set(state) & set(target)):
        have, want = tuple(state[key].shape), tuple(target[key].shape)
        if have == want:
            continue
        if key.endswith(RESIZABLE_SUFFIXES) and len(have) == len(want) and have[-1] == want[-1]:
            resizable.append(key)
        else:
            mismatched.append(f"{key} {have} vs model {want}")
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_short_list(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_short_list(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches ({_short_list(mismatched, 3)})")
    if problems:
        raise BasamError(
            f"checkpoint {path} does not fit model {sam.model_name!r} preset {preset!r}: "
            f"{'; '.join(problems)}; check the model and preset it was trained with"
        )

    # A NaN or infinite weight makes every output NaN (or a mask that only looks valid).
    non_finite = [
        k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if non_finite:
        raise BasamError(
            f"checkpoint {path} holds NaN or infinite values in {len(non_finite)} tensors "
            f"({_short_list(sorted(non_finite))}): it is damaged or from a diverged run; use "
            f"another checkpoint"
        )

    for key in resizable:
        # Adopt the stored length (e.g. rel-pos tables of a 2048 px training run); the forward
        # resizes them to every input's grid.
        module_name, _, name = key.rpartition(".")
        module = sam.get_submodule(module_name)
        current = getattr(module, name)
        setattr(module, name, nn.Parameter(current.new_empty(state[key].shape)))
    sam.load_state_dict(state, strict=False)
    return report
