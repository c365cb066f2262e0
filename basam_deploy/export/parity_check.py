"""The export's parity step: PyTorch vs onnxruntime on the exported files, over a ladder of sizes.

The sides are made here and compared by the one loop (``parity.compare_sides``). Both runners
belong to the export stage (they execute its graphs), so nothing here imports a later layer.
"""

from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from ..modeling import BasamSam
from ..parity import Case, ParityReport, Side, Tolerance, compare_sides, tolerance_for
from ..runners import OnnxRuntimeRunner, TorchRunner
from ..runners.providers import DEFAULT_PROVIDERS, short_names
from .graphs import (
    DECODER_FILE,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_FILE,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    DecoderGraph,
    EncoderGraph,
)


def tolerance(options) -> Optional[Tolerance]:
    """The bounds of the export's check: ``options.tolerance`` if given, INT8's
    (``parity.stats.INT8_TOLERANCE``) for ``precision='int8'`` or ``'int8-qdq'``, else None (the
    check then takes ``parity.tolerance_for`` the two sides' precisions)."""
    if options.tolerance is not None:
        return options.tolerance
    return tolerance_for(options.precision) if options.precision.startswith("int8") else None


def export_cases(sizes: Sequence[Tuple[int, int]]) -> List[Case]:
    """Batch 1 at every size, and batch 2 at the non-square ones."""
    return [
        Case(batch, height, width)
        for height, width in sizes
        for batch in ((1, 2) if height != width else (1,))
    ]


def torch_side(sam: BasamSam, device: str = "cpu") -> Side:
    """``sam`` in float32 on ``device`` (``cpu`` or ``cuda``), with its own attention backend."""
    return Side(
        f"pytorch (fp32, {device})",
        TorchRunner(EncoderGraph(sam), ENCODER_INPUTS, ENCODER_OUTPUTS, "pytorch:encoder", device),
        TorchRunner(DecoderGraph(sam), DECODER_INPUTS, DECODER_OUTPUTS, "pytorch:decoder", device),
    )


def onnxruntime_side(
    folder: Path, precision: str, providers: Sequence[str] = DEFAULT_PROVIDERS
) -> Side:
    """encoder.onnx and decoder.onnx of an export folder in onnxruntime. A ``bias='plugin'``
    encoder runs its BasamAttention nodes through the onnxruntime-extensions reference op."""
    encoder = OnnxRuntimeRunner(Path(folder) / ENCODER_FILE, providers=providers)
    decoder = OnnxRuntimeRunner(Path(folder) / DECODER_FILE, providers=providers)
    label = f"onnxruntime ({precision}, {short_names(encoder.providers)})"
    return Side(label, encoder, decoder, precision)


def check_export(
    sam: BasamSam, folder: Path, options, progress: Callable[[str], None] = print
) -> ParityReport:
    """Compare encoder and encoder + decoder (point and box prompts) with PyTorch at
    ``options.check_sizes`` (``export_cases``), on ``options.check_providers`` (default CPU)."""
    candidate = onnxruntime_side(folder, options.precision, options.check_providers)
    if options.bias == "plugin":
        candidate.label += ", BasamAttention by its Python reference op"
    (report,) = compare_sides(
        torch_side(sam),
        [candidate],
        export_cases(options.check_sizes),
        tolerance=tolerance(options),
        progress=progress,
    )
    return report
