"""A planned model's ``config.pbtxt``: protobuf text format (Triton's ``ModelConfig``) with the
plan's comments."""

import textwrap
from typing import List, Sequence, Tuple

from .._version import __version__
from .model import TOOL, ModelPlan, Tensor


def _quote(text: str) -> str:
    """A protobuf text-format string literal (C escapes; bytes outside printable ASCII as octal)."""
    out = []
    for byte in str(text).encode("utf-8"):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _wrap_comment(text: str, width: int = 98) -> List[str]:
    return [
        "# " + line if i == 0 else "#   " + line
        for i, line in enumerate(textwrap.wrap(text, width - 4, break_long_words=False))
    ]


def _tensors(key: str, tensors: Sequence[Tensor], batching: bool) -> List[str]:
    lines = [f"{key} ["]
    for index, t in enumerate(tensors):
        dims = ", ".join(str(d) for d in t.dims(batching))
        lines += [
            "  {",
            f"    name: {_quote(t.name)}",
            f"    data_type: {t.data_type}",
            f"    dims: [ {dims} ]",
            "  }" + ("," if index < len(tensors) - 1 else ""),
        ]
    return lines + ["]"]


def _string_map(key: str, pairs: Sequence[Tuple[str, str]], indent: str = "") -> List[str]:
    return [f"{indent}{key} {{ key: {_quote(k)} value: {_quote(v)} }}" for k, v in pairs]


def model_config_text(model: ModelPlan) -> str:
    """The ``config.pbtxt`` of ``model``, in protobuf text format with comments."""
    lines = [f"# Written by {TOOL} (basam-deploy {__version__}); regenerate rather than edit."]
    for comment in model.comments:
        if comment.startswith("  #"):  # profile table rows keep their alignment
            lines.append("#" + comment)
        else:
            lines += _wrap_comment(comment)
    lines += [
        "",
        f"name: {_quote(model.name)}",
        f"platform: {_quote(model.platform)}",
        f"max_batch_size: {model.max_batch_size}",
    ]
    lines += _tensors("input", model.inputs, model.batching)
    lines += _tensors("output", model.outputs, model.batching)
    if model.instance_kind:
        lines += ["instance_group [", "  {", f"    count: {model.instances}"]
        lines.append(f"    kind: {model.instance_kind}")
        if model.profiles:
            lines.append(f"    profile: [ {', '.join(_quote(p) for p in model.profiles)} ]")
        lines += ["  }", "]"]
    if model.dynamic_batching:
        lines.append("dynamic_batching { }")
    if model.steps:
        lines += ["ensemble_scheduling {", "  step ["]
        for index, step in enumerate(model.steps):
            lines += ["    {", f"      model_name: {_quote(step.model)}", "      model_version: -1"]
            lines += _string_map("input_map", step.input_map, "      ")
            lines += _string_map("output_map", step.output_map, "      ")
            lines.append("    }" + ("," if index < len(model.steps) - 1 else ""))
        lines += ["  ]", "}"]
    for key, value in model.parameters:
        lines += [
            "parameters {",
            f"  key: {_quote(key)}",
            f"  value: {{ string_value: {_quote(value)} }}",
            "}",
        ]
    return "\n".join(lines) + "\n"
