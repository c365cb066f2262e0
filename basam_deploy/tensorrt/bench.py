"""``basam-trt bench``: an engine's latency per input size on the GPU.

Per size: ``warmup`` runs, then ``iterations`` runs each timed on the host clock around one
synchronous ``execute`` (Polygraphy's runner synchronizes its stream before returning; inputs are
already on the GPU, so host copies are not timed, the copy of the outputs out of Polygraphy's
reused buffers is); median and p90 latency,
images per second (batch / median), the process's GPU memory in use (``torch.cuda.mem_get_info``,
engine weights, activation memory, I/O and PyTorch's cache included) and the profile that served it.
Synthetic inputs: random images for an encoder; for a decoder, embeddings of the size's grid and one
prompt of two points.
"""

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np

from .profiles import ENCODER, PromptRange, ResolutionProfile, input_ranges


@dataclass(frozen=True)
class BenchRow:
    size: str
    batch: int
    profile: int
    median_ms: float
    p90_ms: float
    images_per_s: float
    gpu_memory_mib: float

    def to_json(self) -> Dict[str, object]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (q in 0..100), as numpy's default."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def synthetic_shapes(
    inputs: Mapping[str, Sequence[Union[int, str]]], kind: str, batch: int, height: int, width: int
) -> Dict[str, Tuple[int, ...]]:
    """Concrete input shapes for one size: the profile machinery at min = opt = max, with one
    prompt of two points for the decoder."""
    shape = (batch, height, width)
    fixed = PromptRange(prompts=(1, 1, 1), points=(2, 2, 2))
    ranges = input_ranges(ResolutionProfile(shape, shape, shape), inputs, kind, fixed)
    return {name: r.opt for name, r in ranges.items()}


def bench_table(rows: Sequence[BenchRow]) -> str:
    lines = [
        f"{'size':>11} {'batch':>5} {'profile':>7} {'median ms':>10} {'p90 ms':>9} "
        f"{'images/s':>9} {'GPU MiB':>8}"
    ]
    for r in rows:
        lines.append(
            f"{r.size:>11} {r.batch:>5} {r.profile:>7} {r.median_ms:>10.2f} {r.p90_ms:>9.2f} "
            f"{r.images_per_s:>9.1f} {r.gpu_memory_mib:>8.0f}"
        )
    return "\n".join(lines)


def bench_engine(
    engine: Path,
    sizes: Sequence[Tuple[int, int]],
    batch: int = 1,
    warmup: int = 5,
    iterations: int = 50,
    seed: int = 0,
) -> List[BenchRow]:
    """Latency of ``engine`` at each (H, W). Needs TensorRT, a GPU and PyTorch with CUDA."""
    from .device import require_cuda
    from .runtime import TensorRTRunner

    torch = require_cuda()
    free_before = torch.cuda.mem_get_info()[0]
    runner = TensorRTRunner(engine)
    runner.activate()
    generator = torch.Generator(device="cuda").manual_seed(seed)
    assert runner.manifest is not None  # activate() read it
    kind = runner.manifest.source.graph
    signature = {name: t.shape for name, t in runner.manifest.inputs.items()}
    rows = []
    try:
        for height, width in sizes:
            shapes = synthetic_shapes(signature, kind, batch, height, width)
            inputs = {
                name: torch.randn(shape, generator=generator, device="cuda")
                for name, shape in shapes.items()
            }
            if "point_labels" in inputs:
                inputs["point_labels"] = torch.ones_like(inputs["point_labels"])
            if "has_mask_input" in inputs:
                inputs["has_mask_input"] = torch.zeros_like(inputs["has_mask_input"])
            index = runner.select(shapes)
            for _ in range(warmup):
                runner.execute(inputs)
            times = []
            for _ in range(iterations):
                start = time.perf_counter()
                runner.execute(inputs)
                times.append((time.perf_counter() - start) * 1000.0)
            median = percentile(times, 50)
            used = (free_before - torch.cuda.mem_get_info()[0]) / 2**20
            images = batch if kind == ENCODER else 1
            rows.append(
                BenchRow(
                    size=f"{height}x{width}",
                    batch=batch,
                    profile=index,
                    median_ms=median,
                    p90_ms=percentile(times, 90),
                    images_per_s=1000.0 * images / median,
                    gpu_memory_mib=used,
                )
            )
    finally:
        runner.deactivate()
    return rows
