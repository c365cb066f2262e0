"""How the fused attention kernel is launched, as plain Python (no Triton import).

Every caller of the kernel takes its decisions from here: the PyTorch launcher
(``kernels/attention.py``), the ahead-of-time compile (``kernels/aot.py``) and the TensorRT plugin
(``tensorrt/plugin.py``), so the three cannot drift apart:

- the kernel's arguments and their order: input pointers (``INPUTS``), int32 scalars
  (``SCALARS``), the output pointer (``OUTPUTS``), then constexprs. TensorRT's ahead-of-time plugin
  launches with exactly this layout and can pass int32 scalars only, so everything that is not a
  shape (the attributes, the head dim, the tile sizes) is compiled in as a constexpr;
- the tile sizes and warps per dtype and head dim (``tile_config``);
- the grid (``grid``): one program per BLOCK_M queries of one (batch, head) pair;
- the scalar values (``scalar_args``);
- the op's attributes as the contract means them, whatever byte form TensorRT delivers them in
  (``decode_attributes``).

``grid`` and ``scalar_args`` take a shape ``B nh H W d`` of ints or of TensorRT shape expressions
(anything indexable whose items support ``*``), and ``grid`` a ceil-division function, so the
plugin builds its symbolic launch from the same formulas the launcher evaluates.
"""

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Sequence, Tuple

from ..configs import BIAS_METRICS, OFFICIAL_SIDE_UNIT, SCALE_MODES
from ..errors import BasamError

# The op's attributes in the contract's order (docs/fused_attention.md): the TensorRT plugin's
# attributes are passed positionally in this order, and the ONNX node carries these names.
ATTRIBUTES: Tuple[Tuple[str, type], ...] = (
    ("scale_mode", str),
    ("n0", int),
    ("patch_size", int),
    ("bias_slope", float),
    ("bias_metric", str),
)
# The kernel's runtime arguments, in order.
INPUTS = ("q", "k", "v", "rel_h", "rel_w")
SCALARS = ("heads", "height", "width")
OUTPUTS = ("out",)
CONSTEXPRS = (
    "HEAD_DIM",
    "HEAD_DIM_PAD",
    "BLOCK_M",
    "BLOCK_N",
    "SCALE_MODE",
    "N0",
    "PATCH_SIZE",
    "BIAS_SLOPE",
    "BIAS_METRIC",
)
KERNEL_NAME = "basam_attention_fwd"

# dtype name (torch's) -> Triton's element type in a kernel signature.
TRITON_TYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
# dtype name -> TensorRT's type string in an AutoTuneCombination. BF16 is left out: basam-export
# writes FP32 or FP16 graphs.
TENSORRT_TYPES = {"float32": "FP32", "float16": "FP16"}

# The pointer alignment, bytes, at which the kernel takes its vectorized path (16-byte loads and
# asynchronous copies of q, k, v, 16-byte stores of out). The kernel checks it at run time and runs
# a scalar copy of its body otherwise (attention.py), because nothing documents the alignment of a
# TensorRT plugin's tensors. 16 is what Triton's own launcher specializes on.
POINTER_ALIGNMENT = 16
# TensorRT launches an ahead-of-time kernel without raising the dynamic shared-memory limit.
SHARED_MEMORY_LIMIT = 48 * 1024
# tl.dot needs every dimension >= 16; above 128 the tiles no longer fit registers and 48 KB.
MIN_HEAD_DIM_PAD = 16
MAX_HEAD_DIM = 128
WARP_SIZE = 32


@dataclass(frozen=True)
class TileConfig:
    """One program's tile: BLOCK_M queries against BLOCK_N keys per step, and its warps/stages."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int

    @property
    def threads(self) -> int:
        """Threads per program: a launch's block_x."""
        return self.num_warps * WARP_SIZE


# (16-bit dtype?, padded head dim) -> tile. Each stays within the 48 KB of shared memory on sm_80
# and sm_90 (tests/test_kernel_aot.py compiles them): it holds the Q tile, the K and V tiles times
# the pipeline stages, and the probabilities fed to the second dot, so FP32 and the wide head dim
# take smaller tiles or fewer stages. 16-bit, d 64: 64 x 64 was the fastest of five tiles on an
# H100 at 128 x 128 tokens (the tuning mode of benchmarks/gpu_attention.py); FP32, d 64: 32 x 32 of four.
_TILES = {
    (True, 16): TileConfig(64, 64, 4, 2),
    (True, 32): TileConfig(64, 64, 4, 2),
    (True, 64): TileConfig(64, 64, 4, 2),
    (True, 128): TileConfig(64, 32, 4, 1),
    (False, 16): TileConfig(32, 32, 4, 2),
    (False, 32): TileConfig(32, 32, 4, 2),
    (False, 64): TileConfig(32, 32, 4, 2),
    (False, 128): TileConfig(32, 16, 4, 1),
}


def operand_shapes(q_shape: Sequence[int]) -> Dict[str, Tuple[int, ...]]:
    """The contract's shape of every input, from q's: q, k, v B nh H W d; rel_h B nh H W H;
    rel_w B nh H W W (the one table both the launcher and the PyTorch op check against)."""
    batch, heads, height, width, _ = q_shape
    q_shape = tuple(q_shape)
    return {
        "q": q_shape,
        "k": q_shape,
        "v": q_shape,
        "rel_h": (batch, heads, height, width, height),
        "rel_w": (batch, heads, height, width, width),
    }


def check_dtype(dtype: str) -> None:
    if dtype not in TRITON_TYPES:
        raise BasamError(
            f"the fused attention kernel takes float32, float16 or bfloat16, not {dtype}: cast "
            f"q, k, v, rel_h and rel_w to one of them"
        )


def padded_head_dim(head_dim: int) -> int:
    """The head dim the kernel's tiles use: the next power of two, at least 16 (masked loads)."""
    if not 1 <= head_dim <= MAX_HEAD_DIM:
        raise BasamError(
            f"the fused attention kernel supports head dims 1 to {MAX_HEAD_DIM}, got {head_dim}: "
            f"use attention_backend='torch' for this model"
        )
    return max(MIN_HEAD_DIM_PAD, 1 << (head_dim - 1).bit_length())


def tile_config(dtype: str, head_dim: int) -> TileConfig:
    """The tile for inputs of ``dtype`` ('float16', ...) and head dim ``head_dim``."""
    check_dtype(dtype)
    return _TILES[(dtype != "float32", padded_head_dim(head_dim))]


def check_attributes(
    scale_mode: str, n0: int, patch_size: int, bias_slope: float, bias_metric: str
) -> None:
    """Raise a one-line BasamError for attribute values outside the contract."""
    if scale_mode not in SCALE_MODES:
        raise BasamError(
            f"scale_mode {scale_mode!r} is not one of {', '.join(SCALE_MODES)}: fix the op's "
            f"attribute"
        )
    if scale_mode == "log_n" and n0 < 2:
        raise BasamError(f"scale_mode 'log_n' needs n0 >= 2 (log(n0) divides), got n0 = {n0}")
    if scale_mode == "official" and patch_size < 1:
        raise BasamError(f"scale_mode 'official' needs patch_size >= 1, got {patch_size}")
    if not math.isfinite(bias_slope):
        raise BasamError(f"bias_slope must be a finite number, got {bias_slope}; 0 means no bias")
    if bias_metric not in BIAS_METRICS:
        raise BasamError(
            f"bias_metric {bias_metric!r} is not one of {', '.join(BIAS_METRICS)}: fix the op's "
            f"attribute"
        )


def _decode_string(name: str, value: Any) -> str:
    """A string attribute from str, bytes or a numpy byte array, without C string terminators.

    TensorRT's ONNX parser copies a STRING attribute into its PluginField with a trailing NUL
    counted in the length (onnx-tensorrt onnxOpImporters.cpp, ``copyField`` for std::string:
    "Append \\0 as end of C style string", used by ``loadFields``; read at release/10.1-GA and at
    a later revision, 0137504e, that already creates quickly deployable plugins; the exact commits
    TensorRT v10.9.0 .. v11.1 pin as parsers/onnx were not retrievable), the Python binding hands
    the whole buffer over as an int8 array (NVIDIA/TensorRT python/src/infer/pyPlugin.cpp,
    ``PluginField.data`` for kCHAR, v10.9.0 .. v11.1), and ``tensorrt.plugin`` decodes it raw
    (python/packaging/bindings_wheel/tensorrt/plugin/_lib.py, ``create_plugin``:
    ``f.data.tobytes().decode("utf-8")``, the same at v10.9.0 .. v11.1 and in the 10.9.0, 10.16.1
    and 11.4.0 wheels). So 'sam' arrives as 'sam\\x00'. Only trailing NULs are a terminator; one
    inside the text is an error.
    """
    if hasattr(value, "tobytes") and not isinstance(value, (bytes, bytearray)):
        value = value.tobytes()  # a numpy array: the raw PluginField buffer
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise BasamError(f"attribute {name} is not UTF-8 text: {bytes(value)!r}") from None
    if not isinstance(value, str):
        raise BasamError(f"attribute {name} must be a string, got {type(value).__name__}")
    text = value.rstrip("\x00")
    if "\x00" in text:
        raise BasamError(f"attribute {name}={value!r} holds a NUL inside the text: fix the node")
    return text


def _scalar(name: str, value: Any) -> Any:
    """A one-element array (a PluginField's data) or numpy scalar -> its Python value."""
    if hasattr(value, "size") and hasattr(value, "reshape"):
        if value.size != 1:
            raise BasamError(
                f"attribute {name} must be one number, got {value.size} values: fix the node"
            )
        value = value.reshape(-1)[0]
    return value.item() if hasattr(value, "item") else value


def _decode_int(name: str, value: Any) -> int:
    """An INT attribute: the parser makes it one int32 (``attrs.get<int32_t>``, kINT32) and
    ``tensorrt.plugin`` passes ``int(f.data)`` (10.9 .. 11.1) or ``int(f.data[0])`` (11.4), a
    Python int; a 1-element array or numpy integer (other callers of the creator) is accepted too.
    Bools and fractions are refused."""
    value = _scalar(name, value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BasamError(f"attribute {name} must be an integer, got {value!r}")
    return value


def _decode_float(name: str, value: Any) -> float:
    """A FLOAT attribute: one float32 from the parser (kFLOAT32), passed as ``float(f.data)``, so
    the value the ONNX node holds (float32, as ONNX stores it). Ints are accepted, bools not."""
    value = _scalar(name, value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BasamError(f"attribute {name} must be a number, got {value!r}")
    return float(value)


_DECODERS = {str: _decode_string, int: _decode_int, float: _decode_float}


def decode_attributes(**values: Any) -> Dict[str, Any]:
    """The op's attributes (``ATTRIBUTES``, every one, by name) as the contract means them, checked.

    The one place where the TensorRT plugin turns what it receives into values: strings lose the
    trailing NUL TensorRT's ONNX parser adds ('log_n\\x00' -> 'log_n', never a fallback), ints and
    floats come out as Python numbers from Python numbers, numpy scalars or one-element arrays.
    Anything else (an unknown mode, a missing or extra attribute) is a one-line BasamError.
    """
    names = [name for name, _ in ATTRIBUTES]
    if sorted(values) != sorted(names):
        raise BasamError(
            f"the op takes the attributes {', '.join(names)}, got {', '.join(sorted(values))}"
        )
    decoded = {name: _DECODERS[kind](name, values[name]) for name, kind in ATTRIBUTES}
    check_attributes(**decoded)
    return decoded


def check_grid(scale_mode: str, patch_size: int, height: int, width: int) -> None:
    """The official scale takes log(LH * LW * 4096) with L = side_px // 1024: undefined below 1."""
    if scale_mode != "official":
        return
    if height * patch_size < OFFICIAL_SIDE_UNIT or width * patch_size < OFFICIAL_SIDE_UNIT:
        raise BasamError(
            f"scale_mode 'official' is undefined for a {height}x{width} token grid at patch size "
            f"{patch_size} ({height * patch_size}x{width * patch_size} px): it needs at least "
            f"{OFFICIAL_SIDE_UNIT} px per side"
        )


def constexprs(
    head_dim: int,
    tile: TileConfig,
    *,
    scale_mode: str,
    n0: int,
    patch_size: int,
    bias_slope: float,
    bias_metric: str,
) -> Dict[str, Any]:
    """The kernel's compile-time constants (names in ``CONSTEXPRS``).

    Attributes a mode does not read are set to fixed values, so that they do not compile variants
    of the same kernel (n0 only matters to 'log_n', patch_size to 'official', the metric to a
    non-zero slope).
    """
    check_attributes(scale_mode, n0, patch_size, bias_slope, bias_metric)
    return {
        "HEAD_DIM": head_dim,
        "HEAD_DIM_PAD": padded_head_dim(head_dim),
        "BLOCK_M": tile.block_m,
        "BLOCK_N": tile.block_n,
        "SCALE_MODE": scale_mode,
        "N0": n0 if scale_mode == "log_n" else 0,
        "PATCH_SIZE": patch_size if scale_mode == "official" else 0,
        "BIAS_SLOPE": float(bias_slope),
        "BIAS_METRIC": bias_metric if bias_slope != 0.0 else BIAS_METRICS[0],
    }


def signature(dtype: str) -> Dict[str, str]:
    """Triton's signature of the kernel for inputs of ``dtype``: every argument, in order."""
    check_dtype(dtype)
    pointer = f"*{TRITON_TYPES[dtype]}"
    types = {name: pointer for name in INPUTS}
    types.update({name: "i32" for name in SCALARS})
    types.update({name: pointer for name in OUTPUTS})
    types.update({name: "constexpr" for name in CONSTEXPRS})
    return types


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def grid(
    shape: Sequence[Any], tile: TileConfig, cdiv: Callable[[Any, int], Any] = ceil_div
) -> Tuple[Any, Any, int]:
    """(query blocks, B * nh, 1) for q of shape ``B nh H W d``."""
    batch, heads, height, width = shape[0], shape[1], shape[2], shape[3]
    return cdiv(height * width, tile.block_m), batch * heads, 1


def scalar_args(shape: Sequence[Any]) -> Tuple[Any, Any, Any]:
    """The int32 scalars in kernel order (``SCALARS``) for q of shape ``B nh H W d``."""
    return shape[1], shape[2], shape[3]


def autotune_types(num_io: int) -> str:
    """TensorRT's type combination: every input and the output FP32, or every one FP16."""
    options = "|".join(TENSORRT_TYPES.values())
    return ", ".join([options] * num_io)
