"""Ahead-of-time compile of the fused attention kernel to PTX, for TensorRT's plugin.

``compile_attention(dtype, head_dim, ..., target=GPUTarget("cuda", 90, 32))`` returns the kernel's
name, its PTX, its shared memory and warps: what ``tensorrt.plugin.aot_impl`` hands to TensorRT,
which embeds the PTX in the engine and launches it itself with the input pointers, the int32
scalars and the output pointer (``launch.INPUTS + launch.SCALARS + launch.OUTPUTS``), nothing else.

Triton appends hidden parameters to every kernel (a global-scratch pointer and, in recent
versions, a profile-scratch pointer: two in 3.9) that its own launcher fills. This kernel
needs neither (scratch sizes are 0 and the PTX never reads them), so they are removed from the PTX
entry here: the parameter list then matches what TensorRT passes, instead of the driver reading
pointers past the end of TensorRT's argument array. A kernel that did read one is refused.

Unlike Triton's launcher, which looks at each call's pointers, an ahead-of-time kernel cannot
check their alignment: it is compiled for ``launch.POINTER_ALIGNMENT``-byte aligned pointers.
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

__all__ = [
    "CompiledAttention",
    "GPUTarget",
    "compile_attention",
    "drop_unused_params",
    "entry_params",
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
    """

    name: str
    ptx: str
    shared: int
    num_warps: int
    tile: launch.TileConfig
    arch: int

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
) -> CompiledAttention:
    """Compile the kernel for inputs of ``dtype`` ('float32', 'float16', 'bfloat16') and head dim
    ``head_dim``, with the op's attributes as constexprs.

    target: e.g. ``GPUTarget("cuda", 90, 32)``; None compiles for the current CUDA device (needs
    one). No GPU is needed otherwise. tile: None takes ``launch.tile_config``.
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
    source = ASTSource(
        basam_attention_fwd,
        launch.signature(dtype),
        constexprs=constants,
        attrs=launch.pointer_attributes(),
    )
    if target is None:
        target = triton.runtime.driver.active.get_current_target()
    compiled = triton.compile(
        source, target=target, options={"num_warps": tile.num_warps, "num_stages": tile.num_stages}
    )
    metadata: Any = compiled.metadata
    if metadata.shared > launch.SHARED_MEMORY_LIMIT:
        raise BasamError(
            f"the {dtype} kernel for head dim {head_dim} needs {metadata.shared} bytes of shared "
            f"memory, over TensorRT's {launch.SHARED_MEMORY_LIMIT}: lower its tile in launch.py"
        )
    arguments = len(launch.INPUTS) + len(launch.SCALARS) + len(launch.OUTPUTS)
    return CompiledAttention(
        name=metadata.name,
        ptx=drop_unused_params(compiled.asm["ptx"], metadata.name, arguments),
        shared=metadata.shared,
        num_warps=metadata.num_warps,
        tile=tile,
        arch=target.arch,
    )
