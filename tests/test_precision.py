"""The FP16 precision policy (basam_deploy/export/precision.py) on the tiny encoder's ONNX graphs.

Two runtimes, because they measure different things:
- onnxruntime's CPU provider has FP16 kernels only for data movement (Reshape, Transpose, Slice,
  Gather, ...): it runs MatMul, Conv, Einsum, Add, Gelu, ... of an FP16 graph in FP32 between Casts
  it inserts itself. It shows that the FP16 graph is valid and runs at every size (batch 2,
  non-square), and the error of FP16 weights and FP16 storage, not of FP16 arithmetic.
- onnx's ReferenceEvaluator computes every op in its tensors' type (numpy float16; numpy accumulates
  float16 products in float32, as GPU tensor cores do), so it gives the FP16 arithmetic error. It
  is slow (no FP16 BLAS): it runs at one small non-square size per preset, and not for
  basam-official, whose minimum 1024 x 1040 takes about 50 s there (measured once: 6.6e-4).

The graphs are the encoder.onnx files basam-export writes for test_export.py's four presets (seed
21; the run's cached exports), so the policy is tested on what export_onnx applies it to.
Errors are ||y - ref|| / ||ref|| against the PyTorch FP32 encoder (randomized weights), measured on
this project's CPU machine:
- FP32 graph, onnxruntime: 3.8e-7 to 4.7e-7 for every preset and size; bound 1e-5.
- FP16 graph, onnxruntime: 2.8e-4 to 3.6e-4 for every preset and size; bound 1e-3.
- FP16 graph, ReferenceEvaluator at 256 x 320: 5.3e-4 to 5.5e-4; bound 2e-3.
- cosine similarity of the FP16 output: >= 0.99999993 everywhere; bound 0.999.
- neck weights x 1000 (ReferenceEvaluator): the policy's graph 5.7e-4; all-FP16 0.47 (bound 0.1).
- the FP16 file is 0.53 of the FP32 one (bound 0.6).
"""

import re
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import relative_error, tiny_sam
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from test_export import PRESETS as EXPORT_PRESETS

from basam_deploy.errors import BasamError, BasamWarning
from basam_deploy.export.precision import (
    check_precision_policy,
    convert_keeping_fp32,
    fp32_nodes,
    precision_summary,
    to_mixed_fp16,
)
from basam_deploy.runners.onnxruntime_runner import default_threads

# test_export.py's presets (seed 21): the encoder graphs basam-export writes, from the run's cached
# exports (conftest.tiny_export), are the graphs the policy is applied to.
PRESETS = EXPORT_PRESETS
# In the reverse of test_export.py's order: run beside it in the other pytest-xdist worker, each file
# makes the exports the other will want next instead of both waiting on the same one.
KEYS = list(reversed(PRESETS))
# (batch, height, width) for onnxruntime; basam-official is undefined below 1024 px.
ORT_SIZES = [(2, 256, 256), (1, 320, 512), (1, 512, 320)]
OFFICIAL_SIZES = [(1, 1024, 1040)]
REFERENCE_EVALUATOR_SIZE = (1, 256, 320)

FP32_GRAPH_TOLERANCE = 1e-5
ORT_FP16_TOLERANCE = 1e-3
FP16_ARITHMETIC_TOLERANCE = 2e-3
MIN_COSINE = 0.999


@dataclass
class Exported:
    encoder: torch.nn.Module
    fp32: onnx.ModelProto
    fp16: onnx.ModelProto


@pytest.fixture(scope="module")
def exports(tiny_export) -> Dict[str, Exported]:
    """Per preset: the PyTorch encoder, its FP32 encoder.onnx from basam-export (image: B 3 H W,
    batch, height and width dynamic) and that graph under the FP16 policy, made on first use."""

    class Exports(dict):
        def __missing__(self, key: str) -> Exported:
            preset, model_options, min_size = PRESETS[key]
            export = tiny_export(
                preset, 21, model_options=model_options, min_size=min_size, max_size=2048,
                check=False,
            )  # fmt: skip
            fp32 = onnx.load(export.folder / "encoder.onnx")
            encoder = tiny_sam(preset, 21, **model_options).image_encoder.eval()
            self[key] = Exported(encoder, fp32, to_mixed_fp16(fp32))
            return self[key]

    return Exports()


def ort_session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = default_threads()  # this pytest-xdist worker's share
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def cosine(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(
        actual.double().flatten(), expected.double().flatten(), dim=0
    ).item()


def image(size: Tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    return torch.randn(size[0], 3, size[1], size[2], generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("key", KEYS)
def test_policy_holds_and_graph_is_valid(exports, key):
    exported = exports[key]
    fp16 = exported.fp16
    check_precision_policy(fp16)
    onnx.checker.check_model(fp16, full_check=True)
    onnx.shape_inference.infer_shapes(fp16, check_type=True, strict_mode=True, data_prop=True)
    for info in list(fp16.graph.input) + list(fp16.graph.output):
        assert info.type.tensor_type.elem_type == TensorProto.FLOAT, info.name

    # Every norm and Softmax of the export in FP32, every MatMul/Conv/Einsum in FP16.
    summary = precision_summary(fp16)
    exported_ops = [node.op_type for node in exported.fp32.graph.node]
    for op in ("LayerNormalization", "Softmax"):
        assert summary["fp32"][op] == exported_ops.count(op) > 0
        assert op not in summary["fp16"]
    for op in ("MatMul", "Conv"):
        assert summary["fp16"][op] == exported_ops.count(op) > 0
        assert op not in summary["fp32"]
    # The rel-pos Einsums (two per block) read the queries: FP16. Resizing the position embedding
    # (an Einsum of weights and size-derived matrices, where there is one) is shape-derived: FP32.
    assert summary["fp16"]["Einsum"] == 2 * len(exported.encoder.blocks)
    # segment-anything's LayerNorm2d (twice in the neck) is decomposed: its Sqrt stays FP32.
    assert summary["fp32"]["Sqrt"] >= 2 and "Sqrt" not in summary["fp16"]


@pytest.mark.parametrize("key", KEYS)
def test_fp16_graph_matches_pytorch_at_several_sizes(exports, key):
    exported = exports[key]
    fp32_session, fp16_session = ort_session(exported.fp32), ort_session(exported.fp16)
    sizes = OFFICIAL_SIZES if key == "basam-official" else ORT_SIZES
    for size in sizes:
        x = image(size)
        with torch.no_grad():
            reference = exported.encoder(x)
        (fp32,) = fp32_session.run(None, {"image": x.numpy()})
        (fp16,) = fp16_session.run(None, {"image": x.numpy()})
        assert fp16.dtype == np.float32 and fp16.shape == tuple(reference.shape)
        fp32, fp16 = torch.from_numpy(fp32), torch.from_numpy(fp16)
        assert relative_error(fp32, reference) <= FP32_GRAPH_TOLERANCE, size
        assert relative_error(fp16, reference) <= ORT_FP16_TOLERANCE, size
        assert cosine(fp16, reference) >= MIN_COSINE, size


@pytest.mark.parametrize("key", [k for k in KEYS if k != "basam-official"])
def test_fp16_arithmetic_matches_pytorch(exports, key):
    exported = exports[key]
    x = image(REFERENCE_EVALUATOR_SIZE, seed=1)
    with torch.no_grad():
        reference = exported.encoder(x)
    (fp16,) = ReferenceEvaluator(exported.fp16).run(None, {"image": x.numpy()})
    fp16 = torch.from_numpy(fp16)
    assert relative_error(fp16, reference) <= FP16_ARITHMETIC_TOLERANCE
    assert cosine(fp16, reference) >= MIN_COSINE


def test_large_activations_before_a_norm_stay_finite(exports):
    """The neck's first conv weights x 1000: its output (~1e3) squared overflows FP16 inside the
    decomposed LayerNorm2d that follows. The norm cancels the scale, so PyTorch's output is the
    reference as it is. The policy keeps the norm in FP32; an all-FP16 graph is ruined."""
    exported = exports["sam"]
    scaled = onnx.ModelProto()
    scaled.CopyFrom(exported.fp32)
    weight = next(
        init for init in scaled.graph.initializer if init.name == "image_encoder.neck.0.weight"
    )
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1000, weight.name))
    x = image(REFERENCE_EVALUATOR_SIZE, seed=2)
    with torch.no_grad():
        reference = exported.encoder(x)

    def run(model: onnx.ModelProto) -> torch.Tensor:
        with np.errstate(over="ignore", invalid="ignore"):
            return torch.from_numpy(ReferenceEvaluator(model).run(None, {"image": x.numpy()})[0])

    assert relative_error(run(to_mixed_fp16(scaled)), reference) <= FP16_ARITHMETIC_TOLERANCE
    assert relative_error(run(convert_keeping_fp32(scaled, set())), reference) > 0.1


def offenders(message: str) -> List[Tuple[str, str]]:
    return re.findall(r"(\w+) (\S+) is not FP\d+", message)


@pytest.mark.parametrize("left_fp16", ["norms", "softmaxes", "everything"])
def test_check_names_norms_and_softmax_left_in_fp16(exports, left_fp16):
    fp32 = exports["basam-manhattan"].fp32
    keep = fp32_nodes(fp32)
    by_op = {
        "norms": {n.name for n in fp32.graph.node if n.op_type == "LayerNormalization"},
        "softmaxes": {n.name for n in fp32.graph.node if n.op_type == "Softmax"},
    }
    keep = set() if left_fp16 == "everything" else keep - by_op[left_fp16]
    graph = convert_keeping_fp32(fp32, keep)  # valid, but against the policy
    onnx.checker.check_model(graph, full_check=True)
    with pytest.raises(BasamError) as error:
        check_precision_policy(graph)
    message = str(error.value)
    assert "\n" not in message and "to_mixed_fp16" in message
    named = offenders(message)
    if left_fp16 == "everything":
        assert {op for op, _ in named} == {"LayerNormalization", "Softmax"}
        assert "more" in message  # 8 norms + 4 softmaxes: the first 8 are named
    else:
        assert {name for _, name in named} == by_op[left_fp16]


def test_weights_of_matmul_and_conv_are_fp16_and_file_is_about_half(exports):
    exported = exports["basam-manhattan"]
    initializers = {init.name: init for init in exported.fp16.graph.initializer}
    weights = [
        initializers[name]
        for node in exported.fp16.graph.node
        if node.op_type in ("MatMul", "Gemm", "Conv")
        for name in node.input
        if name in initializers
    ]
    assert len(weights) >= 19  # 4 blocks x 4 linear layers, 3 convs (and conv biases)
    assert all(init.data_type == TensorProto.FLOAT16 for init in weights)
    # Measured 0.53: the FP32 leftovers are LayerNorm weights, global rel-pos tables, the position
    # embedding, and the exporter's metadata.
    ratio = exported.fp16.ByteSize() / exported.fp32.ByteSize()
    assert ratio < 0.6


def tiny_matmul_graph(elem_type: int, w_scale: float = 1.0) -> onnx.ModelProto:
    """x: 2 x 16 -> x @ w: 2 x 8, all tensors of ``elem_type``."""
    w = np.random.default_rng(0).standard_normal((16, 8)) * w_scale
    dtype = np.float16 if elem_type == TensorProto.FLOAT16 else np.float32
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="proj")],
        "tiny",
        [helper.make_tensor_value_info("x", elem_type, [2, 16])],
        [helper.make_tensor_value_info("y", elem_type, [2, 8])],
        [numpy_helper.from_array(w.astype(dtype), "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def test_check_names_matmul_left_fp32_and_fp16_io():
    with pytest.raises(BasamError, match=r"MatMul proj is not FP16"):
        check_precision_policy(tiny_matmul_graph(TensorProto.FLOAT))
    with pytest.raises(BasamError, match=r"graph input/output x is FP16.*output y is FP16"):
        check_precision_policy(tiny_matmul_graph(TensorProto.FLOAT16))
    converted = to_mixed_fp16(tiny_matmul_graph(TensorProto.FLOAT))
    check_precision_policy(converted)
    assert precision_summary(converted)["fp16"] == {"MatMul": 1}


def test_refuses_a_graph_already_in_fp16(exports):
    with pytest.raises(BasamError, match="already holds FP16"):
        to_mixed_fp16(exports["basam-manhattan"].fp16)


def test_weights_beyond_fp16_are_clamped_with_a_warning():
    with pytest.warns(BasamWarning, match="weight w exceeds the FP16 range"):
        converted = to_mixed_fp16(tiny_matmul_graph(TensorProto.FLOAT, w_scale=1e5))
    weight = numpy_helper.to_array(converted.graph.initializer[0])
    assert weight.dtype == np.float16 and np.isfinite(weight).all()
    assert np.abs(weight).max() == 65504
