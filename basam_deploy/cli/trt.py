"""``basam-trt``: TensorRT engines from basam-export's ONNX files (build, inspect, run, bench).

Thin shells over ``basam_deploy.tensorrt``: ``build`` = ``make_plan`` + ``build_engine`` (``--dry-run``
prints the plan, ``--print-trtexec`` the equivalent trtexec line; neither needs TensorRT);
``inspect`` = ``inspect_engine``; ``run`` = ``TensorRTRunner``; ``bench`` = ``bench_engine``;
``triton-repo`` = ``plan_triton_repo`` + ``write_triton_repo`` (no TensorRT needed);
``compare`` = ``compare.compare_sources`` (``trt_compare.py``); ``selftest`` =
``selftest.run_selftest`` (``trt_selftest.py``).
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

from ..errors import BasamError
from . import ArgumentParser, parse_size, run, trt_compare, trt_selftest
from .flags import in_flags

PROG = "basam-trt"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser(
        "build",
        help="build an engine from encoder.onnx or decoder.onnx",
        description=(
            "Build a TensorRT engine with resolution profiles; writes ENGINE and ENGINE.json."
        ),
    )
    build.add_argument("model", type=Path, metavar="MODEL.onnx")
    build.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="BxHxW:BxHxW:BxHxW",
        help="min:opt:max of (batch, height, width), repeatable",
    )
    build.add_argument(
        "--profiles",
        default=None,
        metavar="PRESET",
        help="preset shipped in the package (ladder, wide, sam1024) or a JSON file; default ladder "
        "when no --profile is given",
    )
    build.add_argument("--timing-cache", type=Path, default=None, metavar="FILE")
    build.add_argument("--plugin", default="auto", choices=["auto", "off"])
    build.add_argument("--workspace", default=None, metavar="SIZE", help="e.g. 4G, 512M")
    build.add_argument("--opt-level", type=int, default=None, metavar="N", help="0-5 (default 3)")
    build.add_argument("--output", type=Path, default=None, metavar="ENGINE")
    build.add_argument(
        "--weakly-typed-fp16",
        action="store_true",
        help="TensorRT 10.x only: FP32 ONNX built with BuilderFlag.FP16 (no FP32 islands)",
    )
    build.add_argument("--tf32", action="store_true", help="allow TF32 in FP32 matmuls")
    build.add_argument("--prompts", default=None, metavar="MIN:OPT:MAX", help="decoder only")
    build.add_argument("--points", default=None, metavar="MIN:OPT:MAX", help="decoder only")
    build.add_argument(
        "--ptx-version",
        default=None,
        metavar="X.Y",
        help="plugin graphs: the PTX ISA version of the embedded kernel (sets the oldest CUDA "
        "driver that runs the engine; default: the kernel compiler's)",
    )
    build.add_argument("--print-trtexec", action="store_true", help="print the trtexec line")
    build.add_argument("--dry-run", action="store_true", help="print the plan, build nothing")
    build.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after the build, parity of the engine with PyTorch and onnxruntime at every "
        "profile's min, opt and max (the encoder; the decoder too once both engines exist)",
    )
    build.add_argument("--verbose", action="store_true", help="TensorRT's INFO messages")

    inspect = commands.add_parser("inspect", help="profiles, I/O and layer precisions of an engine")
    inspect.add_argument("engine", type=Path, metavar="ENGINE")
    inspect.add_argument("--json", action="store_true", help="print the manifest as JSON")

    run_cmd = commands.add_parser("run", help="encode one image with an encoder engine (GPU)")
    run_cmd.add_argument("engine", type=Path, metavar="ENGINE")
    run_cmd.add_argument("--image", type=Path, required=True, metavar="FILE", help=".npy/.png/.jpg")
    run_cmd.add_argument("--long-side", type=int, default=None, metavar="N", help="resize first")
    run_cmd.add_argument("--output", type=Path, default=None, metavar="FILE.npy")

    bench = commands.add_parser("bench", help="latency per size (GPU)")
    bench.add_argument("engine", type=Path, metavar="ENGINE")
    bench.add_argument("--sizes", nargs="+", required=True, metavar="HxW")
    bench.add_argument("--batch", type=int, default=1)
    bench.add_argument("--warmup", type=int, default=5)
    bench.add_argument("--iterations", type=int, default=50)
    bench.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write rows")

    from ..triton_repo import DECODER_MODEL, ENCODER_MODEL, ENSEMBLE_MODEL

    triton = commands.add_parser(
        "triton-repo",
        help="a Triton Inference Server model repository from engines or an ONNX export",
        description=(
            f"Write a Triton model repository ({ENCODER_MODEL}, {DECODER_MODEL} and the ensemble "
            f"{ENSEMBLE_MODEL}) from an engine folder (basam-trt build) or an export folder "
            "(basam-export). The models carry the graphs' raw tensors (a preprocessed image in, "
            "low-res mask logits out), hence names after SAM's modules; basam-serve's models, "
            "images in and original-size masks out, have other names."
        ),
    )
    triton.add_argument("source", type=Path, metavar="ENGINE_OR_ONNX_DIR")
    triton.add_argument("--output", type=Path, required=True, metavar="REPO")
    triton.add_argument("--instances", type=int, default=1, metavar="N", help="per GPU (or CPU)")
    triton.add_argument(
        "--max-batch",
        type=int,
        default=None,
        metavar="N",
        help="the encoder's max_batch_size (default: what every engine profile takes; ONNX 4; "
        "0 = no Triton batching)",
    )
    triton.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "tensorrt", "onnx"],
        help="auto: the engines when the folder has them, else the ONNX files",
    )
    triton.add_argument("--cpu", action="store_true", help="ONNX only: KIND_CPU instances")
    triton.add_argument("--force", action="store_true", help="replace an earlier repository")
    triton.add_argument("--dry-run", action="store_true", help="print the plan and the configs")
    trt_compare.add_parser(commands)
    trt_selftest.add_parser(commands)
    return parser


def cmd_build(args: argparse.Namespace) -> int:
    from ..tensorrt.plan import BuildOptions, make_plan

    plan = make_plan(
        args.model,
        BuildOptions(
            profiles=tuple(args.profile),
            preset=args.profiles,
            timing_cache=args.timing_cache,
            plugin=args.plugin,
            workspace=args.workspace,
            opt_level=args.opt_level,
            output=args.output,
            weak_fp16=args.weakly_typed_fp16,
            tf32=args.tf32,
            prompts=args.prompts,
            points=args.points,
            ptx_version=args.ptx_version,
        ),
    )
    if args.dry_run or args.print_trtexec:
        if args.dry_run:
            print(in_flags(plan.describe()))
        if args.print_trtexec:
            from ..tensorrt.trtexec import trtexec_command

            print(trtexec_command(plan))
        return 0
    from ..tensorrt.builder import build_engine
    from ..tensorrt.trt_import import import_polygraphy_trt, import_tensorrt

    # before printing anything: without TensorRT or Polygraphy, one line and exit 2
    trt = import_tensorrt()
    import_polygraphy_trt()
    print(in_flags(plan.describe()))
    build_engine(plan, trt=trt, verbose=args.verbose)
    if args.check:
        check_built_engine(plan)
    return 0


def check_built_engine(plan) -> None:
    """Parity of a freshly built engine (and its sibling, once both exist) with PyTorch and
    onnxruntime at every profile's min, opt and max (``compare.check_engines``); raises a one-line
    BasamError on failure. PyTorch is left out, with a line saying why, when the export's
    checkpoint cannot be found."""
    from ..compare import check_engines, sam_from_export
    from ..export.manifest import ExportManifest

    folder = plan.onnx.parent
    from ..tensorrt.plan import DECODER_ENGINE, ENCODER_ENGINE

    encoder = plan.output if plan.graph == "encoder" else plan.output.with_name(ENCODER_ENGINE)
    decoder = plan.output if plan.graph == "decoder" else plan.output.with_name(DECODER_ENGINE)
    if not encoder.is_file():
        print(f"parity skipped: build the encoder engine ({encoder.name}) to check the decoder")
        return
    try:
        sam = sam_from_export(ExportManifest.read(folder))
    except BasamError as exc:
        print(f"parity with PyTorch skipped: {in_flags(str(exc))}")
        sam = None
    reports = check_engines(folder, encoder, decoder if decoder.is_file() else None, sam=sam)
    for report in reports.values():
        print(report.table())
    if not all(report.passed for report in reports.values()):
        raise BasamError(
            f"parity check failed for {plan.output}: the engine is kept; see the table above"
        )


def cmd_inspect(args: argparse.Namespace) -> int:
    from ..tensorrt.inspect import inspect_engine
    from ..tensorrt.manifest import read_engine_manifest

    if args.json:
        print(json.dumps(read_engine_manifest(args.engine).to_json(), indent=2))
    else:
        print(inspect_engine(args.engine))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..tensorrt.image_input import encoder_input, load_image
    from ..tensorrt.runtime import TensorRTRunner

    runner = TensorRTRunner(args.engine)
    runner.activate()
    if runner.input_names != ["image"]:
        raise BasamError(f"{args.engine.name} is not an encoder engine: run takes encoder engines")
    image, (height, width) = encoder_input(load_image(args.image), long_side=args.long_side)
    profile = runner.select({"image": image.shape})
    runner.infer({"image": image})  # warm-up: the first run includes lazy initialization
    start = time.perf_counter()
    embeddings = runner.infer({"image": image})["image_embeddings"]
    seconds = time.perf_counter() - start
    runner.deactivate()
    print(
        f"{args.image}: {height}x{width} -> input {image.shape[2]}x{image.shape[3]} (profile "
        f"#{profile}) -> image_embeddings {tuple(embeddings.shape)} in {seconds * 1000:.1f} ms "
        f"(mean {embeddings.mean():.4f}, std {embeddings.std():.4f})"
    )
    if args.output:
        np.save(args.output, embeddings)
        print(f"wrote {args.output}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ..artifacts import write_json
    from ..tensorrt.bench import bench_engine, bench_table

    if args.batch < 1 or args.iterations < 1 or args.warmup < 0:
        raise BasamError("--batch and --iterations must be >= 1, --warmup >= 0")
    sizes = [parse_size(s) for s in args.sizes]
    rows = bench_engine(args.engine, sizes, args.batch, args.warmup, args.iterations)
    print(bench_table(rows))
    if args.json:
        write_json(args.json, [r.to_json() for r in rows])
    return 0


def cmd_triton_repo(args: argparse.Namespace) -> int:
    from ..triton_repo import (
        TritonRepoOptions,
        model_config_text,
        plan_triton_repo,
        write_triton_repo,
    )

    options = TritonRepoOptions(
        backend=args.backend,
        instances=args.instances,
        max_batch=args.max_batch,
        kind="cpu" if args.cpu else "gpu",
    )
    plan = plan_triton_repo(args.source, options)
    print(in_flags(plan.describe()))
    if args.dry_run:
        for model in plan.models:
            print(f"\n--- {model.name}/config.pbtxt\n{model_config_text(model)}", end="")
        return 0
    manifest = write_triton_repo(plan, args.output, force=args.force)
    checked = manifest.validation.model_config_schema or "not checked (no tritonclient)"
    print(f"wrote {args.output} ({len(manifest.files)} files; configs: {checked})")
    return 0


COMMANDS = {
    "build": cmd_build,
    "inspect": cmd_inspect,
    "run": cmd_run,
    "bench": cmd_bench,
    "triton-repo": cmd_triton_repo,
    "compare": trt_compare.cmd_compare,
    "selftest": trt_selftest.cmd_selftest,
}


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


def entry() -> None:
    sys.exit(run(PROG, main))


if __name__ == "__main__":
    entry()
