"""The one comparison loop: a reference side against candidate sides, encoder then decoder.

A ``Side`` is whatever runs the two graphs: PyTorch (``runners.TorchRunner``, CPU or CUDA),
onnxruntime (``runners.OnnxRuntimeRunner``, any execution provider, plugin graphs included) or
TensorRT (``tensorrt.runtime.TensorRTRunner``); they share one interface (``Runner`` below) and
are interchangeable. For each ``Case`` (batch, H, W), ``compare_sides`` feeds every side the same
random image, compares each candidate's ``image_embeddings`` with the reference's, then runs each
side's decoder on *its own* embeddings (one image at a time, the decoder's contract) with the same
point and box prompts, so errors add up as they do in deployment. Every parity check of an export
or a build, every ``basam-trt compare`` and ``basam-trt selftest`` row comes from here.

Why not Polygraphy's ``Comparator`` (read: polygraphy 0.53.6, ``polygraphy/comparator/
comparator.py``): ``Comparator.run`` feeds one data loader's feed dicts to every runner (inputs
generated once and coerced to each runner's metadata), so it cannot give each side's decoder that
side's own embeddings, which is the point of the chain; and it takes Polygraphy ``BaseRunner``s
(context managers with ``get_input_metadata`` and ``last_inference_time``), which our PyTorch and
onnxruntime-with-extensions runners are not. Its ``compare_accuracy`` would only have wrapped our
statistics (``stats.output_stats``) as a ``compare_func`` around ``RunResults``, adding a format
and no check. So the loop is ours (30 lines); the TensorRT runner itself stands on Polygraphy.
"""

import contextlib
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Protocol, Sequence

import numpy as np

from ..export.graphs import DECODER_OUTPUTS, ENCODER_INPUTS, ENCODER_OUTPUTS
from .prompts import point_prompts, random_image
from .report import ParityReport
from .stats import OutputStats, Tolerance, output_stats, tolerance_for

IMAGE, EMBEDDINGS = ENCODER_INPUTS[0], ENCODER_OUTPUTS[0]
MASKS = "low_res_masks"  # the decoder output compared as masks too (IoU of logits > 0)


class Runner(Protocol):
    """Anything that maps named numpy inputs to named numpy outputs."""

    name: str

    def activate(self) -> None: ...

    def infer(self, feed: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]: ...

    def deactivate(self) -> None: ...


@dataclass
class Side:
    """One side of a comparison.

    label: how the table names it, e.g. ``onnxruntime (fp16, cpu)``.
    decoder: None when this side has no decoder (only the encoder is compared then).
    precision: ``fp32`` or ``fp16``, the arithmetic it runs; FP16 on either side means FP16 bounds.
    """

    label: str
    encoder: Runner
    decoder: Optional[Runner] = None
    precision: str = "fp32"


@dataclass(frozen=True)
class Case:
    """One input: ``batch`` images of ``height`` x ``width`` pixels (multiples of the patch)."""

    batch: int
    height: int
    width: int

    @property
    def size(self) -> str:
        return f"{self.height}x{self.width}"


Progress = Callable[[str], None]


@contextlib.contextmanager
def _active(sides: Sequence[Side]) -> Iterator[None]:
    """Every distinct runner of ``sides`` activated, and deactivated on the way out."""
    runners = {id(r): r for s in sides for r in (s.encoder, s.decoder) if r is not None}
    with contextlib.ExitStack() as stack:
        for runner in runners.values():
            runner.activate()
            stack.callback(runner.deactivate)
        yield


def _decode(side: Side, embeddings: np.ndarray, prompts: Dict[str, np.ndarray]):
    """The decoder on each image's embeddings (B C h w), outputs stacked: B*P ..."""
    assert side.decoder is not None
    outputs = [
        side.decoder.infer({EMBEDDINGS: embeddings[i : i + 1], **prompts})
        for i in range(len(embeddings))
    ]
    return {name: np.concatenate([o[name] for o in outputs]) for name in DECODER_OUTPUTS}


def _decoder_stats(candidate, reference) -> Dict[str, OutputStats]:
    return {
        name: output_stats(candidate[name], reference[name], is_mask=name == MASKS)
        for name in DECODER_OUTPUTS
    }


def compare_sides(
    reference: Side,
    candidates: Sequence[Side],
    cases: Sequence[Case],
    *,
    tolerance: Optional[Tolerance] = None,
    seed: int = 0,
    progress: Progress = print,
) -> List[ParityReport]:
    """One ``ParityReport`` per candidate against ``reference``, rows ``encoder`` and ``enc+dec``.

    tolerance: default ``tolerance_for`` the two sides' precisions, per candidate.
    The same seed gives the same images and prompts, whatever the sides.
    """
    reports = [
        ParityReport(
            reference.label,
            side.label,
            tolerance or tolerance_for(reference.precision, side.precision),
        )
        for side in candidates
    ]
    for side, report in zip(candidates, reports):
        missing = [s.label for s in (reference, side) if s.decoder is None]
        if missing:
            report.notes.append(f"decoder not compared: no decoder on {' and '.join(missing)}")
    rng = np.random.default_rng(seed)
    with _active([reference, *candidates]):
        for index, case in enumerate(cases, 1):
            image = random_image(rng, case.batch, case.height, case.width)
            ref_embeddings = reference.encoder.infer({IMAGE: image})[EMBEDDINGS]
            grid_h, grid_w = ref_embeddings.shape[-2:]
            prompts = point_prompts(rng, (case.height, case.width), (4 * grid_h, 4 * grid_w))
            ref_decoded = _decode(reference, ref_embeddings, prompts) if reference.decoder else None
            for side, report in zip(candidates, reports):
                embeddings = side.encoder.infer({IMAGE: image})[EMBEDDINGS]
                stats = {EMBEDDINGS: output_stats(embeddings, ref_embeddings)}
                passed = report.add("encoder", case.size, case.batch, stats).passed
                if side.decoder is not None and ref_decoded is not None:
                    decoded = _decode(side, embeddings, prompts)
                    row = report.add(
                        "enc+dec", case.size, case.batch, _decoder_stats(decoded, ref_decoded)
                    )
                    passed = passed and row.passed
                who = f" {side.label}" if len(candidates) > 1 else ""
                progress(
                    f"      {index}/{len(cases)} {case.size} batch {case.batch}{who}: "
                    f"{'ok' if passed else 'FAIL'}"
                )
    return reports
