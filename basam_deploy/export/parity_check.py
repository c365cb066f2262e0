"""The export's parity step: PyTorch vs onnxruntime on the exported files, over a ladder of sizes."""

from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np

from ..modeling import BasamSam
from ..parity import FP16_TOLERANCE, FP32_TOLERANCE, ParityReport, output_stats
from ..runners import OnnxRuntimeRunner, TorchRunner
from .graphs import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    DecoderGraph,
    EncoderGraph,
)


def point_prompts(
    rng: np.random.Generator, size: Tuple[int, int], mask_hw: Tuple[int, int]
) -> Dict[str, np.ndarray]:
    """Two prompts for an H x W model input, in the decoder's input format.

    Prompt 0: a foreground and a background point and the padding point (label -1), no mask.
    Prompt 1: a box (corners, labels 2 and 3) and a foreground point, with a mask input.
    """
    height, width = size
    xy = rng.uniform(0, 1, (2, 3, 2)) * np.array([width - 1, height - 1])
    x0, x1 = sorted(rng.uniform(0, width - 1, 2))
    y0, y1 = sorted(rng.uniform(0, height - 1, 2))
    coords = np.stack(
        [
            [xy[0, 0], xy[0, 1], [0.0, 0.0]],
            [[x0, y0], [x1, y1], xy[1, 2]],
        ]
    ).astype(np.float32)
    labels = np.array([[1, 0, -1], [2, 3, 1]], dtype=np.float32)
    mask = np.zeros((2, 1, *mask_hw), dtype=np.float32)
    mask[1] = rng.standard_normal(mask_hw) * 4
    return {
        "point_coords": coords,
        "point_labels": labels,
        "mask_input": mask,
        "has_mask_input": np.array([0.0, 1.0], dtype=np.float32),
    }


def check_export(
    sam: BasamSam, folder: Path, options, progress: Callable[[str], None] = print
) -> ParityReport:
    """Compare encoder and encoder + decoder (point and box prompts) with PyTorch.

    For each check size: batch 1, and batch 2 for non-square sizes. The decoder chain feeds each
    side its own embeddings (onnxruntime's to onnxruntime), so errors add up as in deployment.
    A ``--bias plugin`` encoder runs its BasamAttention nodes through the onnxruntime-extensions
    reference op (``OnnxRuntimeRunner`` rewrites them in memory); the PyTorch reference is ``sam``
    with its own attention backend.
    """
    tolerance = FP16_TOLERANCE if options.precision == "fp16" else FP32_TOLERANCE
    report = ParityReport(
        reference="pytorch (fp32)",
        candidate=f"onnxruntime ({options.precision})"
        + (", BasamAttention by its Python reference op" if options.bias == "plugin" else ""),
        tolerance=tolerance,
    )
    torch_encoder = TorchRunner(EncoderGraph(sam), ENCODER_INPUTS, ENCODER_OUTPUTS, "pytorch")
    torch_decoder = TorchRunner(DecoderGraph(sam), DECODER_INPUTS, DECODER_OUTPUTS, "pytorch")
    ort_encoder = OnnxRuntimeRunner(Path(folder) / "encoder.onnx")
    ort_decoder = OnnxRuntimeRunner(Path(folder) / "decoder.onnx")
    rng = np.random.default_rng(0)
    cases = [
        (size, batch)
        for size in options.check_sizes
        for batch in ((1, 2) if size[0] != size[1] else (1,))
    ]
    for runner in (torch_encoder, torch_decoder, ort_encoder, ort_decoder):
        runner.activate()
    try:
        for index, ((height, width), batch) in enumerate(cases, 1):
            image = rng.standard_normal((batch, 3, height, width)).astype(np.float32)
            reference = torch_encoder.infer({"image": image})["image_embeddings"]
            candidate = ort_encoder.infer({"image": image})["image_embeddings"]
            label = f"{height}x{width}"
            row = report.add(
                "encoder", label, batch, {"image_embeddings": output_stats(candidate, reference)}
            )
            prompts = point_prompts(
                rng, (height, width), (4 * reference.shape[-2], 4 * reference.shape[-1])
            )
            ref_out = torch_decoder.infer({"image_embeddings": reference[:1], **prompts})
            cand_out = ort_decoder.infer({"image_embeddings": candidate[:1], **prompts})
            stats = {
                name: output_stats(cand_out[name], ref_out[name], is_mask=name == "low_res_masks")
                for name in DECODER_OUTPUTS
            }
            dec_row = report.add("enc+dec", label, batch, stats)
            verdict = "ok" if row.passed and dec_row.passed else "FAIL"
            progress(f"      {index}/{len(cases)} {label} batch {batch}: {verdict}")
    finally:
        for runner in (torch_encoder, torch_decoder, ort_encoder, ort_decoder):
            runner.deactivate()
    return report
