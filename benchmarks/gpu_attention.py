"""The fused BA-SAM attention kernel on a CUDA GPU: correctness first, then time and memory.

1. Check: the Triton kernel (``basam_deploy.kernels.attention.basam_attention``) against a float32
   PyTorch evaluation of the contract (docs/fused_attention.md) with the full logits, on a few
   small grids (non-square, ragged), every scale mode and metric, float32 / float16 / bfloat16.
   Any error over its tolerance stops the script (exit 1) before anything is timed.
2. PTX check: the ahead-of-time PTX that TensorRT's plugin embeds (``kernels/aot.py``), loaded
   and launched through the CUDA driver the way TensorRT launches it (inputs, int32 scalars,
   output; grid, block and shared memory from ``launch.py``), compared with the launcher's output,
   with aligned pointers and with every pointer one element into its buffer (not 16-byte aligned).
3. Benchmark: the kernel against ``F.scaled_dot_product_attention`` with the rel-pos terms and the
   distance penalty materialized as a float mask of B x nh x N x N, for token grids of 64 x 64,
   128 x 128 and 256 x 256 (1024, 2048 and 4096 px at patch 16), FP16, 12 heads, head dim 64,
   batch 1: median milliseconds, peak memory above the inputs, and their ratios. A mask that does
   not fit in the GPU's free memory is skipped with a note.

    python benchmarks/gpu_attention.py                      # everything: under 1 min on an H100
    python benchmarks/gpu_attention.py --max-side 128       # skip the 256 x 256 grid
    benchmarks/gpu_attention.sh [OUT_DIR]                   # the same, unbuffered, with a log
    python benchmarks/gpu_attention.py --tune --sides 128   # time TUNE_TILES (for launch.py)

Writes ``OUT/gpu_attention.json`` (``--tune``: ``OUT/gpu_attention_tune.json``; default OUT:
``benchmarks/out``). Measured on an H100 (Triton 3.6, torch 2.11): 13.5x faster than SDPA with its
mask built, 448x less memory at 128 x 128; 256 x 256 runs in 42 ms where the mask needs 96 GiB.
"""

import argparse
import ctypes
import json
import math
import platform
import sys
import time
from functools import partial
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

OUT = Path(__file__).parent / "out"
SIDES = (64, 128, 256)
# ||kernel - reference|| / ||reference||; the float32 reference rounds too, hence 2e-5 for FP32.
TOLERANCE = {"float32": 2e-5, "float16": 2e-3, "bfloat16": 1e-2}
# (H, W, scale_mode, bias_slope, bias_metric): non-square, N not a multiple of any tile, every mode.
CHECK_CASES = (
    (5, 7, "sam", 0.0, "manhattan"),
    (13, 9, "log_n", 0.3, "euclidean"),
    (64, 130, "official", 0.0, "manhattan"),
    (64, 64, "log_n", 1 / 64, "manhattan"),
    (70, 45, "log_n", 1 / 64, "euclidean"),
)
PATCH_SIZE = 16
N0 = 4096


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=list(SIDES), help="grid sides")
    parser.add_argument("--max-side", type=int, default=None, help="drop larger grid sides")
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default="float16")
    parser.add_argument(
        "--metric", choices=("manhattan", "euclidean"), default="manhattan", help="bias metric"
    )
    parser.add_argument("--rep-ms", type=int, default=200, help="do_bench time per measurement")
    parser.add_argument("--skip-check", action="store_true", help="time without checking first")
    parser.add_argument("--skip-ptx", action="store_true", help="skip the driver-API PTX launch")
    parser.add_argument("--tune", action="store_true", help="time TUNE_TILES instead, then stop")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for gpu_attention.json")
    return parser.parse_args(argv)


def selected_sides(args: argparse.Namespace) -> List[int]:
    return [s for s in args.sides if args.max_side is None or s <= args.max_side]


def attributes(scale_mode: str, bias_slope: float, bias_metric: str) -> Dict[str, object]:
    return dict(
        scale_mode=scale_mode,
        n0=N0,
        patch_size=PATCH_SIZE,
        bias_slope=bias_slope,
        bias_metric=bias_metric,
    )


def make_inputs(batch, heads, grid, head_dim, dtype, device, seed=0):
    """q, k, v: B nh H W d; rel_h: B nh H W H; rel_w: B nh H W W (O(1) values)."""
    height, width = grid
    generator = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape):
        return torch.randn(shape, generator=generator, device=device).to(dtype)

    qkv = [randn(batch, heads, height, width, head_dim) for _ in range(3)]
    return (
        *qkv,
        randn(batch, heads, height, width, height),
        randn(batch, heads, height, width, width),
    )


def scale_of(scale_mode: str, grid, head_dim: int) -> float:
    height, width = grid
    if scale_mode == "sam":
        multiplier = 1.0
    elif scale_mode == "log_n":
        multiplier = math.log(height * width) / math.log(N0)
    else:
        units = (height * PATCH_SIZE // 1024) * (width * PATCH_SIZE // 1024)
        multiplier = math.log(units * 4096) / math.log(4096)
    return multiplier / math.sqrt(head_dim)


def logits_mask(rel_h, rel_w, bias_slope: float, bias_metric: str) -> torch.Tensor:
    """rel_h[i, yj] + rel_w[i, xj] - beta_h dist(i, j) as a B nh N N tensor in rel_h's dtype."""
    batch, heads, height, width, _ = rel_h.shape
    n_tokens = height * width
    # B nh H W H 1 + B nh H W 1 W -> B nh H W H W -> B nh N N
    mask = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(batch, heads, n_tokens, n_tokens)
    if bias_slope != 0.0:
        y = torch.arange(height, device=rel_h.device).repeat_interleave(width).float()
        x = torch.arange(width, device=rel_h.device).repeat(height).float()
        dy, dx = (y[:, None] - y[None, :]).abs(), (x[:, None] - x[None, :]).abs()
        dist = dy + dx if bias_metric == "manhattan" else torch.sqrt(dy * dy + dx * dx)  # N N
        slopes = torch.tensor(
            [bias_slope * 2.0 ** (-8.0 * (h + 1) / heads) for h in range(heads)],
            device=rel_h.device,
        )
        for h in range(heads):  # one head at a time: no second B nh N N temporary
            mask[:, h] -= (slopes[h] * dist).to(mask.dtype)
    return mask


def sdpa_attention(q, k, v, rel_h, rel_w, scale_mode, bias_slope, bias_metric):
    """PyTorch SDPA with the materialized mask: B nh H W d -> B nh H W d."""
    batch, heads, height, width, head_dim = q.shape
    mask = logits_mask(rel_h, rel_w, bias_slope, bias_metric)
    # B nh H W d -> B nh N d
    flat = [t.reshape(batch, heads, height * width, head_dim) for t in (q, k, v)]
    scale = scale_of(scale_mode, (height, width), head_dim)
    out = F.scaled_dot_product_attention(*flat, attn_mask=mask, scale=scale)
    return out.reshape(q.shape)


def float32_reference(q, k, v, rel_h, rel_w, scale_mode, bias_slope, bias_metric):
    """The contract in float32 with explicit logits and softmax (TF32 off by the caller)."""
    batch, heads, height, width, head_dim = q.shape
    q, k, v, rel_h, rel_w = (t.float() for t in (q, k, v, rel_h, rel_w))
    flat = [t.reshape(batch, heads, height * width, head_dim) for t in (q, k, v)]
    logits = scale_of(scale_mode, (height, width), head_dim) * flat[0] @ flat[1].transpose(-1, -2)
    logits += logits_mask(rel_h, rel_w, bias_slope, bias_metric)
    return (logits.softmax(-1) @ flat[2]).reshape(q.shape)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.double(), expected.double()
    return ((actual - expected).norm() / expected.norm()).item()


def run_check(device) -> List[Dict[str, object]]:
    from basam_deploy.kernels.attention import basam_attention

    results = []
    for dtype_name, tolerance in TOLERANCE.items():
        dtype = getattr(torch, dtype_name)
        for height, width, mode, slope, metric in CHECK_CASES:
            inputs = make_inputs(2, 3, (height, width), 64, dtype, device)
            out = basam_attention(*inputs, **attributes(mode, slope, metric))
            error = relative_error(out, float32_reference(*inputs, mode, slope, metric))
            ok = error <= tolerance
            results.append(
                dict(
                    dtype=dtype_name,
                    grid=[height, width],
                    scale_mode=mode,
                    bias_slope=slope,
                    bias_metric=metric,
                    error=error,
                    tolerance=tolerance,
                    ok=ok,
                )
            )
            print(
                f"check {dtype_name:<8} {height:>3}x{width:<3} {mode:<8} slope {slope:<7.4g} "
                f"{metric:<9} error {error:.2e} (tolerance {tolerance:.0e}) "
                f"{'ok' if ok else 'FAILED'}"
            )
    return results


class PtxKernel:
    """A PTX kernel loaded and launched through the CUDA driver, the way TensorRT runs an
    ahead-of-time plugin kernel: exactly the given arguments, grid, block and shared memory."""

    def __init__(self, ptx: str, name: str) -> None:
        self.lib = ctypes.CDLL("libcuda.so.1")
        self.module, self.function = ctypes.c_void_p(), ctypes.c_void_p()
        self._call("cuModuleLoadData", ctypes.byref(self.module), ctypes.c_char_p(ptx.encode()))
        self._call("cuModuleGetFunction", ctypes.byref(self.function), self.module, name.encode())

    def _call(self, name: str, *args) -> None:
        status = getattr(self.lib, name)(*args)
        if status != 0:
            raise RuntimeError(f"{name} failed with CUDA error {status}")

    def launch(self, grid, threads: int, shared: int, args) -> None:
        values = [
            ctypes.c_uint64(a.data_ptr()) if isinstance(a, torch.Tensor) else ctypes.c_int32(a)
            for a in args
        ]
        params = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
        stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
        dims = [ctypes.c_uint(x) for x in (*grid, threads, 1, 1)]
        self._call(
            "cuLaunchKernel", self.function, *dims, ctypes.c_uint(shared), stream, params, None
        )

    def close(self) -> None:
        self._call("cuModuleUnload", self.module)


def shifted(tensor, offset):
    """A copy of ``tensor`` starting ``offset`` elements into a larger buffer (0: ``tensor``);
    offset 1 gives an address that is not 16-byte aligned."""
    if offset == 0:
        return tensor
    buffer = torch.empty(tensor.numel() + offset, dtype=tensor.dtype, device=tensor.device)
    view = buffer[offset:].view(tensor.shape)
    view.copy_(tensor)
    return view


def aot_launcher(inputs, attrs, offset=0):
    """A function running the AOT PTX on ``inputs`` (q, k, v, rel_h, rel_w) into a new output;
    every pointer ``offset`` elements into its buffer (1: none 16-byte aligned)."""
    from basam_deploy.kernels import launch
    from basam_deploy.kernels.aot import compile_attention

    q = inputs[0]
    compiled = compile_attention(str(q.dtype).replace("torch.", ""), q.shape[-1], **attrs)
    ptx_kernel = PtxKernel(compiled.ptx, compiled.name)
    grid = launch.grid(q.shape, compiled.tile)
    scalars = launch.scalar_args(q.shape)
    inputs = [shifted(t, offset) for t in inputs]

    def run():
        out = shifted(torch.empty_like(q), offset)
        ptx_kernel.launch(grid, compiled.threads, compiled.shared, [*inputs, *scalars, out])
        return out

    return run, compiled, ptx_kernel


def run_ptx_check(device) -> List[Dict[str, object]]:
    """The AOT PTX, launched with exactly TensorRT's argument list, against the launcher."""
    from basam_deploy.kernels.aot import entry_params
    from basam_deploy.kernels.attention import basam_attention

    results = []
    cases = [
        (dtype_name, case, offset)
        for dtype_name in ("float16", "float32")
        for case in CHECK_CASES[1:4]
        for offset in (0, 1)  # aligned pointers, then none 16-byte aligned
    ]
    for dtype_name, (height, width, mode, slope, metric), offset in cases:
        attrs = attributes(mode, slope, metric)
        inputs = make_inputs(2, 3, (height, width), 64, getattr(torch, dtype_name), device)
        run, compiled, ptx_kernel = aot_launcher(inputs, attrs, offset)
        out = run()
        torch.cuda.synchronize()
        ptx_kernel.close()
        error = relative_error(out, basam_attention(*inputs, **attrs))
        params = len(entry_params(compiled.ptx, compiled.name))
        ok = error <= 1e-6 and params == 9
        results.append(
            dict(
                dtype=dtype_name,
                grid=[height, width],
                scale_mode=mode,
                pointer_offset=offset,
                ptx_version=compiled.ptx_version,
                ptx_target=compiled.ptx_target,
                params=params,
                shared=compiled.shared,
                error=error,
                ok=ok,
            )
        )
        print(
            f"ptx   {dtype_name:<8} {height:>3}x{width:<3} {mode:<8} offset {offset} "
            f"PTX {compiled.ptx_version} {compiled.ptx_target} {params} params, "
            f"{compiled.shared} B shared, vs launcher {error:.1e} {'ok' if ok else 'FAILED'}"
        )
    return results


def _peak_mib(fn) -> float:
    """Peak memory allocated while ``fn`` runs, above what was allocated before, MiB."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def _median_ms(fn, rep_ms: int) -> float:
    import triton.testing

    return triton.testing.do_bench(fn, rep=rep_ms, return_mode="median")


def bench_side(args: argparse.Namespace, side: int, device) -> Dict[str, object]:
    """One table row: the kernel (launcher and AOT PTX) and SDPA on a side x side grid."""
    from basam_deploy.kernels.attention import basam_attention

    dtype = getattr(torch, args.dtype)
    slope = 1.0 / 64  # SAM's default (1 / pre-training grid side)
    attrs = attributes("log_n", slope, args.metric)
    inputs = make_inputs(args.batch, args.heads, (side, side), args.head_dim, dtype, device)
    n_tokens = side * side
    row: Dict[str, object] = dict(side=side, n_tokens=n_tokens, pixels=side * PATCH_SIZE)

    def kernel():
        return basam_attention(*inputs, **attrs)

    kernel()  # compiles outside the timing
    row["kernel_ms"] = _median_ms(kernel, args.rep_ms)
    row["kernel_peak_mib"] = _peak_mib(kernel)
    if not args.skip_ptx:
        aot, _, ptx_kernel = aot_launcher(inputs, attrs)
        row["ptx_ms"] = _median_ms(aot, args.rep_ms)
        ptx_kernel.close()

    mask_bytes = args.batch * args.heads * n_tokens**2 * dtype.itemsize
    free, _ = torch.cuda.mem_get_info()
    row["mask_mib"] = mask_bytes / 2**20
    # The mask, SDPA's output and its working memory, with room for fragmentation.
    if mask_bytes * 1.5 > free:
        row["note"] = (
            f"SDPA skipped: its B x nh x N x N mask alone is {mask_bytes / 2**30:.1f} GiB, "
            f"{free / 2**30:.1f} GiB free"
        )
        return row

    def sdpa():
        return sdpa_attention(*inputs, "log_n", slope, args.metric)

    row["sdpa_error_vs_kernel"] = relative_error(kernel(), sdpa())
    row["sdpa_ms"] = _median_ms(sdpa, args.rep_ms)
    row["sdpa_peak_mib"] = _peak_mib(sdpa)
    mask = logits_mask(inputs[3], inputs[4], slope, args.metric)
    # B nh H W d -> B nh N d
    flat = [t.reshape(args.batch, args.heads, n_tokens, args.head_dim) for t in inputs[:3]]
    scale = scale_of("log_n", (side, side), args.head_dim)
    row["sdpa_mask_given_ms"] = _median_ms(
        lambda: F.scaled_dot_product_attention(*flat, attn_mask=mask, scale=scale), args.rep_ms
    )
    row["speedup"] = row["sdpa_ms"] / row["kernel_ms"]
    row["memory_ratio"] = row["sdpa_peak_mib"] / max(row["kernel_peak_mib"], 1e-9)
    return row


def run_benchmark(args: argparse.Namespace, device) -> List[Dict[str, object]]:
    rows = []
    for side in selected_sides(args):
        rows.append(bench_side(args, side, device))
        print(format_table(rows[-1:], header=len(rows) == 1), flush=True)
        torch.cuda.empty_cache()
    return rows


# Tiles to time with --tune: (block_m, block_n, num_warps, num_stages); launch.py keeps the choice.
TUNE_TILES = {
    "float16": ((128, 64, 4, 2), (128, 64, 8, 2), (128, 32, 4, 2), (64, 64, 4, 2), (64, 32, 4, 2)),
    "float32": ((64, 32, 4, 1), (32, 32, 4, 2), (64, 64, 4, 1), (32, 16, 4, 1)),
}


def tune_side(args, dtype_name: str, side: int, device) -> List[Dict[str, object]]:
    """Median ms and shared memory of each TUNE_TILES tile for one dtype and grid side."""
    from basam_deploy.errors import BasamError
    from basam_deploy.kernels.aot import compile_attention
    from basam_deploy.kernels.attention import basam_attention
    from basam_deploy.kernels.launch import TileConfig, tile_config

    attrs = attributes("log_n", 1.0 / 64, args.metric)
    dtype = getattr(torch, dtype_name)
    inputs = make_inputs(args.batch, args.heads, (side, side), args.head_dim, dtype, device)
    default = tile_config(dtype_name, args.head_dim)
    rows = []
    for values in TUNE_TILES[dtype_name]:
        tile = TileConfig(*values)
        try:
            shared = compile_attention(dtype_name, args.head_dim, **attrs, tile=tile).shared
        except BasamError as exc:  # over TensorRT's shared memory: not a candidate
            print(f"tune  {dtype_name:<8} {side:>4}  {values}  skipped: {exc}")
            continue
        ms = _median_ms(partial(basam_attention, *inputs, **attrs, tile=tile), args.rep_ms)
        rows.append(
            dict(
                dtype=dtype_name,
                side=side,
                tile=list(values),
                ms=ms,
                shared=shared,
                default=tile == default,
            )
        )
        mark = "  (launch.py default)" if tile == default else ""
        print(f"tune  {dtype_name:<8} {side:>4}  {values}  {ms:9.3f} ms  {shared:>6} B{mark}")
    return rows


def run_tune(args: argparse.Namespace, device) -> List[Dict[str, object]]:
    return [
        row
        for dtype_name in TUNE_TILES
        for side in selected_sides(args)
        for row in tune_side(args, dtype_name, side, device)
    ]


COLUMNS = (
    ("grid", lambda r: f"{r['side']}x{r['side']}"),
    ("N", lambda r: str(r["n_tokens"])),
    ("kernel ms", lambda r: f"{r['kernel_ms']:.3f}"),
    ("AOT PTX ms", lambda r: f"{r['ptx_ms']:.3f}" if "ptx_ms" in r else "-"),
    ("SDPA ms", lambda r: f"{r['sdpa_ms']:.3f}" if "sdpa_ms" in r else "-"),
    ("SDPA(mask given) ms", lambda r: f"{r['sdpa_mask_given_ms']:.3f}" if "sdpa_ms" in r else "-"),
    ("speedup", lambda r: f"{r['speedup']:.2f}x" if "speedup" in r else "-"),
    ("kernel MiB", lambda r: f"{r['kernel_peak_mib']:.1f}"),
    ("SDPA MiB", lambda r: f"{r['sdpa_peak_mib']:.1f}" if "sdpa_peak_mib" in r else "-"),
    ("memory ratio", lambda r: f"{r['memory_ratio']:.0f}x" if "memory_ratio" in r else "-"),
    ("note", lambda r: str(r.get("note", ""))),
)


def format_table(rows: Sequence[Dict[str, object]], header: bool = True) -> str:
    """Fixed-width rows (SDPA = mask built + SDPA; peak memory above the inputs)."""
    widths = [max(len(name), 12) for name, _ in COLUMNS[:-1]] + [0]
    lines = []
    if header:
        lines.append("  ".join(f"{name:>{w}}" for (name, _), w in zip(COLUMNS, widths)).rstrip())
    for row in rows:
        cells = [cell(row) for _, cell in COLUMNS]
        lines.append("  ".join(f"{c:>{w}}" for c, w in zip(cells, widths)).rstrip())
    return "\n".join(lines)


def environment() -> Dict[str, object]:
    import triton

    return dict(
        device=torch.cuda.get_device_name(),
        capability=list(torch.cuda.get_device_capability()),
        torch=torch.__version__,
        triton=triton.__version__,
        cuda=torch.version.cuda,
        python=platform.python_version(),
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "gpu_attention: no CUDA device: run it on a machine with an NVIDIA GPU", file=sys.stderr
        )
        return 2
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False  # the float32 reference must be float32
    report: Dict[str, object] = dict(
        environment=environment(), args=vars(args) | {"out": str(args.out)}
    )
    print(json.dumps(report["environment"]))
    started = time.perf_counter()
    if args.tune:
        report["tune"] = run_tune(args, device)
        print(f"wrote {_write(args.out, report, 'gpu_attention_tune.json')}")
        return 0
    if not args.skip_check:
        report["check"] = run_check(device)
        if not all(r["ok"] for r in report["check"]):
            _write(args.out, report)
            print(
                "gpu_attention: the kernel disagrees with the reference (see above)",
                file=sys.stderr,
            )
            return 1
    if not args.skip_ptx:
        report["ptx_check"] = run_ptx_check(device)
        if not all(r["ok"] for r in report["ptx_check"]):
            _write(args.out, report)
            print("gpu_attention: the AOT PTX launch disagrees (see above)", file=sys.stderr)
            return 1
    report["benchmark"] = run_benchmark(args, device)
    report["seconds"] = time.perf_counter() - started
    path = _write(args.out, report)
    print(f"\n{format_table(report['benchmark'])}\nwrote {path} in {report['seconds']:.0f} s")
    return 0


def _write(folder: Path, report: Dict[str, object], name: str = "gpu_attention.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
