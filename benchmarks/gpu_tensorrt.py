"""TensorRT on a GPU: tiny and ViT-B (random weights), FP32 and FP16 engines with the ladder profiles,
parity with PyTorch and onnxruntime at each profile's min/opt/max, latency at each size; one table.

Needs an NVIDIA GPU, TensorRT >= 10.9 and a CUDA build of PyTorch (see docs/tensorrt.md). Writes
benchmarks/out/trt/ (exports, engines, a shared timing cache, results.json). PyTorch runs on the GPU
for ViT-B (the CPU is too slow at 2048 px); onnxruntime runs on the CPU.

    python benchmarks/gpu_tensorrt.py [--models tiny vit_b] [--no-onnxruntime] [--iterations 50]
"""

import argparse
import json
from pathlib import Path

import torch

from basam_deploy import build_sam
from basam_deploy.compare import check_engines, profile_cases
from basam_deploy.export.onnx_export import ExportOptions, export_onnx
from basam_deploy.tensorrt.bench import bench_engine
from basam_deploy.tensorrt.builder import build_engine
from basam_deploy.tensorrt.manifest import read_engine_manifest
from basam_deploy.tensorrt.plan import BuildOptions, make_plan

OUT = Path(__file__).parent / "out" / "trt"


def worst(report, size):
    """(max relative error, min cosine, pass) over the encoder rows of one size."""
    rows = [r for r in report.rows if r.graph == "encoder" and r.size == size]
    stats = [r.outputs["image_embeddings"] for r in rows]
    return (
        max(s.relative_error for s in stats),
        min(s.cosine for s in stats),
        all(r.passed for r in rows),
    )


def run(model: str, precision: str, args) -> list:
    folder = OUT / f"{model}_{precision}"
    torch.manual_seed(0)  # the same random weights basam-export and sam_from_export use
    sam = build_sam(model, "basam")
    export_onnx(
        sam, folder, ExportOptions(precision=precision, check=False), progress=lambda s: None
    )
    options = BuildOptions(preset="ladder", timing_cache=OUT / "timing.cache")
    for graph in ("encoder", "decoder"):
        build_engine(make_plan(folder / f"{graph}.onnx", options))
    encoder, decoder = folder / "encoder.engine", folder / "decoder.engine"
    reports = check_engines(
        folder,
        encoder,
        decoder,
        sam=sam,
        onnxruntime=not args.no_onnxruntime,
        torch_device="cpu" if model == "tiny" else "cuda",
    )
    sizes = sorted({(c.height, c.width) for c in profile_cases(read_engine_manifest(encoder))})
    bench = {r.size: r for r in bench_engine(encoder, sizes, iterations=args.iterations)}
    rows = []
    for size, b in bench.items():
        row = {"model": model, "precision": precision, "size": size, **b.to_json()}
        for key, report in reports.items():
            rel, cos, ok = worst(report, size)
            row[key] = {"relative_error": rel, "cosine": cos, "passed": ok}
        rows.append(row)
    return rows


def table(rows) -> str:
    head = (
        f"{'model':<6} {'prec':<5} {'size':>10} {'vs torch rel/cos':>22} {'vs ort rel/cos':>22} "
        f"{'median ms':>9} {'p90 ms':>8} {'img/s':>8} {'GPU MiB':>8}"
    )
    lines = [head]
    for r in rows:
        cells = []
        for key in ("pytorch", "onnxruntime"):
            p = r.get(key)
            cells.append(
                f"{p['relative_error']:.1e}/{p['cosine']:.6f} {'ok' if p['passed'] else 'FAIL'}"
                if p
                else "-"
            )
        lines.append(
            f"{r['model']:<6} {r['precision']:<5} {r['size']:>10} {cells[0]:>22} {cells[1]:>22} "
            f"{r['median_ms']:>9.2f} {r['p90_ms']:>8.2f} {r['images_per_s']:>8.1f} "
            f"{r['gpu_memory_mib']:>8.0f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "vit_b"])
    parser.add_argument("--no-onnxruntime", action="store_true")
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()
    rows = [
        row
        for model in args.models
        for precision in ("fp32", "fp16")
        for row in run(model, precision, args)
    ]
    print(f"GPU: {torch.cuda.get_device_name()}")
    print(table(rows))
    (OUT / "results.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
