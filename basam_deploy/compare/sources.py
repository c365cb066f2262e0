"""What ``basam-trt compare A B`` accepts as A or B, opened as a ``parity.Side``.

- ``default``: the embedded weights of the model (``ModelSpec``), in PyTorch;
- a checkpoint file: that checkpoint in PyTorch;
- an export folder (``encoder.onnx``, ``decoder.onnx``, ``manifest.json``) or its ``encoder.onnx``:
  onnxruntime on the given execution providers;
- an engine folder (``encoder.engine`` [+ ``decoder.engine``]) or an encoder engine file: TensorRT,
  with ``decoder.engine`` beside it when there is one.
``basam-trt build`` writes engines beside the ONNX files by default, so a folder holding both is
ambiguous: it is refused, naming the file to give instead.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..errors import BasamError
from ..export.manifest import ExportManifest, find_export_manifest
from ..export.onnx_export import ENCODER_FILE
from ..export.parity_check import onnxruntime_side, torch_side
from ..parity import Side
from ..runners.providers import DEFAULT_PROVIDERS
from ..tensorrt.manifest import read_engine_manifest
from ..tensorrt.plan import DECODER_ENGINE, ENCODER_ENGINE, ENGINE_SUFFIX, engine_manifest_path
from ..weights import DEFAULT as DEFAULT_CHECKPOINT
from ..weights import resolve_checkpoint
from .engines import engine_side
from .model import ModelSpec, build_model, spec_from_manifest

KINDS = ("pytorch", "onnx", "engine")


@dataclass(frozen=True)
class Source:
    """A parsed A or B: ``kind`` one of KINDS; ``path`` None for ``default``."""

    text: str
    kind: str
    path: Optional[Path]

    def export_manifest(self) -> Optional[ExportManifest]:
        """The export manifest this source comes with (an export folder's, or the one beside an
        engine), for the model of a PyTorch side; None for a checkpoint, or a folder without
        basam-export's manifest."""
        if self.kind == "pytorch" or self.path is None:
            return None
        folder = self.path if self.path.is_dir() else self.path.parent
        return find_export_manifest(folder)


def _folder_kind(folder: Path, text: str) -> Source:
    has_onnx = (folder / ENCODER_FILE).is_file()
    has_engine = (folder / ENCODER_ENGINE).is_file()
    if has_onnx and has_engine:
        raise BasamError(
            f"{text} holds both an export and engines: give {folder / ENCODER_FILE} or "
            f"{folder / ENCODER_ENGINE}"
        )
    if has_onnx:
        return Source(text, "onnx", folder)
    if has_engine:
        return Source(text, "engine", folder / ENCODER_ENGINE)
    raise BasamError(
        f"{text} holds neither {ENCODER_FILE} (a basam-export folder) nor {ENCODER_ENGINE} "
        f"(basam-trt build's engines)"
    )


def parse_source(text: str) -> Source:
    """``default``, a checkpoint file, an export folder or its encoder.onnx, an engine folder or
    encoder engine file; one-line BasamErrors otherwise."""
    if text == DEFAULT_CHECKPOINT:
        return Source(text, "pytorch", None)
    path = Path(text)
    if path.is_dir():
        return _folder_kind(path, text)
    if not path.is_file():
        raise BasamError(
            f"{text}: no such file or folder (give 'default', a checkpoint file, an export "
            f"folder or an engine folder/file)"
        )
    if path.suffix == ".onnx":
        if path.name != ENCODER_FILE:
            raise BasamError(f"{text}: give the export's {ENCODER_FILE} or its folder")
        return Source(text, "onnx", path.parent)
    if path.suffix == ENGINE_SUFFIX or engine_manifest_path(path).is_file():
        graph = read_engine_manifest(path).source.graph
        if graph != "encoder":
            raise BasamError(f"{text} is a {graph} engine: give the encoder engine")
        return Source(text, "engine", path)
    return Source(text, "pytorch", path)


def model_spec(
    sources: Sequence[Source], model: Optional[str] = None, preset: Optional[str] = None
) -> ModelSpec:
    """The PyTorch model for checkpoint sides: the first export manifest among ``sources`` (its
    model, preset and bias parameters), else tiny / basam. A ``model`` or ``preset`` that differs
    from it starts from that model and preset's own defaults."""
    spec = ModelSpec()
    for source in sources:
        manifest = source.export_manifest()
        if manifest is not None:
            spec = spec_from_manifest(manifest)
            break
    if (model or spec.model, preset or spec.preset) != (spec.model, spec.preset):
        spec = ModelSpec(model or spec.model, preset or spec.preset)
    return spec


def open_side(
    source: Source,
    spec: ModelSpec,
    *,
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    torch_device: str = "cpu",
) -> Side:
    """The Side ``source`` means (nothing is activated yet)."""
    if source.kind == "pytorch":
        checkpoint = (
            resolve_checkpoint(spec.model, DEFAULT_CHECKPOINT, spec.preset)
            if source.path is None
            else source.path
        )
        side = torch_side(build_model(spec, checkpoint), torch_device)
        weights = checkpoint.name if checkpoint else "random init"
        side.label += f" {spec.describe()} {weights}"
        return side
    assert source.path is not None
    if source.kind == "onnx":
        precision = ExportManifest.read(source.path).precision
        return onnxruntime_side(source.path, precision, providers)
    decoder = source.path.with_name(DECODER_ENGINE)
    return engine_side(source.path, decoder if decoder.is_file() else None)
