"""Parity of TensorRT engines with PyTorch and onnxruntime at every profile's min, opt and max.

``check_engine_parity`` runs the encoder engine (and the decoder engine, chained on each side's own
embeddings with point and box prompts, as the export's parity step does) at each profile's min, opt
and max (batch, H, W), and returns two ``ParityReport``s: TensorRT vs PyTorch (float32) and TensorRT
vs onnxruntime on the same ONNX files. Tolerances follow the engine's precision route: FP32 engines
are held to FP32's, FP16 engines (either route) to FP16's. Needs TensorRT, a GPU and PyTorch with
CUDA; ``profile_sizes`` and ``sam_from_export`` are plain Python.
"""

from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..export.graphs import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    DecoderGraph,
    EncoderGraph,
)
from ..export.parity_check import point_prompts
from ..parity import FP16_TOLERANCE, FP32_TOLERANCE, ParityReport, Tolerance, output_stats
from ..runners import OnnxRuntimeRunner, TorchRunner
from .manifest import read_engine_manifest
from .runtime import TensorRTRunner

Size = Tuple[int, int, int]  # batch, height, width


def profile_sizes(manifest: Mapping[str, object]) -> List[Size]:
    """Each profile's min, opt and max (batch, H, W), in profile order, without repeats."""
    sizes: List[Size] = []
    for profile in manifest["profiles"]:  # type: ignore[union-attr]
        for key in ("min", "opt", "max"):
            size = tuple(int(v) for v in profile["resolution"][key])
            if size not in sizes:
                sizes.append(size)  # type: ignore[arg-type]
    return sizes


def engine_tolerance(manifest: Mapping[str, object]) -> Tolerance:
    precision = manifest["precision"]  # type: ignore[index]
    fp32 = precision["onnx"] == "fp32" and precision["route"] == "strongly-typed"
    return FP32_TOLERANCE if fp32 else FP16_TOLERANCE


def sam_from_export(export_manifest: Mapping[str, object]):
    """The PyTorch model an export was made from: same model, preset, bias parameters and
    checkpoint; without a checkpoint, the random initialization basam-export uses (seed 0)."""
    import torch

    from ..build import build_sam

    checkpoint = export_manifest.get("checkpoint")
    torch.manual_seed(0)
    return build_sam(
        str(export_manifest["model"]),
        str(export_manifest["preset"]),
        checkpoint["path"] if checkpoint else None,  # type: ignore[index]
        bias_slope=export_manifest.get("bias_slope"),  # type: ignore[arg-type]
        bias_metric=export_manifest.get("bias_metric"),  # type: ignore[arg-type]
        bias_in_windows=bool(export_manifest.get("bias_in_windows", False)),
    )


class _CudaTorchRunner(TorchRunner):
    """TorchRunner on a CUDA device (for models too slow on the CPU at large sizes)."""

    def infer(self, feed):
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(feed[n])).cuda() for n in self.input_names]
        with torch.no_grad():
            outputs = self.module.cuda()(*args)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return {n: o.float().cpu().numpy() for n, o in zip(self.output_names, outputs)}


def check_engine_parity(
    sam,
    export_folder: Path,
    encoder_engine: Path,
    decoder_engine: Optional[Path] = None,
    *,
    sizes: Optional[Sequence[Size]] = None,
    with_onnxruntime: bool = True,
    torch_on_gpu: bool = False,
    progress: Callable[[str], None] = print,
    seed: int = 0,
) -> Dict[str, ParityReport]:
    """{'pytorch': report, 'onnxruntime': report} of the engines against both references.

    sizes: (batch, H, W) to check; default every profile's min, opt and max (``profile_sizes``).
    """
    folder = Path(export_folder)
    manifest = read_engine_manifest(encoder_engine)
    tolerance = engine_tolerance(manifest)
    route = manifest["precision"]["route"]  # type: ignore[index]
    candidate = f"tensorrt ({manifest['precision']['onnx']}, {route})"  # type: ignore[index]
    reports = {"pytorch": ParityReport("pytorch (fp32)", candidate, tolerance)}
    torch_runner = _CudaTorchRunner if torch_on_gpu else TorchRunner
    references = {
        "pytorch": (
            torch_runner(EncoderGraph(sam), ENCODER_INPUTS, ENCODER_OUTPUTS, "pytorch"),
            torch_runner(DecoderGraph(sam), DECODER_INPUTS, DECODER_OUTPUTS, "pytorch"),
        )
    }
    if with_onnxruntime:
        reports["onnxruntime"] = ParityReport("onnxruntime (cpu)", candidate, tolerance)
        references["onnxruntime"] = (
            OnnxRuntimeRunner(folder / "encoder.onnx"),
            OnnxRuntimeRunner(folder / "decoder.onnx"),
        )
    engines = (
        TensorRTRunner(encoder_engine),
        TensorRTRunner(decoder_engine) if decoder_engine else None,
    )
    runners = [r for pair in (*references.values(), engines) for r in pair if r is not None]
    rng = np.random.default_rng(seed)
    for runner in runners:
        runner.activate()
    try:
        for batch, height, width in sizes or profile_sizes(manifest):
            label = f"{height}x{width}"
            image = rng.standard_normal((batch, 3, height, width)).astype(np.float32)
            trt_embeddings = engines[0].infer({"image": image})["image_embeddings"]
            grid = trt_embeddings.shape[-2:]
            prompts = point_prompts(rng, (height, width), (4 * grid[0], 4 * grid[1]))
            trt_decoded = (
                engines[1].infer({"image_embeddings": trt_embeddings[:1], **prompts})
                if engines[1]
                else None
            )
            for key, (encoder, decoder) in references.items():
                reference = encoder.infer({"image": image})["image_embeddings"]
                row = reports[key].add(
                    "encoder",
                    label,
                    batch,
                    {"image_embeddings": output_stats(trt_embeddings, reference)},
                )
                verdict = "ok" if row.passed else "FAIL"
                if trt_decoded is not None:
                    ref_out = decoder.infer({"image_embeddings": reference[:1], **prompts})
                    stats = {
                        name: output_stats(
                            trt_decoded[name], ref_out[name], is_mask=name == "low_res_masks"
                        )
                        for name in DECODER_OUTPUTS
                    }
                    verdict = (
                        "ok"
                        if reports[key].add("enc+dec", label, batch, stats).passed and row.passed
                        else "FAIL"
                    )
                progress(f"  {label} batch {batch} vs {key}: {verdict}")
    finally:
        for runner in runners:
            runner.deactivate()
    return reports
