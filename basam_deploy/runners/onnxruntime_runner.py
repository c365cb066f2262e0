"""onnxruntime (CPU) as a runner for exported ONNX files."""

from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ..errors import BasamError


class OnnxRuntimeRunner:
    """Runs one ONNX file with onnxruntime's CPU provider.

    threads: intra-op threads (None: onnxruntime's default, all cores).
    """

    def __init__(
        self, path: Path, threads: Optional[int] = None, name: Optional[str] = None
    ) -> None:
        self.path = Path(path)
        self.threads = threads
        self.name = name or f"onnxruntime:{self.path.name}"
        self.session = None

    def activate(self) -> None:
        import onnxruntime as ort

        if not self.path.is_file():
            raise BasamError(f"ONNX file not found: {self.path} (export it with basam-export)")
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        options.log_severity_level = 3  # warnings about unused initializers are not the user's
        self.session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )

    def deactivate(self) -> None:
        self.session = None

    def infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self.session is None:
            self.activate()
        names = [o.name for o in self.session.get_outputs()]
        inputs = {i.name: feed[i.name] for i in self.session.get_inputs()}
        return dict(zip(names, self.session.run(names, inputs)))
