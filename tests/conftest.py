"""Shared test helpers and fixtures.

Fixtures other test files may use (names are stable):
- ``tiny_export``: a factory for cached, session-wide exports of the tiny model (one per distinct
  configuration: exporting takes 5-25 s, and several files need the same one). Read-only: copy the
  folder before changing anything in it.
- ``no_basam_warnings``: fails the test if it raised a BasamWarning.
Helpers: ``tiny_sam`` (the model an export of ``tiny_export`` was made from), ``randomize_``,
``relative_error``.

Exports in use (each made once per run, shared by the pytest-xdist workers; ask for one of these
rather than a near copy; configurations of one model and bias mode share its traced graphs, so a
near copy costs only what runs after tracing):
- ``tiny_export(check=False)``: the shipped weights, 256-4096 px (trt_build, triton_repo, cli_amg,
  mask_generator, web_page, web_server, cli_export, selftest, export_plugin), and their
  plugin export ``tiny_export(bias="plugin", max_size=2048, check_sizes=[(256, 320)])``
  (export_plugin, onnx_tools, selftest).
- ``tiny_export(record_checkpoint=True, max_size=1024, check=False)``: what ``basam-export`` writes
  for the default model, to 1024 px (compare, sample_segment).
- ``tiny_export(seed=5, max_size=1024, check=False)`` (predictor, serving).
- ``tiny_export(seed=21, max_size=2048, check=False)`` (export, onnx_tools); test_export.py also
  exports the sam, euclidean and official presets (seed 21, to 2048 px), whose encoder graphs
  test_precision.py takes too.
"""

import copy
import dataclasses
import hashlib
import math
import os
import pickle
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Tuple

# Triton chooses between compiling and interpreting once per process, at its first import: the
# suite has no GPU, so every Triton kernel it runs goes through the interpreter.
os.environ.setdefault("TRITON_INTERPRET", "1")

# pytest-xdist's workers (.ci/run: -n 2) share the cores: each one's PyTorch (OpenMP) and the
# commands the tests start get their share of threads, else 2 workers x 2 threads spin-wait on 2
# cores (measured: test_traceable + test_training took 215 s in 2 workers, 65 s with 1 thread each).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

import pytest  # noqa: E402
import torch  # noqa: E402

# Registers segment_anything so that tests can import it where torchvision is missing (see
# basam_deploy/sam_modules.py); conftest is imported before any test module.
import basam_deploy.sam_modules  # noqa: E402, F401

if TYPE_CHECKING:
    from basam_deploy.export.onnx_export import ExportResult


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fill every parameter with random values that keep activations O(1).

    segment-anything zero-initialises the rel-pos tables and position embedding; random values are
    needed so that the tests exercise every term of the logits.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("coefficient"):
                param.copy_(0.5 + 0.3 * noise)
            elif name.endswith(("rel_pos_h", "rel_pos_w")):
                param.copy_(noise / math.sqrt(param.shape[-1]))
            elif param.dim() == 1 and "norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * noise)
            elif param.dim() >= 2:
                fan_in = param[0].numel()
                param.copy_(noise / math.sqrt(fan_in))
            else:
                param.copy_(0.1 * noise)
    return module


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected||, in float64."""
    actual, expected = actual.double(), expected.double()
    return ((actual - expected).norm() / expected.norm()).item()


@pytest.fixture
def no_basam_warnings(recwarn):
    yield
    assert not [w for w in recwarn if "basam" in str(w.category).lower()]


def tiny_sam(preset: str = "basam", seed=None, **model_options) -> torch.nn.Module:
    """A fresh tiny model: the shipped weights (``seed=None``; build_sam's default checkpoint) or
    ``randomize_(..., seed)``; ``model_options`` go to build_sam (bias_metric, bias_in_windows, ...).
    The same arguments to ``tiny_export`` export exactly this model."""
    from basam_deploy import build_sam

    torch.manual_seed(0)  # whatever the checkpoint leaves to the random initialization
    sam = build_sam("tiny", preset, **model_options)
    return sam if seed is None else randomize_(sam, seed=seed)


def _digest(folder: Path) -> Dict[str, str]:
    """{relative path: sha256} of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _shared_root(config: pytest.Config, tmp_path_factory, name: str) -> Path:
    """A folder every process of this run sees, and no other run: under pytest-xdist, one named
    after the run's id beside each worker's own temporary folder (``pytest-N/popen-gwK``; a fixed
    ``--basetemp`` is the same for every run); without xdist, a fresh folder of this session."""
    workerinput = getattr(config, "workerinput", None)  # set in xdist's workers only
    if workerinput is None:
        return tmp_path_factory.mktemp(name)
    root = tmp_path_factory.getbasetemp().parent / f"{name}-{workerinput['testrunuid']}"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(autouse=True)
def _memory_heavy_tests_run_alone(request, pytestconfig, tmp_path_factory):
    """Under pytest-xdist, a test marked ``memory_heavy`` runs alone: it takes the write side of a
    reader/writer file lock of which every other test holds the read side. Its peak (PyTorch's
    unfused attention at 2048 px: ~15 GiB RSS measured) beside another worker's exceeds the memory
    of a small CI machine, and the kernel's OOM killer ends a worker; alone, the suite needs what
    it needs without xdist. While it runs, the other workers wait, so it takes their cores too."""
    if not hasattr(pytestconfig, "workerinput"):  # set in xdist's workers only
        yield
        return
    from filelock import ReadWriteLock

    lock = ReadWriteLock(_shared_root(pytestconfig, tmp_path_factory, "locks") / "memory.db")
    if "memory_heavy" not in request.keywords:
        with lock.read_lock():
            yield
        return
    # Alone, the test has every core: PyTorch's threads (the reference and the plugin's op) too.
    threads = torch.get_num_threads()
    with lock.write_lock():
        torch.set_num_threads(os.cpu_count() or threads)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_export(pytestconfig, tmp_path_factory):
    """``tiny_export(preset="basam", seed=None, *, record_checkpoint=False, model_options=None,
    **export_options) -> ExportResult``: the tiny model (``tiny_sam(preset, seed,
    **model_options)``) exported with ``ExportOptions(**export_options)``, once per distinct
    configuration for the whole run, quietly (``ExportResult.folder`` holds the files).

    record_checkpoint: pass the shipped checkpoint to export_onnx, so the manifest names it (as
        ``basam-export`` does for the default model); only with ``seed=None``.

    The folder is shared by every test that asks for the same configuration, in every pytest-xdist
    worker (the first to ask exports under a file lock, the others wait and read its result): never
    write into it (copy it with ``shutil.copytree`` first). Each process checks the exports it used
    at its end against their digests taken right after exporting: a changed, added or removed file
    fails the session. Each call returns its own copy of the manifest dict.
    """
    # Imported here, not at the top: a test file that never exports should not depend on it.
    from filelock import FileLock
    from traced import FILES, record_traces, serve_traces

    from basam_deploy.export import onnx_export
    from basam_deploy.export.onnx_export import ExportOptions, export_onnx
    from basam_deploy.weights import shipped_checkpoint

    root = _shared_root(pytestconfig, tmp_path_factory, "exports")
    used: Dict[str, Tuple["ExportResult", Dict[str, str]]] = {}

    def export(
        preset: str = "basam",
        seed: Optional[int] = None,
        *,
        record_checkpoint: bool = False,
        model_options: Optional[Dict[str, object]] = None,
        **export_options,
    ) -> "ExportResult":
        model_options = dict(model_options or {})
        if record_checkpoint and seed is not None:
            raise ValueError("record_checkpoint names the shipped weights: use it with seed=None")
        sam = tiny_sam(preset, seed, **model_options)  # well under a second
        # Keyed by what was built, not by the keywords given: the model's resolved preset
        # (bias_metric="manhattan" is the default) and the resolved options (so is max_size=4096).
        resolved = sam.image_encoder.preset
        named = {f.name for f in dataclasses.fields(resolved)}
        others = tuple(sorted((k, v) for k, v in model_options.items() if k not in named))
        options = ExportOptions(**export_options).resolve(sam)
        key = repr((repr(resolved), seed, record_checkpoint, others, repr(options)))
        # The same name in every worker: the folder and the pickled result.
        name = f"{preset}-{'shipped' if seed is None else seed}-"
        name += hashlib.sha256(key.encode()).hexdigest()[:12]
        # What the traced graphs depend on: the model, the bias mode, the opset and the example
        # sizes (from the range's low end); not the rest of the range, the precision, the parity
        # sizes or the checkpoint named (traced.py). Configurations of one trace take turns.
        grid = onnx_export._example_grid_hw(sam, options)[:3]
        trace_key = repr((repr(resolved), seed, others, options.bias, options.opset, grid))
        traces = root / f"trace-{hashlib.sha256(trace_key.encode()).hexdigest()[:12]}"
        if name not in used:
            folder, saved = root / name, root / f"{name}.pickle"
            with FileLock(str(traces) + ".lock"):
                if not saved.exists():
                    shutil.rmtree(folder, ignore_errors=True)  # a worker that failed midway
                    with pytest.MonkeyPatch.context() as patch:
                        if all((traces / f).is_file() for f in FILES):
                            graphs = {f: (traces / f).read_bytes() for f in FILES}
                            serve_traces(patch, graphs, resolved.name, options.bias)
                        else:
                            traces.mkdir(exist_ok=True)
                            record_traces(patch, traces)
                        result = export_onnx(
                            sam,
                            folder,
                            options,
                            checkpoint=shipped_checkpoint("tiny") if record_checkpoint else None,
                            progress=lambda _: None,
                        )
                    staged = saved.with_suffix(".partial")
                    staged.write_bytes(pickle.dumps((key, result, _digest(folder))))
                    staged.replace(saved)
                stored_key, result, digest = pickle.loads(saved.read_bytes())
            assert stored_key == key, f"two configurations share the name {name}"
            used[name] = result, digest
        result, _ = used[name]
        return dataclasses.replace(result, manifest=copy.deepcopy(result.manifest))

    yield export
    changed = [r.folder.name for r, digest in used.values() if _digest(r.folder) != digest]
    assert not changed, f"tests wrote into the shared exports {changed}: copy them first"


@pytest.fixture(scope="module")
def models():
    """(ours, theirs): the shipped tiny weights in BasamSam (preset sam) and in segment-anything's
    own Sam with the same configuration: the two sides of the reference tests against
    SamPredictor and SamAutomaticMaskGenerator (which skip where torchvision does not import)."""
    from test_against_segment_anything import stock_sam

    from basam_deploy import build_sam
    from basam_deploy.sam_modules import Sam

    ours = build_sam("tiny", "sam")
    theirs = stock_sam("tiny")
    theirs.load_state_dict(ours.state_dict())
    assert isinstance(theirs, Sam) and type(theirs) is Sam
    return ours, theirs
