"""``basam-trt selftest``: does this toolkit work on this machine's TensorRT, GPU and driver?

In order (docs/selftest.md): versions (TensorRT, CUDA driver and runtime, GPU and compute
capability, Triton, the plugin kernel's PTX ISA version); the embedded model exported as subgraph
and plugin graphs in FP32 and FP16 (small sizes); each export in onnxruntime against PyTorch at
every corner of a two-profile ladder; build plans. Then, where TensorRT and a GPU are present:
engines built with that ladder, run at every profile's min/opt/max against PyTorch and
onnxruntime (the comparison engine, ``basam_deploy.parity``) in an order that switches profiles
inside one execution context at every step; the C++ sample when it has been built. One pass/fail
table, JSON, and an exit code: 0 passed, 1 a check failed, 2 usage error, 3 TensorRT or a GPU
missing (everything before them passed; one line says what was not run and why).

Layer: above ``compare`` (it uses exports, plans, engines and comparisons), under ``cli``.
"""

from .graphs import GRAPHS, LADDER
from .report import FAILED, NO_TENSORRT, PASSED, USAGE, Check, SelftestReport
from .run import run_selftest

__all__ = [
    "FAILED",
    "GRAPHS",
    "LADDER",
    "NO_TENSORRT",
    "PASSED",
    "USAGE",
    "Check",
    "SelftestReport",
    "run_selftest",
]
