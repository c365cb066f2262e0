"""Ahead-of-time PTX of the fused attention kernel for sm_80 and sm_90, without a GPU.

Triton fixes compiler-or-interpreter once per process, when it is imported, and the kernel tests
run its interpreter; so the compiles run in one child process without TRITON_INTERPRET, and this
process sets TRITON_INTERPRET=1 like test_kernel_attention.py, so that whichever module imports
Triton first, both get the mode they need.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

pytest.importorskip("triton", reason="compiling the kernel needs Triton: pip install 'triton>=3.4'")

from basam_deploy.errors import BasamError  # noqa: E402
from basam_deploy.kernels import launch  # noqa: E402
from basam_deploy.kernels.aot import drop_unused_params, entry_params  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# (arch, dtype, head dim): both targets for FP16 and FP32 at SAM's head dim, and a padded one.
VARIANTS = [
    (80, "float16", 64),
    (80, "float32", 64),
    (90, "float16", 64),
    (90, "float32", 64),
    (90, "float16", 80),
]
ATTRIBUTES = dict(
    scale_mode="log_n", n0=4096, patch_size=16, bias_slope=1 / 64, bias_metric="euclidean"
)
CHILD = """
import json, sys
from dataclasses import astuple
from basam_deploy.kernels.aot import GPUTarget, compile_attention
out = []
for arch, dtype, head_dim in json.loads(sys.argv[1]):
    c = compile_attention(dtype, head_dim, target=GPUTarget("cuda", arch, 32), **json.loads(sys.argv[2]))
    out.append(dict(name=c.name, ptx=c.ptx, shared=c.shared, num_warps=c.num_warps,
                    threads=c.threads, tile=list(astuple(c.tile)), arch=c.arch))
print(json.dumps(out))
"""


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


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"sm{v[0]}-{v[1]}-d{v[2]}")
def test_ptx_for_target(compiled, variant):
    arch, dtype, head_dim = variant
    kernel = compiled[variant]
    ptx = kernel["ptx"]
    assert kernel["name"] == launch.KERNEL_NAME
    assert f".visible .entry {launch.KERNEL_NAME}(" in ptx
    # Triton targets the architecture-specific sm_90a on Hopper (wgmma).
    target = next(line.split()[1] for line in ptx.splitlines() if line.startswith(".target"))
    assert target in ({"sm_80"} if arch == 80 else {"sm_90", "sm_90a"})
    assert 0 < kernel["shared"] <= launch.SHARED_MEMORY_LIMIT
    tile = launch.tile_config(dtype, head_dim)
    assert kernel["tile"] == [tile.block_m, tile.block_n, tile.num_warps, tile.num_stages]
    assert kernel["num_warps"] == tile.num_warps
    assert kernel["threads"] == tile.threads == 32 * tile.num_warps


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"sm{v[0]}-{v[1]}-d{v[2]}")
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
