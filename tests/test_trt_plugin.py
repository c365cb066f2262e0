"""The TensorRT plugin's launch decisions (kernels/launch.py) and its declared interface.

Everything but the last test runs without TensorRT and without Triton: launch.py is plain Python,
and the plugin module's signatures are read from its source (``ast``), since importing it needs
TensorRT. The contract they are checked against is docs/fused_attention.md.
"""

import ast
import inspect
import re
from dataclasses import fields
from pathlib import Path

import onnx
import pytest

from basam_deploy.configs import BIAS_METRICS, AttentionSpec
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
    assert launch.BIAS_METRICS == BIAS_METRICS
    assert set(launch.SCALE_MODES) == {"sam", "log_n", "official"}


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
    source = PLUGIN_SOURCE.read_text()
    assert 'PLUGIN_NAMESPACE = "basam"' in source and 'PLUGIN_NAME = "BasamAttention"' in source


def test_onnx_node_attributes_match():
    """The node TensorRT's parser hands to the plugin: op type, namespace, version, attributes."""
    values = {"scale_mode": "log_n", "n0": 4096, "patch_size": 16, "bias_slope": 0.015625}
    values["bias_metric"] = "manhattan"
    node = onnx.helper.make_node(
        "BasamAttention",
        list(launch.INPUTS),
        list(launch.OUTPUTS),
        domain=plan.PLUGIN_DOMAIN,
        plugin_namespace="basam",
        plugin_version="1",
        **values,
    )
    types = {a.name: a.type for a in node.attribute}
    for name, kind in launch.ATTRIBUTES:
        assert types[name] == ONNX_TYPES[kind]
    assert plan.PLUGIN_MODULE == "basam_deploy.tensorrt.plugin"
    assert [n.op_type for n in plan.plugin_nodes(onnx.helper.make_model(_graph(node)))] == [
        "BasamAttention"
    ]


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


def test_registered_with_tensorrt():
    from basam_deploy.tensorrt.trt_import import tensorrt_available

    if not tensorrt_available():
        pytest.skip("TensorRT >= 10.9 is not installed (NVIDIA's index only); see docs/tensorrt.md")
    from basam_deploy.tensorrt import plugin

    registry = plugin.trtp._lib.QDP_REGISTRY[plugin.PLUGIN_ID]
    assert registry.input_tensor_names == list(launch.INPUTS)
    assert list(registry.input_attrs) == ATTRIBUTE_NAMES
    assert registry.aot_impl_func is not None and registry.num_outputs == 1
