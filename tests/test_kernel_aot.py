"""Ahead-of-time PTX of the fused attention kernel for sm_80 and sm_90, without a GPU.

Triton fixes compiler-or-interpreter once per process, when it is imported, and the kernel tests
run its interpreter; so the compiles run in one child process without TRITON_INTERPRET, and this
process sets TRITON_INTERPRET=1 like test_kernel_attention.py, so that whichever module imports
Triton first, both get the mode they need.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

pytest.importorskip("triton", reason="compiling the kernel needs Triton: pip install 'triton>=3.4'")

from basam_deploy.errors import BasamError  # noqa: E402
from basam_deploy.kernels import launch  # noqa: E402
from basam_deploy.kernels.aot import (  # noqa: E402
    DEFAULT_PTX_VERSION,
    assumed_alignment,
    drop_unused_params,
    entry_params,
    minimum_driver_for_ptx,
)

REPO = Path(__file__).resolve().parents[1]
# (arch, dtype, head dim, ptx_version asked for): both targets for FP16 and FP32 at SAM's head
# dim, and a padded head dim. The default PTX version, or an explicit older one: kept for sm_80,
# raised to sm_90a's minimum (8.0) for sm_90. Five compiles, about 4 s each.
VARIANTS = [
    (80, "float32", 64, None),
    (80, "float16", 64, "7.4"),
    (90, "float16", 64, None),
    (90, "float32", 64, "7.4"),
    (90, "float16", 80, None),
]
# The PTX ISA version each variant must carry: the pin, or sm_90a's minimum.
PINNED = {None: DEFAULT_PTX_VERSION, "7.4": {80: "7.4", 90: "8.0"}}
ATTRIBUTES = dict(
    scale_mode="log_n", n0=4096, patch_size=16, bias_slope=1 / 64, bias_metric="euclidean"
)
CHILD = """
import json, sys
from dataclasses import astuple
from basam_deploy.kernels.aot import GPUTarget, compile_attention
out = []
for arch, dtype, head_dim, ptx_version in json.loads(sys.argv[1]):
    c = compile_attention(dtype, head_dim, target=GPUTarget("cuda", arch, 32),
                          ptx_version=ptx_version, **json.loads(sys.argv[2]))
    out.append(dict(name=c.name, ptx=c.ptx, shared=c.shared, num_warps=c.num_warps,
                    threads=c.threads, tile=list(astuple(c.tile)), arch=c.arch,
                    ptx_version=c.ptx_version, ptx_target=c.ptx_target,
                    assumed_alignment=c.assumed_alignment))
print(json.dumps(out))
"""
IDS = [f"sm{a}-{t}-d{d}-ptx{p or 'default'}" for a, t, d, p in VARIANTS]


@pytest.fixture(scope="module")
def compiled():
    """{(arch, dtype, head dim): compile_attention's result as a dict}, compiled in a child."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(VARIANTS), json.dumps(ATTRIBUTES)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(zip(VARIANTS, json.loads(result.stdout.splitlines()[-1])))


def directive(ptx, name):
    """The operand of the PTX directive ``.name`` (e.g. '.version 8.0' -> '8.0')."""
    return next(line.split()[1] for line in ptx.splitlines() if line.startswith(f".{name} "))


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_ptx_for_target(compiled, variant):
    arch, dtype, head_dim, _ = variant
    kernel = compiled[variant]
    ptx = kernel["ptx"]
    assert kernel["name"] == launch.KERNEL_NAME
    assert f".visible .entry {launch.KERNEL_NAME}(" in ptx
    # Triton targets the architecture-specific sm_90a on Hopper (wgmma).
    assert directive(ptx, "target") == kernel["ptx_target"] == ("sm_80" if arch == 80 else "sm_90a")
    assert 0 < kernel["shared"] <= launch.SHARED_MEMORY_LIMIT
    tile = launch.tile_config(dtype, head_dim)
    assert kernel["tile"] == [tile.block_m, tile.block_n, tile.num_warps, tile.num_stages]
    assert kernel["num_warps"] == tile.num_warps
    assert kernel["threads"] == tile.threads == 32 * tile.num_warps


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_ptx_version_is_pinned(compiled, variant):
    """The PTX's ``.version`` is the pinned ISA version (not the one of Triton's bundled ptxas,
    9.4 with Triton 3.9 on sm_90), and the object reports it for the engine manifest."""
    arch, _, _, asked = variant
    kernel = compiled[variant]
    expected = PINNED[asked] if asked is None else PINNED[asked][arch]
    assert directive(kernel["ptx"], "version") == kernel["ptx_version"] == expected
    assert minimum_driver_for_ptx(kernel["ptx_version"]) <= (12, 0)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_ptx_assumes_no_pointer_alignment(compiled, variant):
    """TensorRT documents no alignment for a plugin's tensors: the compiled entry assumes none
    (no ``tt.divisibility`` on any argument of the Triton IR), and the run-time branch keeps a
    16-byte vectorized path for aligned pointers (16-byte ``cp.async`` or ``ld.global.v4``)."""
    kernel = compiled[variant]
    assert kernel["assumed_alignment"] == 1
    ptx = kernel["ptx"]
    assert ptx.count("ld.global.v4") + ptx.count("cp.async.cg.shared.global") > 0
    # The scalar path: element-wide global loads of q, k or v.
    assert re.search(r"ld\.global(\.\w+)*\.b(16|32)\s", ptx)


def test_assumed_alignment_reads_the_ir():
    ir = (
        "module {\n  tt.func public @k(%q: !tt.ptr<f16> {tt.divisibility = 16 : i32} "
        'loc("q"(#loc)), %n: i32 loc("n"(#loc))) attributes {noinline = false} {\n'
        "    %0 = arith.constant {tt.divisibility = 64 : i32} 64 : i32\n"
    )
    assert assumed_alignment(ir, "k") == 16
    assert assumed_alignment(ir.replace(" {tt.divisibility = 16 : i32}", ""), "k") == 1
    with pytest.raises(BasamError, match="no function"):
        assumed_alignment(ir, "other")


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_ptx_takes_exactly_the_plugin_arguments(compiled, variant):
    """Pointers for q, k, v, rel_h, rel_w, three int32 scalars, the output pointer; no hidden
    scratch parameters."""
    kernel = compiled[variant]
    params = entry_params(kernel["ptx"], kernel["name"])
    expected = len(launch.INPUTS) + len(launch.SCALARS) + len(launch.OUTPUTS)
    assert len(params) == expected == 9
    header = kernel["ptx"].split(f".entry {kernel['name']}(")[1].split(")")[0]
    types = [line.split()[1] for line in header.strip().splitlines()]
    assert types == [".u64"] * 5 + [".u32"] * 3 + [".u64"]


PTX = """
.version 8.7
.target sm_90a
.visible .entry k(
\t.param .u64 .ptr .global .align 1 k_param_0,
\t.param .u32 k_param_1,
\t.param .u64 .ptr .global .align 1 k_param_2,
\t.param .u64 .ptr .global .align 1 k_param_3
)
.reqntid 128
{
\tld.param.b64 \t%rd1, [k_param_0];
\tld.param.b32 \t%r1, [k_param_1];
\tld.param.b64 \t%rd2, [k_param_2];
\tret;
}
"""


def test_drop_unused_params_removes_the_trailing_ones():
    stripped = drop_unused_params(PTX, "k", keep=3)
    assert entry_params(stripped, "k") == ["k_param_0", "k_param_1", "k_param_2"]
    assert "k_param_2\n)" in stripped and "k_param_3" not in stripped
    assert stripped.split(")", 1)[1] == PTX.split(")", 1)[1]  # the body is untouched


def test_drop_unused_params_refuses_a_parameter_the_body_reads():
    with pytest.raises(BasamError, match="k_param_2"):
        drop_unused_params(PTX, "k", keep=2)
    with pytest.raises(BasamError, match="fewer than"):
        drop_unused_params(PTX, "k", keep=5)
    with pytest.raises(BasamError, match="no entry"):
        drop_unused_params(PTX, "other", keep=3)
