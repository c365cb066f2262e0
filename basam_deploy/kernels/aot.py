"""Ahead-of-time compile of the fused attention kernel to PTX, for TensorRT's plugin.

``compile_attention(dtype, head_dim, ..., target=GPUTarget("cuda", 90, 32))`` returns the kernel's
name, its PTX, its shared memory and warps: what ``tensorrt.plugin.aot_impl`` hands to TensorRT,
which embeds the PTX in the engine and launches it itself with the input pointers, the int32
scalars and the output pointer (``launch.INPUTS + launch.SCALARS + launch.OUTPUTS``), nothing else.

PTX ISA version: the driver of the GPU that runs the engine JIT-compiles the PTX, and an older
driver than the PTX's ``.version`` needs refuses it. Triton's default is the newest version of its
bundled ptxas (9.4 with Triton 3.9 on sm_90: a CUDA 13.4 driver), so the version is pinned here:
``ptx_version`` (default ``DEFAULT_PTX_VERSION``, raised to the target's own minimum; ``ptx.py``),
passed to Triton as its ``ptx_version`` option, and read back from the PTX text into
``CompiledAttention.ptx_version`` / ``.ptx_target``. ``minimum_driver_for_ptx`` gives the driver
it needs.

Triton appends hidden parameters to every kernel (a global-scratch pointer and, in recent
versions, a profile-scratch pointer: two in 3.9) that its own launcher fills. This kernel
needs neither (scratch sizes are 0 and the PTX never reads them), so they are removed from the PTX
entry here: the parameter list then matches what TensorRT passes, instead of the driver reading
pointers past the end of TensorRT's argument array. A kernel that did read one is refused.

Pointer alignment: Triton's own launcher compiles a variant per call depending on whether each
pointer is 16-byte aligned; TensorRT launches one embedded kernel with whatever pointers it has, and
documents no alignment for a plugin's tensors (include/NvInferRuntime.h, v10.9.0 .. v11.1, states
256 bytes only as what ``IExecutionContext::setTensorAddress`` requires of the engine's own I/O
addresses). So the PTX assumes nothing
(no ``tt.divisibility`` on any argument: ``CompiledAttention.assumed_alignment`` is 1, read from the
compiled TTIR); the kernel itself branches at run time to a vectorized copy of its body when the
pointers happen to be aligned (``attention.py``).
"""

import re
from dataclasses import dataclass
from typing import Any, List, Optional

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from ..errors import BasamError
from . import launch
from .attention import basam_attention_fwd, compiled_mode
from .ptx import (
    DEFAULT_PTX_VERSION,
    minimum_driver_for_ptx,
    ptx_header,
    ptx_version_for,
    target_for_arch,
    triton_ptx_option,
)

__all__ = [
    "DEFAULT_PTX_VERSION",
    "CompiledAttention",
    "GPUTarget",
    "assumed_alignment",
    "compile_attention",
    "drop_unused_params",
    "entry_params",
    "minimum_driver_for_ptx",
    "ptx_version_for",
]


@dataclass(frozen=True)
class CompiledAttention:
    """One compiled variant of the kernel.

    name: the PTX entry (a kernel launch looks it up by this name).
    ptx: PTX text whose entry takes exactly the kernel's runtime arguments, in order.
    shared: shared memory per program, bytes (a launch's dynamic shared_mem).
    num_warps: warps per program (a launch's block_x is ``num_warps * 32``).
    tile: the tile it was compiled for (its grid: ``launch.grid(shape, tile)``).
    arch: the compute capability it targets, e.g. 90.
    ptx_version: the PTX ISA version of ``ptx`` (its ``.version``), e.g. '8.0';
        ``minimum_driver_for_ptx(ptx_version)`` is the CUDA driver a GPU needs to run it.
    ptx_target: the PTX's ``.target``, e.g. 'sm_90a'.
    assumed_alignment: the byte alignment the entry assumes of its pointer arguments (1: none).
    """

    name: str
    ptx: str
    shared: int
    num_warps: int
    tile: launch.TileConfig
    arch: int
    ptx_version: str
    ptx_target: str
    assumed_alignment: int

    @property
    def threads(self) -> int:
        return self.num_warps * launch.WARP_SIZE


def _entry(ptx: str, name: str) -> "re.Match[str]":
    """The ``.entry name(...)`` header of ``ptx``; group 'params' is its parameter list."""
    match = re.search(rf"\.entry\s+{re.escape(name)}\s*\((?P<params>[^)]*)\)", ptx)
    if match is None:
        raise BasamError(f"the PTX has no entry {name!r}: Triton's output format changed")
    return match


def _declarations(match: "re.Match[str]") -> List[str]:
    return [p.strip() for p in match.group("params").split(",") if p.strip()]


def entry_params(ptx: str, name: str) -> List[str]:
    """The parameter names of entry ``name`` in ``ptx``, in order."""
    return [declaration.split()[-1] for declaration in _declarations(_entry(ptx, name))]


def assumed_alignment(ttir: str, name: str) -> int:
    """The largest ``tt.divisibility`` (bytes) Triton's IR gives an argument of function ``name``
    (its one-line signature): the alignment the compiled code takes for granted; 1 when none."""
    match = re.search(rf"^\s*tt\.func\s+public\s+@{re.escape(name)}\(.*$", ttir, re.M)
    if match is None:
        raise BasamError(f"the Triton IR has no function {name!r}: Triton's output format changed")
    values = re.findall(r"tt\.divisibility\s*=\s*(\d+)", match.group(0))
    return max((int(v) for v in values), default=1)


def drop_unused_params(ptx: str, name: str, keep: int) -> str:
    """``ptx`` with the parameters of entry ``name`` after the first ``keep`` removed.

    Each removed parameter must be unused in the PTX body; otherwise a launch that omits it would
    be wrong, and a BasamError says so.
    """
    match = _entry(ptx, name)
    declarations = _declarations(match)
    if len(declarations) < keep:
        raise BasamError(
            f"kernel {name} has {len(declarations)} parameters, fewer than its {keep} arguments: "
            f"the kernel and launch.py disagree"
        )
    body = ptx[: match.start()] + ptx[match.end() :]
    for declaration in declarations[keep:]:
        param = declaration.split()[-1]
        if re.search(rf"\b{re.escape(param)}\b", body):
            raise BasamError(
                f"kernel {name} reads Triton's hidden parameter {param} (scratch memory), which "
                f"TensorRT's ahead-of-time launch cannot pass: remove what needs it from the kernel"
            )
    params = ",\n".join(f"\t{d}" for d in declarations[:keep])
    start, end = match.span("params")
    return ptx[:start] + f"\n{params}\n" + ptx[end:]


def compile_attention(
    dtype: str,
    head_dim: int,
    *,
    scale_mode: str,
    n0: int,
    patch_size: int,
    bias_slope: float,
    bias_metric: str,
    target: Optional[GPUTarget] = None,
    tile: Optional[launch.TileConfig] = None,
    ptx_version: Optional[str] = None,
) -> CompiledAttention:
    """Compile the kernel for inputs of ``dtype`` ('float32', 'float16', 'bfloat16') and head dim
    ``head_dim``, with the op's attributes as constexprs.

    target: e.g. ``GPUTarget("cuda", 90, 32)``; None compiles for the current CUDA device (needs
    one). No GPU is needed otherwise. tile: None takes ``launch.tile_config``.
    ptx_version: the PTX ISA version to write ('8.0'); None takes ``DEFAULT_PTX_VERSION``. Either
    is raised to the target's own minimum where that is higher (``ptx.ptx_version_for``).
    """
    if not compiled_mode():
        raise BasamError(
            "compiling the kernel needs Triton's compiler, but this process runs its interpreter: "
            "unset TRITON_INTERPRET (Triton reads it when it is imported)"
        )
    tile = tile or launch.tile_config(dtype, head_dim)
    constants = launch.constexprs(
        head_dim,
        tile,
        scale_mode=scale_mode,
        n0=n0,
        patch_size=patch_size,
        bias_slope=bias_slope,
        bias_metric=bias_metric,
    )
    # No ``attrs``: no argument is assumed aligned (or divisible) by anything; see the docstring.
    source = ASTSource(basam_attention_fwd, launch.signature(dtype), constexprs=constants)
    if target is None:
        target = triton.runtime.driver.active.get_current_target()
    version = ptx_version_for(target.arch, ptx_version)
    options = {
        "num_warps": tile.num_warps,
        "num_stages": tile.num_stages,
        "ptx_version": triton_ptx_option(version),
    }
    compiled = triton.compile(source, target=target, options=options)
    metadata: Any = compiled.metadata
    if metadata.shared > launch.SHARED_MEMORY_LIMIT:
        raise BasamError(
            f"the {dtype} kernel for head dim {head_dim} needs {metadata.shared} bytes of shared "
            f"memory, over TensorRT's {launch.SHARED_MEMORY_LIMIT}: lower its tile in launch.py"
        )
    ptx = compiled.asm["ptx"]
    written, ptx_target = ptx_header(ptx)
    if (written, ptx_target) != (version, target_for_arch(target.arch)):
        raise BasamError(
            f"Triton wrote PTX {written} for {ptx_target}, not the pinned {version} for "
            f"{target_for_arch(target.arch)}: this Triton ignores the ptx_version option"
        )
    arguments = len(launch.INPUTS) + len(launch.SCALARS) + len(launch.OUTPUTS)
    return CompiledAttention(
        name=metadata.name,
        ptx=drop_unused_params(ptx, metadata.name, arguments),
        shared=metadata.shared,
        num_warps=metadata.num_warps,
        tile=tile,
        arch=target.arch,
        ptx_version=written,
        ptx_target=ptx_target,
        assumed_alignment=assumed_alignment(compiled.asm["ttir"], metadata.name),
    )
