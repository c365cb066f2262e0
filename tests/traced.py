"""Reuse an earlier export's traced graphs, for tests whose assertions are not about tracing.

Tracing the tiny model's encoder and decoder is most of an export's time (10-25 s on the CI
machine). A test of what ``export_onnx`` does *after* tracing (staging and interrupts, external
weights, a failed parity check, the FP16 policy, replacing an earlier export, the self-test's rows)
can take the graphs of a cached export of the same model (conftest's ``tiny_export``) instead of
tracing them again: tracing is deterministic (test_export.py's determinism test, which traces for
real, checks it) and the range of sizes only changes metadata, so the graphs are the ones a fresh
trace would give. Everything after tracing runs as it does for a user.
"""

from pathlib import Path

import onnx

from basam_deploy.export import onnx_export
from basam_deploy.export.graphs import DECODER_FILE, ENCODER_FILE
from basam_deploy.export.manifest import ExportManifest

FILES = (ENCODER_FILE, DECODER_FILE)


def reuse_traces(monkeypatch, folder: Path) -> None:
    """Make ``export_onnx`` take encoder.onnx and decoder.onnx of the export in ``folder`` instead
    of tracing, for the rest of the test. The encoder is reused only for the bias mode it was
    exported with (another mode is traced for real); the decoder does not depend on it."""
    folder = Path(folder)
    manifest = ExportManifest.read(folder)
    assert manifest.precision == "fp32", "reuse an FP32 export: the FP16 policy runs afterwards"
    # Read now: the folder may be the one the next export replaces. Each call gets its own copy
    # (export_onnx writes metadata into the protos it is given).
    graphs = {name: onnx.load(folder / name).SerializeToString() for name in FILES}
    trace_encoder = onnx_export._encoder_proto

    def encoder(sam, options):
        assert sam.image_encoder.preset.name == manifest.preset, "not the exported model"
        if options.bias != manifest.bias:
            return trace_encoder(sam, options)
        return onnx.load_from_string(graphs[ENCODER_FILE])

    def decoder(sam, options):
        return onnx.load_from_string(graphs[DECODER_FILE])

    monkeypatch.setattr(onnx_export, "_encoder_proto", encoder)
    monkeypatch.setattr(onnx_export, "_decoder_proto", decoder)
