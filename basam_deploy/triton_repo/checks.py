"""Checks of planned models with Triton's own rules: each ``config.pbtxt`` parsed with Triton's
``ModelConfig`` protobuf schema (tritonclient's ``model_config_pb2``) and compared with the plan, and
the ensemble checked with Triton's tensor-consistency rules (ported from triton-inference-server/core
``ensemble_utils.cc``)."""

from typing import Dict, Sequence, Tuple

from ..errors import BasamError
from .model import ModelPlan, Tensor


def _bug(message: str) -> BasamError:
    return BasamError(f"{message}: a basam-deploy bug, please report it")


def model_config_schema():
    """(text_format, model_config_pb2), or None where tritonclient is not installed."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        return None
    return text_format, model_config_pb2


def parse_model_config(text: str, where: str = "config.pbtxt"):
    """Triton's ``inference.ModelConfig`` message parsed from ``text`` with Triton's own schema
    (tritonclient's ``model_config_pb2``); a one-line BasamError when it does not parse."""
    schema = model_config_schema()
    if schema is None:
        raise BasamError(
            "checking a Triton model configuration needs tritonclient: "
            "pip install 'tritonclient[grpc]'"
        )
    text_format, pb = schema
    try:
        return text_format.Parse(text, pb.ModelConfig())
    except text_format.ParseError as exc:
        raise BasamError(f"{where} is not a valid Triton ModelConfig ({exc})") from None


def check_parsed(config, model: ModelPlan) -> None:
    """The parsed message must say what the plan says (guards the text writer)."""
    _, pb = model_config_schema()

    def io(fields):
        return [(t.name, pb.DataType.Name(t.data_type), tuple(t.dims)) for t in fields]

    def planned(tensors):
        return [(t.name, t.data_type, t.dims(model.batching)) for t in tensors]

    found = {
        "name": config.name,
        "platform": config.platform,
        "max_batch_size": config.max_batch_size,
        "input": io(config.input),
        "output": io(config.output),
        "instance_group": [
            (pb.ModelInstanceGroup.Kind.Name(g.kind), g.count, tuple(g.profile))
            for g in config.instance_group
        ],
        "dynamic_batching": config.HasField("dynamic_batching"),
        "steps": [
            (s.model_name, s.model_version, dict(s.input_map), dict(s.output_map))
            for s in config.ensemble_scheduling.step
        ],
        "parameters": {k: v.string_value for k, v in config.parameters.items()},
    }
    expected = {
        "name": model.name,
        "platform": model.platform,
        "max_batch_size": model.max_batch_size,
        "input": planned(model.inputs),
        "output": planned(model.outputs),
        "instance_group": [(model.instance_kind, model.instances, model.profiles)]
        if model.instance_kind
        else [],
        "dynamic_batching": model.dynamic_batching,
        "steps": [(s.model, -1, dict(s.input_map), dict(s.output_map)) for s in model.steps],
        "parameters": dict(model.parameters),
    }
    wrong = [key for key in expected if found[key] != expected[key]]
    if wrong:
        raise _bug(f"the config of {model.name} does not say what was planned ({', '.join(wrong)})")


def _same_dims(a: Sequence[int], b: Sequence[int]) -> bool:
    return len(a) == len(b) and all(x == y or x == -1 or y == -1 for x, y in zip(a, b))


def check_ensemble(ensemble: ModelPlan, models: Sequence[ModelPlan]) -> None:
    """Triton's ensemble rules (core ``ensemble_utils.cc``): every step's model exists and allows
    the ensemble's batch; each of its inputs is mapped exactly once, to a tensor an earlier step
    or the request provides; mapped tensors agree in type, and in dims either as written or with
    the batch axis of batching models prepended; every ensemble output is produced."""
    by_name = {m.name: m for m in models}
    tensors: Dict[str, Tuple[str, str, Tuple[int, ...], Tuple[int, ...]]] = {}

    def node(owner: ModelPlan, t: Tensor):
        dims = t.dims(owner.batching)
        return owner.name, t.data_type, dims, ((-1,) + dims if owner.batching else dims)

    def agree(name: str, new) -> None:
        old = tensors.setdefault(name, new)
        if old[1] != new[1]:
            raise _bug(
                f"ensemble tensor {name}: type {old[1]} from {old[0]}, {new[1]} from {new[0]}"
            )
        if not (_same_dims(old[2], new[2]) or _same_dims(old[3], new[3])):
            raise _bug(
                f"ensemble tensor {name}: shape {old[3]} from {old[0]}, {new[3]} from {new[0]}"
            )

    for t in ensemble.inputs + ensemble.outputs:
        tensors.setdefault(t.name, node(ensemble, t))
    available = {t.name for t in ensemble.inputs}
    for step in ensemble.steps:
        model = by_name.get(step.model)
        if model is None:
            raise _bug(f"ensemble step {step.model} names no model of the repository")
        if model.max_batch_size and model.max_batch_size < ensemble.max_batch_size:
            raise _bug(f"ensemble batch {ensemble.max_batch_size} exceeds {model.name}'s")
        inputs = {t.name: t for t in model.inputs}
        mapped = [key for key, _ in step.input_map]
        for name in set(mapped) | set(inputs):
            if name not in inputs or mapped.count(name) != 1:
                raise _bug(f"input {name} of {model.name} is not mapped exactly once")
        for key, value in step.input_map:
            if value not in available:
                raise _bug(f"{model.name} reads {value} before anything provides it")
            agree(value, node(model, inputs[key]))
        outputs = {t.name: t for t in model.outputs}
        for key, value in step.output_map:
            if key not in outputs:
                raise _bug(f"{model.name} has no output {key}")
            agree(value, node(model, outputs[key]))
            available.add(value)
    missing = [t.name for t in ensemble.outputs if t.name not in available]
    if missing:
        raise _bug(f"no step produces the ensemble output(s) {', '.join(missing)}")
