"""``basam::BasamAttention``: the fused BA-SAM attention as a TensorRT quickly deployable plugin.

Importing this module registers the plugin with TensorRT (>= 10.9, ``tensorrt.plugin``); the build
plan imports it (``plan.PLUGIN_MODULE``) before the ONNX parser meets a node of op type
``BasamAttention`` in namespace ``basam`` (docs/fused_attention.md). The plugin is ahead-of-time
only: at build time ``aot_impl`` compiles the Triton kernel to PTX for the GPU the builder runs on
and describes its launch symbolically, and TensorRT embeds both in the engine, which then runs on
the plain TensorRT runtime (trtexec, C++) with no Python and no Triton.

Every launch decision (tile per dtype and head dim, grid formula, int32 scalars and their order,
block size, shared memory bound) is ``basam_deploy.kernels.launch``'s, evaluated here on TensorRT's
shape expressions; this module only translates between the two APIs.

- inputs: q, k, v (B nh H W d), rel_h (B nh H W H), rel_w (B nh H W W), all FP32 or all FP16;
  output: B nh H W d in the same type. d must be a build-time constant (it is a constexpr of the
  kernel); B, H and W may be dynamic.
- attributes, in the contract's order: scale_mode, n0, patch_size, bias_slope, bias_metric. They are
  compiled into the kernel, so they are not serialized into the engine (TensorRT's AOT rule).
  TensorRT's ONNX parser delivers the strings with a trailing NUL ('log_n\\x00'); every function
  here reads the attributes through ``launch.decode_attributes``, which gives the op's meaning
  whatever the form (tested without TensorRT in tests/test_trt_plugin.py).
- PTX ISA version: ``aot_impl`` runs inside TensorRT's build, which passes it nothing but the
  tensors and attributes, so the version to compile for is a module-level setting the builder sets
  first: ``set_ptx_version("8.0")`` (None: ``kernels.ptx.DEFAULT_PTX_VERSION``, raised to the
  GPU's minimum). ``compiled_kernels()`` lists what the build compiled (``ptx_version``,
  ``ptx_target``, ``assumed_alignment`` each), for the engine manifest.
- pointers: the PTX assumes no alignment of TensorRT's buffers (``kernels/aot.py``).
"""

import importlib
from typing import TYPE_CHECKING, List, Optional, Tuple, Union

from ..errors import BasamError
from ..fused_op_contract import OP_TYPE, PLUGIN_NAMESPACE
from ..kernels import launch
from ..kernels.ptx import minimum_driver_for_ptx
from .trt_import import import_tensorrt

if TYPE_CHECKING:
    from ..kernels.aot import CompiledAttention

trt = import_tensorrt()
trtp = importlib.import_module("tensorrt.plugin")

# The registry key the ONNX parser looks the node's plugin up by (the contract's names).
PLUGIN_ID = f"{PLUGIN_NAMESPACE}::{OP_TYPE}"
# TensorRT type -> the dtype name launch.py and the kernel use; exactly the autotune's types.
_DTYPES = {trt.float32: "float32", trt.float16: "float16"}

# The PTX ISA version aot_impl compiles for (None: the default); see set_ptx_version.
_ptx_version: Optional[str] = None
# Every kernel aot_impl compiled in this process, in order.
_compiled: List["CompiledAttention"] = []


def set_ptx_version(version: Optional[str]) -> None:
    """The PTX ISA version ('8.0') the kernels of the next builds are compiled for; None restores
    the default. Checked here (a version NVIDIA's driver table knows), so that a typo fails before
    TensorRT starts building."""
    global _ptx_version
    if version is not None:
        minimum_driver_for_ptx(version)
    _ptx_version = version


def compiled_kernels() -> List["CompiledAttention"]:
    """The kernels ``aot_impl`` compiled in this process, oldest first (a copy)."""
    return list(_compiled)


@trtp.register(PLUGIN_ID)
def basam_attention_desc(
    q: trtp.TensorDesc,
    k: trtp.TensorDesc,
    v: trtp.TensorDesc,
    rel_h: trtp.TensorDesc,
    rel_w: trtp.TensorDesc,
    scale_mode: str,
    n0: int,
    patch_size: int,
    bias_slope: float,
    bias_metric: str,
) -> trtp.TensorDesc:
    """The output is B nh H W d in q's type; bad attribute values stop the build here."""
    launch.decode_attributes(
        scale_mode=scale_mode,
        n0=n0,
        patch_size=patch_size,
        bias_slope=bias_slope,
        bias_metric=bias_metric,
    )
    return q.like()


@trtp.autotune(PLUGIN_ID)
def basam_attention_autotune(
    q: trtp.TensorDesc,
    k: trtp.TensorDesc,
    v: trtp.TensorDesc,
    rel_h: trtp.TensorDesc,
    rel_w: trtp.TensorDesc,
    outputs: Tuple[trtp.TensorDesc],
) -> List[trtp.AutoTuneCombination]:
    """All five inputs and the output share one type, FP32 or FP16, in linear layout."""
    num_io = len(launch.INPUTS) + len(launch.OUTPUTS)
    return [trtp.AutoTuneCombination(launch.autotune_types(num_io), "LINEAR")]


def _head_dim(q: trtp.TensorDesc) -> int:
    dim = q.shape_expr[4]
    if dim.is_fake or not dim.is_constant:
        raise BasamError(
            "basam::BasamAttention needs a static head dim (the last axis of q), compiled into "
            "its kernel: export the ONNX with a fixed head dim"
        )
    return dim.constant_value()


def _dtype(q: trtp.TensorDesc) -> str:
    if q.dtype not in _DTYPES:
        raise BasamError(
            f"basam::BasamAttention takes FP32 or FP16 tensors, got {q.dtype}: export the graph "
            f"in FP32 or FP16"
        )
    return _DTYPES[q.dtype]


@trtp.aot_impl(PLUGIN_ID)
def basam_attention_aot(
    q: trtp.TensorDesc,
    k: trtp.TensorDesc,
    v: trtp.TensorDesc,
    rel_h: trtp.TensorDesc,
    rel_w: trtp.TensorDesc,
    scale_mode: str,
    n0: int,
    patch_size: int,
    bias_slope: float,
    bias_metric: str,
    outputs: Tuple[trtp.TensorDesc],
    tactic: int,
) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:
    """(kernel name, PTX, launch, int32 scalars) of the kernel for these types and attributes.

    ``tactic`` is TensorRT's default (0): one tile per dtype and head dim, from launch.py.
    """
    # Imported here: Triton is needed to build an engine, not to run one or to import this module.
    from ..kernels.aot import compile_attention

    attributes = launch.decode_attributes(
        scale_mode=scale_mode,
        n0=n0,
        patch_size=patch_size,
        bias_slope=bias_slope,
        bias_metric=bias_metric,
    )
    compiled = compile_attention(_dtype(q), _head_dim(q), **attributes, ptx_version=_ptx_version)
    _compiled.append(compiled)
    shape = q.shape_expr  # B nh H W d, symbolic
    params = trtp.KernelLaunchParams()
    params.grid_x, params.grid_y, params.grid_z = launch.grid(shape, compiled.tile, trtp.cdiv)
    params.block_x = compiled.threads
    params.shared_mem = compiled.shared
    scalars = trtp.SymIntExprs.from_tuple(
        [trtp.SymInt32(value) for value in launch.scalar_args(shape)]
    )
    return compiled.name, compiled.ptx, params, scalars
