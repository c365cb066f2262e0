"""TensorRT for basam-deploy: profiles, build plans, engines, and running them.

One concept per module; only ``trt_import`` imports ``tensorrt`` (lazily, with named 10.x/11.x
gates), so everything here imports and the plain-Python parts (profiles, plans, trtexec lines,
manifests) work on machines without TensorRT or a GPU.

- ``profiles``: resolution profiles, presets (``profile_presets/*.json``, package data), per-input
  shape ranges, the narrowest-profile choice at run time.
- ``plan``: ``make_plan(onnx, BuildOptions(...)) -> BuildPlan``, every decision of a build.
- ``trtexec``: the equivalent trtexec command line.
- ``builder``: ``build_engine(plan)``, the thin layer over TensorRT's builder.
- ``manifest``: the ``ENGINE.json`` written beside each engine, and its checks.
- ``runtime``: ``TensorRTRunner``, an engine behind the runners' interface.
- ``inspect``, ``bench``: what ``basam-trt inspect`` / ``bench`` run. Engine parity lives above
  this layer, in ``basam_deploy.compare``.
"""

from .plan import BuildOptions, BuildPlan, make_plan
from .profiles import ResolutionProfile, select_profile
from .runtime import TensorRTRunner

__all__ = [
    "BuildOptions",
    "BuildPlan",
    "ResolutionProfile",
    "TensorRTRunner",
    "make_plan",
    "select_profile",
]
