"""Does an ONNX graph stay within what TensorRT's ONNX parser documents, from 10.9 through 11.x?

The list is data: ``tensorrt_ops.json`` beside this module, which names the onnx-tensorrt files (and
their commits) it was read from. It holds the operators every release in the range documents, the
documented default-domain opset range, and per-operator restrictions, some of them as keys this
module enforces (allowed attribute values, inputs that must be initializers, declared outputs, ...).

Every export runs ``check_tensorrt_ops``: a graph that passes is not proven to build (data types,
shapes and numerics are TensorRT's to judge), but one that fails would certainly not parse.

Our own TensorRT plugin ops are accepted when the caller declares them in ``plugin_ops``
(an export with ``bias='plugin'`` passes ``BASAM_PLUGIN_OPS``); a declared ``basam::BasamAttention``
node must then also keep the op's contract (``fused_op_contract.node_problems``: inputs, attribute names,
types and values, ``plugin_namespace`` / ``plugin_version``), or the plugin registry would not
take it.

Written by hand: onnx knows no backend's operator coverage, and the tools that do (Polygraphy's
``inspect capability``, ``IParser.supports_model_v2``) need TensorRT itself, which the project's
machines cannot install.
"""

import functools
import json
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Set, Tuple

import onnx
from onnx import helper

from .. import fused_op_contract
from ..errors import BasamError

OPS_FILE = "tensorrt_ops.json"
_DEFAULT_DOMAINS = ("", "ai.onnx")
_MAX_NAMED = 5
# The ops basam-deploy's own TensorRT plugin serves: (domain, op_type).
BASAM_PLUGIN_OPS = fused_op_contract.PLUGIN_OPS


@dataclass(frozen=True)
class SupportedOps:
    """What TensorRT's ONNX parser documents for every release in ``tensorrt_range``.

    ops: default-domain op types it parses. opset_min / opset_max: the default-domain opset range
    documented for the whole range. restrictions: op type -> restriction record (``text``, plus the
    keys ``unsupported_nodes`` enforces). later_ops: op type -> first TensorRT release that parses it
    (after the range's start). documented_unsupported: op types the tables mark as not supported.
    sources: one line per file the data was read from.
    """

    ops: FrozenSet[str]
    opset_min: int
    opset_max: int
    restrictions: Mapping[str, Mapping[str, Any]]
    later_ops: Mapping[str, str]
    documented_unsupported: FrozenSet[str]
    tensorrt_range: Tuple[str, str]
    sources: Tuple[str, ...]


@dataclass(frozen=True)
class UnsupportedNode:
    """One node TensorRT's parser would refuse, and why.

    name: the node's name (``#i``, its index, when it has none). where: the subgraph or local
    function that holds it, empty for the main graph. A problem with the model's opset, not with one
    node, is reported with op_type ``opset_import``.
    """

    name: str
    op_type: str
    domain: str
    reason: str
    where: str = ""

    def __str__(self) -> str:
        op = f"{self.domain}::{self.op_type}" if self.domain else self.op_type
        place = f" in {self.where}" if self.where else ""
        return f"{op} '{self.name}'{place}: {self.reason}"


def _source_line(source: Mapping[str, Any]) -> str:
    commit = source.get("commit") or "commit unknown"
    line = f"{source['repository']} {source['path']} @ {commit} ({source['what']})"
    return line if source.get("read", True) else line + " [could not be read]"


@functools.lru_cache(maxsize=None)
def load_supported_ops() -> SupportedOps:
    """The operator list shipped with the package (``basam_deploy/export/tensorrt_ops.json``)."""
    text = resources.files(__package__).joinpath(OPS_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    return SupportedOps(
        ops=frozenset(data["ops"]),
        opset_min=int(data["opset"]["min"]),
        opset_max=int(data["opset"]["max"]),
        restrictions=MappingProxyType(
            {op: MappingProxyType(rule) for op, rule in data["restrictions"].items()}
        ),
        later_ops=MappingProxyType(
            {op: entry["since"] for op, entry in data["ops_from_later_versions"].items()}
        ),
        documented_unsupported=frozenset(data["documented_unsupported"]),
        tensorrt_range=(data["tensorrt"]["from"], data["tensorrt"]["through"]),
        sources=tuple(_source_line(s) for s in data["sources"]),
    )


def _domain(domain: str) -> str:
    return "" if domain in _DEFAULT_DOMAINS else domain


def _plugin_set(plugin_ops: Iterable[Tuple[str, str]]) -> Set[Tuple[str, str]]:
    plugins = set()
    for domain, op_type in plugin_ops:
        domain = _domain(domain)
        # The parser imports a default-domain node with a standard op type through its own importer,
        # never through the plugin registry: such a plugin would silently not be used.
        if not domain and onnx.defs.has(op_type):
            raise BasamError(
                f"plugin op '{op_type}' in the default ONNX domain has the name of a standard ONNX "
                "op, which TensorRT parses with its own importer; give the plugin its own domain or "
                "name"
            )
        plugins.add((domain, op_type))
    return plugins


def _attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            value = helper.get_attribute_value(attribute)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _attribute_problems(node: onnx.NodeProto, specs: Mapping[str, Any]) -> List[str]:
    problems = []
    for name, spec in specs.items():
        condition = spec.get("only_when", {})
        if any(
            _attribute(node, other, specs[other]["default"]) != wanted
            for other, wanted in condition.items()
        ):
            continue
        value = _attribute(node, name, spec["default"])
        if value not in spec["allowed"]:
            allowed = ", ".join(str(v) for v in spec["allowed"])
            problems.append(f"{name}={value!r} (documented: {allowed})")
    return problems


def _einsum_problems(node: onnx.NodeProto, forbids: Iterable[str], lifted_in: str) -> List[str]:
    equation = str(_attribute(node, "equation", "")).replace(" ", "")
    operands = equation.split("->")[0].split(",")
    problems = []
    if "ellipsis" in forbids and "..." in equation:
        problems.append(f"equation '{equation}' has an ellipsis (parsed only from {lifted_in})")
    if "diagonal" in forbids:
        letters = [term.replace("...", "") for term in operands]
        if any(len(set(term)) != len(term) for term in letters):
            problems.append(
                f"equation '{equation}' takes a diagonal (a label repeated in one operand; parsed "
                f"only from {lifted_in})"
            )
    return problems


def _restriction_problems(
    node: onnx.NodeProto, rule: Mapping[str, Any], constants: FrozenSet[str]
) -> List[str]:
    """The restrictions of ``rule`` that ``node`` breaks; only what the graph alone decides."""
    problems = _attribute_problems(node, rule.get("attributes", {}))
    for name in rule.get("forbidden_attributes", ()):
        if _attribute(node, name) is not None:
            problems.append(f"attribute {name} is not parsed")
    for name in rule.get("all_ones_attributes", ()):
        values = _attribute(node, name)
        if values and any(v != 1 for v in values):
            problems.append(f"{name}={list(values)} (only 1s are parsed)")
    if "spatial_ranks" in rule:
        kernel = _attribute(node, "kernel_shape")
        if kernel is not None and len(kernel) not in rule["spatial_ranks"]:
            ranks = " or ".join(f"{r}-D" for r in rule["spatial_ranks"])
            problems.append(f"{len(kernel)}-D window (only {ranks})")
    # The parser compares the node's declared output slots, empty names included, with what its
    # importer produces: a declared but unused Mean output still fails.
    if "max_outputs" in rule and len(node.output) > rule["max_outputs"]:
        problems.append(
            f"declares {len(node.output)} outputs, the parser produces {rule['max_outputs']}"
        )
    for index in rule.get("constant_inputs", ()):
        if index < len(node.input) and node.input[index] and node.input[index] not in constants:
            problems.append(f"input {index} ('{node.input[index]}') must be an initializer")
    if "einsum_forbids" in rule:
        problems += _einsum_problems(node, rule["einsum_forbids"], rule["lifted_in"])
    return problems


class _Walker:
    """Visits a model's nodes, subgraphs (If, Loop, Scan bodies) and called local functions."""

    def __init__(self, model: onnx.ModelProto, plugins: Set[Tuple[str, str]], ops: SupportedOps):
        self.plugins = plugins
        self.ops = ops
        self.functions: Dict[Tuple[str, str], onnx.FunctionProto] = {
            (_domain(f.domain), f.name): f for f in model.functions
        }
        self.called: List[Tuple[str, str]] = []
        self.found: List[UnsupportedNode] = []

    def opsets(self, imports: Iterable[onnx.OperatorSetIdProto], where: str) -> None:
        for opset in imports:
            low, high = self.ops.opset_min, self.ops.opset_max
            if _domain(opset.domain) == "" and not low <= opset.version <= high:
                reason = (
                    f"default-domain opset {opset.version} is outside the documented {low}..{high}"
                )
                self.found.append(UnsupportedNode("opset", "opset_import", "", reason, where))

    def graph(self, graph: onnx.GraphProto, where: str, outer: FrozenSet[str]) -> None:
        constants = set(outer)
        constants.update(t.name for t in graph.initializer)
        constants.update(t.values.name for t in graph.sparse_initializer)
        self.nodes(graph.node, where, constants)

    def nodes(self, nodes: Iterable[onnx.NodeProto], where: str, constants: Set[str]) -> None:
        nodes = list(nodes)
        constants = frozenset(
            constants.union(o for n in nodes if n.op_type == "Constant" for o in n.output)
        )
        for index, node in enumerate(nodes):
            name = node.name or f"#{index}"
            reasons = self.node_problems(node, constants)
            if reasons:
                self.found.append(
                    UnsupportedNode(name, node.op_type, node.domain, "; ".join(reasons), where)
                )
            for attribute in node.attribute:
                inside = f"{node.op_type} '{name}'.{attribute.name}"
                inside = f"{where} > {inside}" if where else inside
                if attribute.type == onnx.AttributeProto.GRAPH:
                    self.graph(attribute.g, inside, constants)
                elif attribute.type == onnx.AttributeProto.GRAPHS:
                    for i, subgraph in enumerate(attribute.graphs):
                        self.graph(subgraph, f"{inside}[{i}]", constants)

    def node_problems(self, node: onnx.NodeProto, constants: FrozenSet[str]) -> List[str]:
        key = (_domain(node.domain), node.op_type)
        if key in self.plugins:
            return (
                fused_op_contract.node_problems(node)
                if fused_op_contract.is_fused_node(node)
                else []
            )
        if key in self.functions:
            if key not in self.called:
                self.called.append(key)
            return []
        if key[0]:
            return [
                f"op in domain '{node.domain}' is no standard ONNX op and no plugin for it is "
                "declared in plugin_ops"
            ]
        op = node.op_type
        if op in self.ops.later_ops:
            return [f"parsed only from TensorRT {self.ops.later_ops[op]}"]
        if op in self.ops.documented_unsupported:
            return ["documented as not supported by TensorRT's ONNX parser"]
        if op not in self.ops.ops:
            return ["not in TensorRT's ONNX operator list"]
        return _restriction_problems(node, self.ops.restrictions.get(op, {}), constants)

    def run(self, model: onnx.ModelProto) -> List[UnsupportedNode]:
        self.opsets(model.opset_import, "")
        self.graph(model.graph, "", frozenset())
        done = 0
        while done < len(self.called):  # functions may call functions
            function = self.functions[self.called[done]]
            where = f"local function {function.domain}::{function.name}"
            self.opsets(function.opset_import, where)
            self.nodes(function.node, where, set())
            done += 1
        return self.found


def unsupported_nodes(
    model: onnx.ModelProto, plugin_ops: Iterable[Tuple[str, str]] = ()
) -> List[UnsupportedNode]:
    """Every node of ``model`` that TensorRT 10.9..11.x's ONNX parser would not parse, in graph order.

    Looks into subgraphs (If, Loop, Scan) and the local functions the graph calls. plugin_ops:
    (domain, op_type) pairs implemented by TensorRT plugins of ours (domain '' or 'ai.onnx' is the
    default domain); those nodes are allowed. A default-domain opset outside the documented range
    is reported as an entry with op_type ``opset_import``. Raises BasamError for a plugin declared
    under a standard ONNX op's name in the default domain.
    """
    return _Walker(model, _plugin_set(plugin_ops), load_supported_ops()).run(model)


def check_tensorrt_ops(model: onnx.ModelProto, plugin_ops: Iterable[Tuple[str, str]] = ()) -> None:
    """Raise BasamError (one line) naming the nodes TensorRT's ONNX parser would refuse, if any."""
    found = unsupported_nodes(model, plugin_ops)
    if not found:
        return
    first, through = load_supported_ops().tensorrt_range
    named = "; ".join(str(problem) for problem in found[:_MAX_NAMED])
    more = f"; and {len(found) - _MAX_NAMED} more" if len(found) > _MAX_NAMED else ""
    raise BasamError(
        f"the graph would not parse in TensorRT {first} to {through}: {named}{more}; fix: change the "
        "model code so that the export emits documented ops (list and sources: "
        f"basam_deploy/export/{OPS_FILE}), or implement the op as a TensorRT plugin and pass its "
        "(domain, op_type) in plugin_ops"
    )
