"""``basam-trt inspect``: an engine's manifest (no TensorRT needed), and where TensorRT and a GPU are
present, what the engine itself reports: profiles, I/O names, shapes and types, and the precision
of its layers from TensorRT's engine inspector (``get_engine_information`` in JSON; the engine must
be built with DETAILED profiling verbosity, as basam-trt builds it).
"""

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from ..errors import BasamError
from .manifest import describe_manifest, read_engine_manifest

# Words of the inspector's "Format/Datatype" strings ("Row major linear FP32", "Channel major FP16
# format where channel % 8 == 0") -> a precision name. Checked in order.
_PRECISION_WORDS = (
    ("BF16", ("BF16", "BFLOAT16")),
    ("FP16", ("FP16", "HALF")),
    ("FP32", ("FP32", "FLOAT")),
    ("FP8", ("FP8",)),
    ("INT64", ("INT64",)),
    ("INT32", ("INT32",)),
    ("INT8", ("INT8",)),
    ("UINT8", ("UINT8",)),
    ("BOOL", ("BOOL",)),
)


def precision_of(format_datatype: str) -> str:
    text = format_datatype.upper()
    for name, words in _PRECISION_WORDS:
        if any(re.search(rf"\b{w}\b", text) for w in words):
            return name
    return "?"


@dataclass
class LayerPrecisions:
    """Layer count per output precision, and per precision the layer types."""

    layers: int = 0
    by_precision: Counter = field(default_factory=Counter)
    types: Dict[str, Counter] = field(default_factory=dict)

    def describe(self) -> str:
        head = ", ".join(f"{p} {n}" for p, n in self.by_precision.most_common())
        lines = [f"layers     {self.layers} ({head})"]
        for precision, types in sorted(self.types.items()):
            shown = ", ".join(f"{t} {n}" for t, n in types.most_common(8))
            lines.append(f"  {precision:<6} {shown}")
        return "\n".join(lines)


def summarize_layers(engine_information: str) -> Optional[LayerPrecisions]:
    """Parse ``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)``:
    ``{"Layers": [...], "Bindings": [...]}``. A layer's precision is that of its first output.
    None when the layers are bare names (engine built without DETAILED profiling verbosity)."""
    try:
        layers = json.loads(engine_information).get("Layers", [])
    except (json.JSONDecodeError, AttributeError):
        return None
    if not layers or not all(isinstance(layer, dict) for layer in layers):
        return None
    summary = LayerPrecisions(layers=len(layers))
    for layer in layers:
        outputs = layer.get("Outputs") or [{}]
        precision = precision_of(str(outputs[0].get("Format/Datatype", "")))
        summary.by_precision[precision] += 1
        summary.types.setdefault(precision, Counter())[str(layer.get("LayerType", "?"))] += 1
    return summary


def _engine_section(engine_path: Path) -> str:
    """What TensorRT itself reports about the engine (needs TensorRT and a GPU)."""
    from .runtime import TensorRTRunner
    from .trt_import import import_tensorrt

    runner = TensorRTRunner(engine_path)
    runner.activate()
    try:
        trt = import_tensorrt()
        engine = runner.engine
        lines = [f"engine I/O (TensorRT {trt.__version__})"]
        for name in runner.input_names + runner.output_names:
            mode = "input " if name in runner.input_names else "output"
            lines.append(
                f"  {mode} {name} {engine.get_tensor_dtype(name)} {tuple(engine.get_tensor_shape(name))}"
            )
        for index, ranges in enumerate(runner.profiles):
            lines.append(f"  profile #{index}: " + "; ".join(f"{n} {r}" for n, r in ranges.items()))
        lines.append(f"  activation memory {runner.device_memory_bytes / 2**20:.1f} MiB")
        inspector = engine.create_engine_inspector()
        info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        summary = summarize_layers(info)
        lines.append(
            summary.describe()
            if summary
            else "layers     (no layer detail: the engine was built without DETAILED verbosity)"
        )
        return "\n".join(lines)
    finally:
        runner.deactivate()


def inspect_engine(engine: Path, engine_details: Optional[bool] = None) -> str:
    """The manifest's description, then TensorRT's view of the engine when ``engine_details`` is
    True, or None (default) and TensorRT and a GPU are usable (otherwise a note says why not)."""
    engine = Path(engine)
    text = describe_manifest(read_engine_manifest(engine), engine)
    if engine_details is False:
        return text
    try:
        return text + "\n" + _engine_section(engine)
    except BasamError as exc:
        if engine_details:
            raise
        return text + f"\n(engine internals not shown: {exc})"
