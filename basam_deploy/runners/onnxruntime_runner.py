"""onnxruntime as a runner for exported ONNX files, on the execution providers asked for.

Files exported with ``bias='plugin'`` hold ``basam::BasamAttention`` nodes: the runner then builds its
session from an in-memory copy whose nodes are onnxruntime-extensions' Python reference op
(``ort_fused_op.py``); the file itself is never changed. That op is a CPU op whatever providers are
asked for. Execution providers: ``providers.py`` (CPU by default; CUDA and TensorRT unverified).
"""

import os
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np

from ..errors import BasamError
from .providers import DEFAULT_PROVIDERS, check_session_providers, resolve_providers


def default_threads() -> int:
    """Intra-op threads when none are asked for: ``OMP_NUM_THREADS`` where it is set to a positive
    integer, else 0 (onnxruntime's choice: one per physical core).

    Why: PyTorch and OpenMP programs read that variable, and a process sharing the machine (a
    container's CPU quota, a test worker, a server beside others) sets it for all of them.
    onnxruntime's own thread pool ignores it and spin-waits on every core: on 2 cores with another
    process busy, its default ran the tiny encoder 37% slower than one thread (measured).
    """
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else 0


class OnnxRuntimeRunner:
    """Runs one ONNX file with onnxruntime.

    threads: intra-op threads (None: ``default_threads()``).
    providers: execution providers in priority order, short (``cpu``, ``cuda``, ``tensorrt``) or
        onnxruntime's names; one that this onnxruntime lacks is refused in one line on ``activate``.
    ``uses_fused_op`` tells, once activated, whether the file's BasamAttention nodes run through the
    onnxruntime-extensions reference op.
    """

    def __init__(
        self,
        path: Path,
        threads: Optional[int] = None,
        name: Optional[str] = None,
        *,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
    ) -> None:
        self.path = Path(path)
        self.threads = threads
        self.providers = tuple(providers)
        self.name = name or f"onnxruntime:{self.path.name}"
        self.session = None
        self.uses_fused_op = False

    def _session_source(self, options) -> Union[str, bytes]:
        """The file's path, or for a file with BasamAttention nodes the bytes of its rewritten copy
        (``ort_fused_op.prepare_model``) with the custom-op library registered in ``options``."""
        import onnx

        graph = onnx.load(str(self.path), load_external_data=False)
        from . import ort_fused_op

        if not ort_fused_op.has_fused_nodes(graph):
            self.uses_fused_op = False
            return str(self.path)
        ort_fused_op.register_library(options)
        self.uses_fused_op = True
        prepared = ort_fused_op.prepare_model(graph)
        del graph
        # Weights saved beside the file (external data) are found relative to its folder.
        options.add_session_config_entry(
            "session.model_external_initializers_file_folder_path", str(self.path.parent)
        )
        return prepared.SerializeToString()

    def activate(self) -> None:
        import onnxruntime as ort

        if not self.path.is_file():
            raise BasamError(f"ONNX file not found: {self.path} (export it with basam-export)")
        providers = resolve_providers(self.providers)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or default_threads()
        options.log_severity_level = 3  # warnings about unused initializers are not the user's
        source = self._session_source(options)
        self.session = ort.InferenceSession(source, options, providers=providers)
        check_session_providers(providers, self.session.get_providers())

    def deactivate(self) -> None:
        self.session = None

    def infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self.session is None:
            self.activate()
        names = [o.name for o in self.session.get_outputs()]
        inputs = {i.name: feed[i.name] for i in self.session.get_inputs()}
        return dict(zip(names, self.session.run(names, inputs)))
