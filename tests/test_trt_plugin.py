"""The TensorRT plugin's launch decisions (kernels/launch.py) and its declared interface.

Everything but the last test runs without TensorRT and without Triton: launch.py is plain Python,
and the plugin module's signatures are read from its source (``ast``), since importing it needs
TensorRT. The contract they are checked against is docs/fused_attention.md.

The attribute tests feed ``launch.decode_attributes`` what TensorRT hands the plugin, rebuilt here
from NVIDIA's sources because TensorRT cannot run on these machines (``parser_fields`` and
``qdp_arguments`` below say which source each step follows).
"""

import ast
import inspect
import re
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any, Dict

import numpy as np
import onnx
import pytest

from basam_deploy import fused_op_contract
from basam_deploy.configs import BIAS_METRICS, SCALE_MODES, AttentionSpec
from basam_deploy.errors import BasamError
from basam_deploy.kernels import launch
from basam_deploy.tensorrt import plan

REPO = Path(__file__).resolve().parents[1]
PLUGIN_SOURCE = REPO / "basam_deploy" / "tensorrt" / "plugin.py"
KERNEL_SOURCE = REPO / "basam_deploy" / "kernels" / "attention.py"
CONTRACT = REPO / "docs" / "fused_attention.md"
ATTRIBUTE_NAMES = [name for name, _ in launch.ATTRIBUTES]
CONTRACT_TYPES = {"string": str, "int": int, "float": float}
ONNX_TYPES = {str: onnx.AttributeProto.STRING, int: onnx.AttributeProto.INT}
ONNX_TYPES[float] = onnx.AttributeProto.FLOAT


def contract_attributes():
    """(name, python type) of each row of the contract's attribute table, in order."""
    rows = re.findall(r"^\| `(\w+)` \| (string|int|float) \|", CONTRACT.read_text(), re.M)
    return [(name, CONTRACT_TYPES[kind]) for name, kind in rows]


def plugin_functions():
    """{decorator name: (parameter names, annotation sources)} of plugin.py's trtp functions."""
    found = {}
    for node in ast.parse(PLUGIN_SOURCE.read_text()).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call) and ast.unparse(decorator.func).startswith("trtp."):
                args = node.args.args
                found[ast.unparse(decorator.func)] = (
                    [a.arg for a in args],
                    [ast.unparse(a.annotation) for a in args],
                    [ast.unparse(x) for x in decorator.args],
                )
    return found


def test_attributes_follow_the_contract():
    assert list(launch.ATTRIBUTES) == contract_attributes()
    # configs.AttentionSpec's fields, with 'scale' named scale_mode on the op.
    spec_fields = [f.name for f in fields(AttentionSpec)]
    for name in ATTRIBUTE_NAMES:
        assert (name if name != "scale_mode" else "scale") in spec_fields


def test_plugin_signatures_follow_launch_py():
    functions = plugin_functions()
    assert set(functions) == {"trtp.register", "trtp.autotune", "trtp.aot_impl"}
    names, annotations, ids = functions["trtp.register"]
    assert ids == ["PLUGIN_ID"]
    assert names == list(launch.INPUTS) + ATTRIBUTE_NAMES
    assert annotations[:5] == ["trtp.TensorDesc"] * 5
    assert annotations[5:] == [kind.__name__ for _, kind in launch.ATTRIBUTES]
    # TensorRT passes the attributes positionally, in registration order, then outputs, tactic.
    names, annotations, _ = functions["trtp.aot_impl"]
    assert names == list(launch.INPUTS) + ATTRIBUTE_NAMES + ["outputs", "tactic"]
    assert annotations[5:10] == [kind.__name__ for _, kind in launch.ATTRIBUTES]
    names, _, _ = functions["trtp.autotune"]
    assert names == list(launch.INPUTS) + ["outputs"]


def test_onnx_node_attributes_match():
    """The node TensorRT's parser hands to the plugin: op type, namespace, version, attributes."""
    values = {"scale_mode": "log_n", "n0": 4096, "patch_size": 16, "bias_slope": 0.015625}
    values["bias_metric"] = "manhattan"
    node = contract_node(**values)
    types = {a.name: a.type for a in node.attribute}
    for name, kind in launch.ATTRIBUTES:
        assert types[name] == ONNX_TYPES[kind]
    assert plan.PLUGIN_MODULE == "basam_deploy.tensorrt.plugin"
    assert [
        n.op_type for n in fused_op_contract.plugin_nodes(onnx.helper.make_model(_graph(node)))
    ] == ["BasamAttention"]


def _graph(node):
    inputs = [
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in node.input
    ]
    output = onnx.helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, None)
    return onnx.helper.make_graph([node], "g", inputs, [output])


def test_kernel_arguments_are_launch_py_order():
    """The kernel's parameters: input pointers, int32 scalars, output pointer, constexprs."""
    for node in ast.parse(KERNEL_SOURCE.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name == launch.KERNEL_NAME:
            params = [a.arg for a in node.args.args]
            break
    else:
        pytest.fail(f"no {launch.KERNEL_NAME} in {KERNEL_SOURCE}")
    assert params == [*launch.INPUTS, *launch.SCALARS, *launch.OUTPUTS, *launch.CONSTEXPRS]
    assert list(launch.signature("float16")) == params
    types = list(launch.signature("bfloat16").values())
    assert types == ["*bf16"] * 5 + ["i32"] * 3 + ["*bf16"] + ["constexpr"] * 9


@pytest.mark.parametrize(
    "head_dim, padded", [(1, 16), (16, 16), (17, 32), (32, 32), (64, 64), (80, 128), (128, 128)]
)
def test_padded_head_dim(head_dim, padded):
    assert launch.padded_head_dim(head_dim) == padded


@pytest.mark.parametrize("head_dim", [0, 129, 256])
def test_unsupported_head_dim(head_dim):
    with pytest.raises(BasamError, match="head dims 1 to 128"):
        launch.padded_head_dim(head_dim)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("head_dim", [16, 32, 64, 80, 128])
def test_tile_config(dtype, head_dim):
    tile = launch.tile_config(dtype, head_dim)
    for block in (tile.block_m, tile.block_n):
        assert block >= 16 and block & (block - 1) == 0  # tl.dot: powers of two, >= 16
    assert tile.threads == 32 * tile.num_warps
    assert tile.num_stages >= 1
    if dtype == "bfloat16":  # a 16-bit type like float16
        assert tile == launch.tile_config("float16", head_dim)


def test_tile_config_rejects_other_dtypes():
    with pytest.raises(BasamError, match="float32, float16 or bfloat16"):
        launch.tile_config("float64", 64)


@pytest.mark.parametrize("grid_hw", [(1, 1), (3, 5), (64, 64), (128, 97), (256, 256)])
def test_grid_covers_every_query_once(grid_hw):
    height, width = grid_hw
    tile = launch.tile_config("float16", 64)
    blocks, batch_heads, z = launch.grid((2, 12, height, width, 64), tile)
    assert (batch_heads, z) == (24, 1)
    assert (blocks - 1) * tile.block_m < height * width <= blocks * tile.block_m


class Expr:
    """A stand-in for TensorRT's shape expressions: records the arithmetic applied to it."""

    def __init__(self, text):
        self.text = text

    def __mul__(self, other):
        return Expr(f"({self.text} * {getattr(other, 'text', other)})")


def test_grid_and_scalars_are_shape_expressions():
    """The plugin evaluates the same formulas on symbolic dims, with TensorRT's cdiv."""
    shape = [Expr(n) for n in ("B", "nh", "H", "W", "d")]
    tile = launch.tile_config("float16", 64)
    grid = launch.grid(shape, tile, lambda a, b: Expr(f"cdiv({a.text}, {b})"))
    assert [getattr(g, "text", g) for g in grid] == [
        f"cdiv((H * W), {tile.block_m})",
        "(B * nh)",
        1,
    ]
    assert [s.text for s in launch.scalar_args(shape)] == ["nh", "H", "W"]
    assert list(launch.SCALARS) == ["heads", "height", "width"]


def test_autotune_types():
    combination = launch.autotune_types(6)
    assert combination == ", ".join(["FP32|FP16"] * 6)
    # '|' ties every position to the same choice: all FP32, or all FP16.
    assert {len(part.split("|")) for part in combination.split(", ")} == {2}


def test_constexprs_fix_what_a_mode_does_not_read():
    tile = launch.tile_config("float16", 64)
    base = dict(n0=4096, patch_size=16, bias_slope=0.0, bias_metric="euclidean")
    sam = launch.constexprs(64, tile, scale_mode="sam", **base)
    assert (sam["N0"], sam["PATCH_SIZE"], sam["BIAS_METRIC"]) == (0, 0, "manhattan")
    log_n = launch.constexprs(64, tile, scale_mode="log_n", **{**base, "bias_slope": 0.5})
    assert (log_n["N0"], log_n["PATCH_SIZE"], log_n["BIAS_METRIC"]) == (4096, 0, "euclidean")
    official = launch.constexprs(64, tile, scale_mode="official", **base)
    assert (official["N0"], official["PATCH_SIZE"]) == (0, 16)
    assert set(sam) == set(launch.CONSTEXPRS)
    assert (sam["HEAD_DIM"], sam["HEAD_DIM_PAD"], sam["BLOCK_M"]) == (64, 64, tile.block_m)


@pytest.mark.parametrize(
    "attrs, message",
    [
        (("alibi", 4096, 16, 0.0, "manhattan"), "scale_mode"),
        (("log_n", 1, 16, 0.0, "manhattan"), "n0 >= 2"),
        (("official", 4096, 0, 0.0, "manhattan"), "patch_size >= 1"),
        (("sam", 4096, 16, float("nan"), "manhattan"), "finite"),
        (("sam", 4096, 16, 0.1, "chebyshev"), "bias_metric"),
    ],
)
def test_check_attributes(attrs, message):
    with pytest.raises(BasamError, match=message):
        launch.check_attributes(*attrs)


def test_check_grid_for_the_official_scale():
    launch.check_grid("official", 16, 64, 128)  # 1024 x 2048 px
    launch.check_grid("log_n", 16, 8, 8)
    with pytest.raises(BasamError, match="at least 1024 px"):
        launch.check_grid("official", 16, 63, 128)


def test_launch_py_needs_no_triton():
    imports = [
        node
        for node in ast.walk(ast.parse(inspect.getsource(launch)))
        if isinstance(node, (ast.Import, ast.ImportFrom))
    ]
    assert not any("triton" in ast.unparse(node) for node in imports)


def contract_node(**values):
    """A BasamAttention node as basam-export writes it, with the contract's attribute values."""
    return onnx.helper.make_node(
        "BasamAttention",
        list(launch.INPUTS),
        list(launch.OUTPUTS),
        domain=fused_op_contract.DOMAIN,
        plugin_namespace="basam",
        plugin_version="1",
        **values,
    )


def parser_fields(node) -> Dict[str, np.ndarray]:
    """The ``PluginField.data`` TensorRT's ONNX parser gives the creator for each contract
    attribute of ``node``: onnx-tensorrt onnxOpImporters.cpp ``loadFields`` / ``copyField`` (STRING:
    the bytes plus an appended '\\0', kCHAR, length counting it; INT: ``attrs.get<int32_t>``, one
    kINT32; FLOAT: one kFLOAT32), returned by the binding as numpy arrays of the field's type
    (python/src/infer/pyPlugin.cpp, ``PluginField.data``: kCHAR is read as ``char``, int8)."""
    data = {}
    names = [name for name, _ in launch.ATTRIBUTES]
    for attribute in node.attribute:
        if attribute.name not in names:
            continue  # plugin_namespace / plugin_version select the creator, they are no fields
        if attribute.type == onnx.AttributeProto.STRING:
            data[attribute.name] = np.frombuffer(attribute.s + b"\x00", dtype=np.int8)
        elif attribute.type == onnx.AttributeProto.INT:
            data[attribute.name] = np.array([attribute.i], dtype=np.int32)
        else:
            assert attribute.type == onnx.AttributeProto.FLOAT
            data[attribute.name] = np.array([attribute.f], dtype=np.float32)
    return data


def qdp_arguments(data: Dict[str, np.ndarray], release: str) -> Dict[str, Any]:
    """What ``tensorrt.plugin``'s creator passes the plugin's functions for those fields, by the
    annotations of plugin.py (str, int, float): tensorrt/plugin/_lib.py ``create_plugin``
    (tensorrt_bindings/plugin/_lib.py in the wheels): a ``str`` field is
    ``f.data.tobytes().decode("utf-8")`` (10.9 to 11.4); any other scalar ``annotation(f.data)``
    (10.9.0 to 10.16.1 and the v11.0 / v11.1 tags) or ``annotation(f.data[0])`` (11.4.0 wheel)."""
    arguments = {}
    for name, kind in launch.ATTRIBUTES:
        field = data[name]
        if kind is str:
            arguments[name] = field.tobytes().decode("utf-8")
        elif release == "11.4":
            arguments[name] = kind(field[0])
        else:
            with warnings.catch_warnings():  # NumPy >= 1.25 deprecates int(array): TensorRT's call
                warnings.simplefilter("ignore", DeprecationWarning)
                arguments[name] = kind(field)
    return arguments


@pytest.mark.parametrize("release", ["10.9-11.1", "11.4"])
@pytest.mark.parametrize("bias_metric", BIAS_METRICS)
@pytest.mark.parametrize("scale_mode", SCALE_MODES)
def test_attributes_as_the_parser_delivers_them(scale_mode, bias_metric, release):
    """Every scale mode and metric, through TensorRT's byte forms, means what the node says."""
    values = dict(
        scale_mode=scale_mode, n0=4096, patch_size=16, bias_slope=0.1, bias_metric=bias_metric
    )
    received = qdp_arguments(parser_fields(contract_node(**values)), release)
    # The defect: TensorRT hands the plugin C strings.
    assert received["scale_mode"] == scale_mode + "\x00"
    assert received["bias_metric"] == bias_metric + "\x00"
    decoded = launch.decode_attributes(**received)
    # bias_slope is the node's float32, as ONNX stores a FLOAT attribute.
    assert decoded == dict(values, bias_slope=float(np.float32(0.1)))
    assert [type(decoded[name]) for name, _ in launch.ATTRIBUTES] == [str, int, int, float, str]
    constants = launch.constexprs(64, launch.tile_config("float16", 64), **decoded)
    assert (constants["SCALE_MODE"], constants["BIAS_METRIC"]) == (scale_mode, bias_metric)


def test_log_n_with_its_terminator_stays_log_n():
    """'log_n\\x00' must neither fail the build (the defect) nor fall back to SAM's scale."""
    values = dict(scale_mode="log_n", n0=4096, patch_size=16, bias_slope=0.0)
    received = qdp_arguments(
        parser_fields(contract_node(**values, bias_metric="manhattan")), "10.9-11.1"
    )
    assert received["scale_mode"] == "log_n\x00"
    with pytest.raises(BasamError, match="scale_mode"):  # what the build met before decoding
        launch.check_attributes(**received)
    decoded = launch.decode_attributes(**received)
    assert decoded["scale_mode"] == "log_n" and decoded["n0"] == 4096
    constants = launch.constexprs(64, launch.tile_config("float16", 64), **decoded)
    # n0 is compiled in only for log_n (sam zeroes it): the kernel gets log_n's scale.
    assert (constants["SCALE_MODE"], constants["N0"]) == ("log_n", 4096)
    # The kernel, compiled with the terminator left in, would stop (tl.static_assert); launch.py
    # refuses it first.
    with pytest.raises(BasamError, match="scale_mode"):
        launch.constexprs(64, launch.tile_config("float16", 64), **received)


SAM = dict(scale_mode="sam", n0=4096, patch_size=16, bias_slope=0.5, bias_metric="euclidean")


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("scale_mode", b"official\x00", "official"),
        ("scale_mode", np.frombuffer(b"log_n\x00", dtype=np.int8), "log_n"),
        ("scale_mode", "sam\x00\x00", "sam"),
        ("bias_metric", "manhattan", "manhattan"),  # the Python API's form: no terminator
        ("n0", np.int32(1024), 1024),
        ("n0", np.array([1024], dtype=np.int64), 1024),
        ("n0", 1024.0, 1024),
        ("bias_slope", np.float32(0.25), 0.25),
        ("bias_slope", np.array([0.25], dtype=np.float32), 0.25),
        ("bias_slope", 2, 2.0),
    ],
)
def test_decode_accepts_every_form_of_a_value(name, value, expected):
    decoded = launch.decode_attributes(**dict(SAM, **{name: value}))
    assert decoded[name] == expected and type(decoded[name]) is type(expected)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("scale_mode", "lo\x00g_n", "NUL inside"),
        ("scale_mode", "alibi\x00", "scale_mode 'alibi' is not one of"),
        ("scale_mode", b"\xff\x00", "not UTF-8"),
        ("bias_metric", 3, "must be a string"),
        ("bias_metric", "chebyshev\x00", "bias_metric 'chebyshev'"),
        ("n0", True, "must be an integer"),
        ("n0", 4096.5, "must be an integer"),
        ("n0", np.array([4096, 1], dtype=np.int32), "one number, got 2 values"),
        ("patch_size", "16", "must be an integer"),
        ("bias_slope", "0.1", "must be a number"),
        ("bias_slope", float("inf"), "finite"),
    ],
)
def test_decode_refuses_in_one_line(name, value, message):
    with pytest.raises(BasamError, match=re.escape(message)) as error:
        launch.decode_attributes(**dict(SAM, **{name: value}))
    assert "\n" not in str(error.value)


def test_decode_wants_exactly_the_contract_attributes():
    with pytest.raises(BasamError, match="takes the attributes"):
        launch.decode_attributes(**{k: v for k, v in SAM.items() if k != "n0"})
    with pytest.raises(BasamError, match="takes the attributes"):
        launch.decode_attributes(**SAM, plugin_version="1")


def _plugin_function(name):
    for node in ast.parse(PLUGIN_SOURCE.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    pytest.fail(f"no {name} in {PLUGIN_SOURCE}")


@pytest.mark.parametrize("function", ["basam_attention_desc", "basam_attention_aot"])
def test_plugin_reads_attributes_only_through_decode(function):
    """Both functions TensorRT hands attributes to pass every one, untouched, to
    ``launch.decode_attributes`` and use nothing else of them (the plugin needs TensorRT to import,
    so its source is read)."""
    node = _plugin_function(function)
    calls = [
        call
        for call in ast.walk(node)
        if isinstance(call, ast.Call) and ast.unparse(call.func) == "launch.decode_attributes"
    ]
    assert len(calls) == 1
    passed = {k.arg: ast.unparse(k.value) for k in calls[0].keywords}
    assert passed == {name: name for name in ATTRIBUTE_NAMES}
    inside = {id(n) for n in ast.walk(calls[0])}
    raw_uses = [
        n.id
        for n in ast.walk(node)
        if isinstance(n, ast.Name) and n.id in ATTRIBUTE_NAMES and id(n) not in inside
    ]
    assert raw_uses == []


def test_plugin_compiles_for_the_builders_ptx_version():
    """aot_impl passes the module's PTX setting (set_ptx_version) to compile_attention and records
    what it compiled for the manifest."""
    source = ast.unparse(_plugin_function("basam_attention_aot"))
    assert "compile_attention(" in source and "ptx_version=_ptx_version" in source
    assert "_compiled.append(compiled)" in source
    names = [n.name for n in ast.parse(PLUGIN_SOURCE.read_text()).body if hasattr(n, "name")]
    assert {"set_ptx_version", "compiled_kernels"} <= set(names)


def test_registered_with_tensorrt():
    from basam_deploy.tensorrt.trt_import import tensorrt_available

    if not tensorrt_available():
        pytest.skip("TensorRT >= 10.9 is not installed (NVIDIA's index only); see docs/tensorrt.md")
    from basam_deploy.tensorrt import plugin

    registry = plugin.trtp._lib.QDP_REGISTRY[plugin.PLUGIN_ID]
    assert registry.input_tensor_names == list(launch.INPUTS)
    assert list(registry.input_attrs) == ATTRIBUTE_NAMES
    assert registry.aot_impl_func is not None and registry.num_outputs == 1
    plugin.set_ptx_version("7.8")
    plugin.set_ptx_version(None)
    with pytest.raises(BasamError, match="not in the driver table"):
        plugin.set_ptx_version("6.9")
