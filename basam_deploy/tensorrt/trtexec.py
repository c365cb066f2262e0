"""The trtexec command line equivalent to a build plan (``basam-trt build --print-trtexec``).

Flags as trtexec 10.9-11.1 parses them (samples/common/sampleOptions.cpp): one profile is
``--minShapes/--optShapes/--maxShapes=name:AxBxC,...``; several profiles are each introduced by
``--profile=N`` directly followed by their three shape flags. ``--memPoolSize=workspace:SIZE`` takes
base-2 suffixes B/K/M/G. ``--stronglyTyped`` is needed on 10.x and a documented no-op on 11.x;
``--fp16`` (the weakly typed route) exists on 10.x only.
"""

import shlex
from typing import List, Tuple

from .plan import WEAKLY_TYPED_FP16, BuildPlan


def _size(num_bytes: int) -> str:
    for suffix, unit in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if num_bytes % unit == 0:
            return f"{num_bytes // unit}{suffix}"
    return f"{num_bytes}B"


def _shapes(plan_inputs, which: str) -> str:
    return ",".join(
        f"{name}:{'x'.join(str(d) for d in getattr(r, which))}" for name, r in plan_inputs
    )


def trtexec_argv(plan: BuildPlan) -> Tuple[List[str], List[str]]:
    """(argv, caveats): the trtexec arguments and the comment lines to print above them."""
    argv = ["trtexec", f"--onnx={plan.onnx}", f"--saveEngine={plan.output}"]
    caveats = []
    if plan.precision.route == WEAKLY_TYPED_FP16:
        argv.append("--fp16")
        caveats.append("--fp16 (weak typing) exists in TensorRT 10.x only")
    else:
        argv.append("--stronglyTyped")
        caveats.append("--stronglyTyped: required on TensorRT 10.x, a no-op on 11.x")
    if not plan.precision.tf32:
        argv.append("--noTF32")
    several = len(plan.profiles) > 1
    for index, profile in enumerate(plan.profiles):
        if several:
            argv.append(f"--profile={index}")
        for flag, which in (("--minShapes", "min"), ("--optShapes", "opt"), ("--maxShapes", "max")):
            argv.append(f"{flag}={_shapes(profile.inputs, which)}")
    settings = plan.settings
    if settings.timing_cache is not None:
        argv.append(f"--timingCacheFile={settings.timing_cache}")
    if settings.workspace_bytes is not None:
        argv.append(f"--memPoolSize=workspace:{_size(settings.workspace_bytes)}")
    if settings.opt_level is not None:
        argv.append(f"--builderOptimizationLevel={settings.opt_level}")
    argv += [f"--profilingVerbosity={settings.profiling_verbosity.lower()}", "--skipInference"]
    if plan.plugin.required:
        caveats.append(
            f"the graph needs the BA-SAM plugin ({plan.plugin.module}), a Python tensorrt.plugin "
            f"plugin that trtexec cannot load to build: build with basam-trt build; "
            f"trtexec --loadEngine runs the engine it writes (ahead-of-time kernel embedded)"
        )
    return argv, caveats


def trtexec_command(plan: BuildPlan) -> str:
    """The caveats as shell comments, then the command (quoted for a POSIX shell)."""
    argv, caveats = trtexec_argv(plan)
    return "\n".join([*(f"# {c}" for c in caveats), shlex.join(argv)])
