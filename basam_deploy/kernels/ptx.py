"""PTX ISA versions: which one the ahead-of-time kernel is written in, and which driver runs it.

A TensorRT engine with the BA-SAM plugin carries the kernel as PTX text, which the CUDA driver of
the GPU running the engine JIT-compiles. A driver JIT-compiles only PTX ISA versions up to the one
of its own CUDA release, so the version in the PTX's ``.version`` line sets the oldest driver that
can run the engine. Triton writes the newest version its bundled ptxas knows (PTX 9.4 for sm_90
with Triton 3.9, i.e. a CUDA 13.4 driver) unless told otherwise; ``aot.compile_attention`` tells it
``DEFAULT_PTX_VERSION`` (or the caller's choice), raised to the target's own minimum where that is
higher. Raising never asks for a newer driver than the GPU itself needs: a PTX ISA version that
introduces a target ships with the first CUDA release that supports that GPU.

Plain Python, no Triton: the TensorRT builder reads these tables before it compiles anything.
Written by hand because the one library function with the driver table,
``cuda.bindings.utils.get_minimal_required_cuda_ver_from_ptx_ver`` (cuda-python), would add a
CUDA-version-specific native package to every build host for a lookup table, and it has no
per-target table.
"""

import re
from typing import Optional, Tuple

from ..errors import BasamError

# The PTX ISA version the ahead-of-time kernel is compiled for by default: the first that sm_90a
# (Hopper, where Triton uses wgmma) accepts, JIT-compiled by any CUDA 12 driver (12.0, r525 and
# later), which every CUDA 12 build of TensorRT 10.9-11.1 needs anyway. Ampere alone would accept
# 7.0 (CUDA 11.0): pass ptx_version="7.0" for an sm_80 engine that must run on older drivers.
DEFAULT_PTX_VERSION = "8.0"

# PTX ISA version -> the CUDA release (major, minor) whose driver first JIT-compiles it. From the
# release history table of NVIDIA's PTX ISA manual ("PTX ISA Version / CUDA Release",
# https://docs.nvidia.com/cuda/parallel-thread-execution/#release-notes-ptx-release-history),
# the same table cuda-python encodes in cuda/bindings/utils/_ptx_utils.py (through 9.1). 9.2-9.4
# follow CUDA 13.x -> PTX 9.x, the rule Triton 3.9's ``ptx_get_version``
# (triton/backends/nvidia/compiler.py) applies to its ptxas. Note 8.6 is CUDA 12.7: CUDA 12.6
# shipped PTX 8.5 again.
_DRIVER_FOR_PTX = {
    "6.3": (10, 0),
    "6.4": (10, 1),
    "6.5": (10, 2),
    "7.0": (11, 0),
    "7.1": (11, 1),
    "7.2": (11, 2),
    "7.3": (11, 3),
    "7.4": (11, 4),
    "7.5": (11, 5),
    "7.6": (11, 6),
    "7.7": (11, 7),
    "7.8": (11, 8),
    "8.0": (12, 0),
    "8.1": (12, 1),
    "8.2": (12, 2),
    "8.3": (12, 3),
    "8.4": (12, 4),
    "8.5": (12, 5),
    "8.6": (12, 7),
    "8.7": (12, 8),
    "8.8": (12, 9),
    "9.0": (13, 0),
    "9.1": (13, 1),
    "9.2": (13, 2),
    "9.3": (13, 3),
    "9.4": (13, 4),
}

# PTX target -> the first PTX ISA version that accepts it (ptxas refuses a lower ``.version``).
# From LLVM's NVPTX backend, which encodes the PTX ISA manual's target notes per processor
# (llvm/lib/Target/NVPTX/NVPTX.td, ``def : Proc<"sm_90a", [SM90a, PTX80]>`` ..., LLVM 21). These
# are the names Triton writes into ``.target``: sm_XY below sm_90, the arch-specific sm_XYa from
# sm_90 on (``target_for_arch``).
_TARGET_MINIMUM_PTX = {
    "sm_75": "6.3",
    "sm_80": "7.0",
    "sm_86": "7.1",
    "sm_87": "7.4",
    "sm_89": "7.8",
    "sm_90": "7.8",
    "sm_90a": "8.0",
    "sm_100a": "8.6",
    "sm_101a": "8.6",
    "sm_103a": "8.8",
    "sm_110a": "9.0",
    "sm_120a": "8.7",
    "sm_121a": "8.8",
}


def parse_ptx_version(version: str) -> Tuple[int, int]:
    """'8.0' -> (8, 0); a one-line BasamError for anything else."""
    match = re.fullmatch(r"\s*(\d+)\.(\d)\s*", str(version))
    if match is None:
        raise BasamError(
            f"PTX ISA version {version!r} is not of the form MAJOR.MINOR (e.g. "
            f"{DEFAULT_PTX_VERSION!r})"
        )
    return int(match.group(1)), int(match.group(2))


def _canonical(version: str) -> str:
    major, minor = parse_ptx_version(version)
    return f"{major}.{minor}"


def minimum_driver_for_ptx(ptx_version: str) -> Tuple[int, int]:
    """The CUDA driver version (major, minor), as ``cuDriverGetVersion`` reports it (12080 is
    (12, 8)), that a GPU needs to JIT-compile PTX of ISA version ``ptx_version`` ('8.0', as in the
    PTX's ``.version`` line). A one-line BasamError for a version not in NVIDIA's table."""
    version = _canonical(ptx_version)
    if version not in _DRIVER_FOR_PTX:
        lowest = min(_DRIVER_FOR_PTX, key=parse_ptx_version)
        highest = max(_DRIVER_FOR_PTX, key=parse_ptx_version)
        raise BasamError(
            f"PTX ISA version {version} is not in the driver table ({lowest} to {highest}): pin "
            f"a known one (ptx_version, default {DEFAULT_PTX_VERSION})"
        )
    return _DRIVER_FOR_PTX[version]


def target_for_arch(arch: int) -> str:
    """The ``.target`` Triton writes for compute capability ``arch`` (80 -> 'sm_80'): from sm_90 on
    the architecture-specific variant ('sm_90a'), as triton/backends/nvidia/compiler.py's
    ``sm_arch_from_capability`` names it (Triton 3.6-3.9; tests compare with the real PTX)."""
    return f"sm_{arch}" + ("a" if arch >= 90 else "")


def minimum_ptx_for_target(target: str) -> Optional[str]:
    """The first PTX ISA version that accepts ``target`` ('sm_90a' -> '8.0'); None if unknown."""
    return _TARGET_MINIMUM_PTX.get(target)


def ptx_version_for(arch: int, ptx_version: Optional[str] = None) -> str:
    """The PTX ISA version the kernel is compiled in for compute capability ``arch``: the requested
    one (None: ``DEFAULT_PTX_VERSION``), raised to the target's minimum where that is higher.

    A GPU newer than the target table, with no explicit version, is refused in one line: its
    minimum is unknown here, and guessing it would either fail in ptxas or ask for a newer driver
    than needed.
    """
    requested = _canonical(ptx_version or DEFAULT_PTX_VERSION)
    minimum_driver_for_ptx(requested)  # refuses a version outside the table
    target = target_for_arch(arch)
    floor = minimum_ptx_for_target(target)
    if floor is None:
        if ptx_version is None:
            raise BasamError(
                f"no known minimum PTX ISA version for {target}: pass ptx_version explicitly "
                f"(the PTX ISA manual's target notes give it)"
            )
        return requested
    return max(requested, floor, key=parse_ptx_version)


def ptx_header(ptx: str) -> Tuple[str, str]:
    """(ISA version, target) of PTX text, from its ``.version`` and ``.target`` directives, e.g.
    ('8.0', 'sm_90a'). A BasamError when either is missing."""
    version = re.search(r"^\s*\.version\s+(\d+\.\d+)\s*$", ptx, re.M)
    target = re.search(r"^\s*\.target\s+(\w+)", ptx, re.M)
    if version is None or target is None:
        raise BasamError("the PTX has no .version or .target directive: Triton's output changed")
    return version.group(1), target.group(1)


def triton_ptx_option(version: str) -> int:
    """Triton's ``ptx_version`` compile option for ISA version ``version``: '8.0' -> 80."""
    major, minor = parse_ptx_version(version)
    return 10 * major + minor
