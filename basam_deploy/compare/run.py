"""``compare_sources``: any two sources side by side at the sizes asked, in one table."""

from typing import Callable, Optional, Sequence, Tuple

from ..errors import BasamError
from ..parity import Case, ParityReport, compare_sides
from ..runners.providers import DEFAULT_PROVIDERS, resolve_providers
from .sources import Source, model_spec, open_side, parse_source

PATCH = 16


def _check_sizes(sizes: Sequence[Tuple[int, int]], sources: Sequence[Source]) -> None:
    """Every size a multiple of the patch and inside each export's size range (one line each)."""
    for height, width in sizes:
        if height % PATCH or width % PATCH:
            raise BasamError(f"size {height}x{width} is not a multiple of {PATCH}: e.g. 256x320")
    for source in sources:
        manifest = source.export_manifest()
        if manifest is None:
            continue
        allowed = manifest.size_range
        for height, width in sizes:
            if not allowed.min <= min(height, width) <= max(height, width) <= allowed.max:
                raise BasamError(
                    f"size {height}x{width} is outside {source.text}'s exported range "
                    f"{allowed.min}-{allowed.max}"
                )


def compare_sources(
    a: str,
    b: str,
    sizes: Sequence[Tuple[int, int]],
    batch: int = 1,
    *,
    model: Optional[str] = None,
    preset: Optional[str] = None,
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    torch_device: str = "cpu",
    seed: int = 0,
    progress: Callable[[str], None] = print,
) -> ParityReport:
    """B against A (the reference) at every size, ``batch`` images each.

    a, b: see ``sources.parse_source``; model / preset: the PyTorch model of ``default`` and
    checkpoint sides (default: the other side's export manifest, else tiny / basam).
    """
    if batch < 1:
        raise BasamError(f"batch {batch} must be >= 1")
    if not sizes:
        raise BasamError("no size to compare at: give at least one HxW")
    sources = [parse_source(a), parse_source(b)]
    resolve_providers(providers)  # an unavailable provider fails before any model is built
    _check_sizes(sizes, sources)
    spec = model_spec(sources, model=model, preset=preset)
    reference, candidate = (
        open_side(s, spec, providers=providers, torch_device=torch_device) for s in sources
    )
    cases = [Case(batch, height, width) for height, width in sizes]
    (report,) = compare_sides(reference, [candidate], cases, seed=seed, progress=progress)
    return report
