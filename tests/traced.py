"""Reuse traced graphs, for tests and exports whose assertions are not about tracing.

Tracing the tiny model's encoder and decoder is most of an export's time (10-25 s on the CI
machine). A test of what ``export_onnx`` does *after* tracing (staging and interrupts, external
weights, a failed parity check, the FP16 policy, replacing an earlier export, the self-test's rows)
can take the graphs of a cached export of the same model (conftest's ``tiny_export``) instead of
tracing them again: tracing is deterministic (test_export.py's determinism test, which traces for
real, checks it) and the range of sizes only changes metadata, so the graphs are the ones a fresh
trace would give. Everything after tracing runs as it does for a user.

conftest's ``tiny_export`` itself keeps each model's traces (``record_traces``) and gives them to
its other configurations of the same model (``serve_traces``): what differs after tracing (size
range, precision, parity sizes, the checkpoint named in the manifest) is then all that runs again.
"""

from pathlib import Path
from typing import Dict, Optional

import onnx

from basam_deploy.export import onnx_export
from basam_deploy.export.graphs import DECODER_FILE, ENCODER_FILE
from basam_deploy.export.manifest import ExportManifest

FILES = (ENCODER_FILE, DECODER_FILE)
_TRACERS = {ENCODER_FILE: "_encoder_proto", DECODER_FILE: "_decoder_proto"}


def serve_traces(monkeypatch, graphs: Dict[str, bytes], preset: str, bias: Optional[str]) -> None:
    """Make ``export_onnx`` take the serialized graphs ``{encoder.onnx, decoder.onnx: bytes}`` of
    preset ``preset`` instead of tracing, for the rest of the test (or ``monkeypatch`` context).
    The encoder is served only for bias mode ``bias`` (None: any; another mode is traced for real);
    the decoder does not depend on it. Each call gets its own copy (export_onnx writes metadata into
    the protos it is given)."""
    trace_encoder = getattr(onnx_export, _TRACERS[ENCODER_FILE])

    def encoder(sam, options):
        assert sam.image_encoder.preset.name == preset, "not the traced model"
        if bias is not None and options.bias != bias:
            return trace_encoder(sam, options)
        return onnx.load_from_string(graphs[ENCODER_FILE])

    def decoder(sam, options):
        return onnx.load_from_string(graphs[DECODER_FILE])

    monkeypatch.setattr(onnx_export, _TRACERS[ENCODER_FILE], encoder)
    monkeypatch.setattr(onnx_export, _TRACERS[DECODER_FILE], decoder)


def record_traces(monkeypatch, folder: Path) -> None:
    """Make ``export_onnx`` save each graph it traces into ``folder`` (encoder.onnx, decoder.onnx),
    as traced, before anything after tracing changes it; each file lands whole (rename)."""
    for name, attribute in _TRACERS.items():
        trace = getattr(onnx_export, attribute)

        def recording(sam, options, trace=trace, name=name):
            proto = trace(sam, options)
            staged = folder / f"{name}.partial"
            staged.write_bytes(proto.SerializeToString())
            staged.replace(folder / name)
            return proto

        monkeypatch.setattr(onnx_export, attribute, recording)


def reuse_traces(monkeypatch, folder: Path) -> None:
    """Make ``export_onnx`` take encoder.onnx and decoder.onnx of the export in ``folder`` instead
    of tracing, for the rest of the test. The encoder is reused only for the bias mode it was
    exported with (another mode is traced for real); the decoder does not depend on it."""
    folder = Path(folder)
    manifest = ExportManifest.read(folder)
    assert manifest.precision == "fp32", "reuse an FP32 export: the FP16 policy runs afterwards"
    # Read now: the folder may be the one the next export replaces (weights saved beside a file
    # are read in too).
    graphs = {name: onnx.load(folder / name).SerializeToString() for name in FILES}
    serve_traces(monkeypatch, graphs, manifest.preset, manifest.bias)
