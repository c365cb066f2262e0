"""onnxruntime as a runner for exported ONNX files, on the execution providers asked for.

Files exported with ``bias='plugin'`` hold ``basam::BasamAttention`` nodes: the runner then builds its
session from an in-memory copy whose nodes are onnxruntime-extensions' Python reference op
(``ort_fused_op.py``); the file itself is never changed. That op is a CPU op whatever providers are
asked for. Execution providers: ``providers.py`` (CPU by default; CUDA and TensorRT unverified).
"""

from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np

from ..errors import BasamError
from .providers import DEFAULT_PROVIDERS, check_session_providers, resolve_providers


class OnnxRuntimeRunner:
    """Runs one ONNX file with onnxruntime.

    threads: intra-op threads (None: onnxruntime's default, all cores).
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
        if self.threads:
            options.intra_op_num_threads = self.threads
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
