"""Whether the model is being traced for export rather than run."""

import torch


def is_exporting() -> bool:
    """True under torch.export / torch.compile / torch.onnx.export (both exporters) and jit tracing.

    Eager-only conveniences (input checks that raise, choosing a chunk size from the input's size)
    are skipped then: they would bake one input's size into the graph or add shape guards.
    """
    return torch.compiler.is_compiling() or torch.jit.is_tracing()
