"""A Triton Inference Server model repository from basam-trt engines or a basam-export folder.

``plan_triton_repo(SOURCE, TritonRepoOptions(...))`` reads an engine folder (``encoder.engine`` +
``decoder.engine`` with their ``ENGINE.json`` manifests, written by ``basam-trt build``) or an export
folder (``encoder.onnx`` + ``decoder.onnx`` + ``manifest.json``, written by ``basam-export``) and
decides every model configuration; ``write_triton_repo(plan, REPO)`` writes, atomically::

    REPO/basam_image_encoder/config.pbtxt + 1/model.plan    (or 1/model.onnx; a folder with external data)
    REPO/basam_mask_decoder/config.pbtxt + 1/model.plan
    REPO/basam_sam/config.pbtxt + 1/                  ensemble: encoder -> decoder
    REPO/README.md, REPO/manifest.json                what made it, checksums, versions

Decisions (the docstrings of the functions below say why):
- the encoder's batch axis is Triton's implicit batch dimension (``max_batch_size`` > 0, dynamic
  batching): every encoder input and output starts with the same dynamic ``batch`` axis;
- the decoder is ``max_batch_size: 0`` with explicit dims: ``image_embeddings`` has batch 1 while
  the prompt axis of the other inputs varies, so no axis is a per-request batch shared by all;
- the ensemble is ``max_batch_size: 0`` (one image per request, as the decoder), its ``image``
  ``[1, 3, -1, -1]``; Triton converts between the batching encoder and the non-batching decoder;
- a TensorRT plan lists every optimization profile in its instance group (Triton uses only
  profile 0 otherwise) and records the profile shapes in comments and ``parameters``.

Every config is parsed with Triton's own ``ModelConfig`` protobuf schema (tritonclient's
``model_config_pb2``) and compared with the plan before the repository is renamed into place, and the
ensemble is checked with Triton's tensor-consistency rules (ported from triton-inference-server/core
``ensemble_utils.cc``).
"""

import shutil
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import onnx

from .. import __version__
from ..artifacts import (
    MANIFEST,
    check_output_folder,
    package_versions,
    read_manifest,
    sha256,
    staged_folder,
    write_json,
)
from ..errors import BasamError, BasamWarning
from ..export.graphs import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUTS, ENCODER_OUTPUTS
from .manifest import manifest_profiles, read_engine_manifest
from .plan import PLUGIN_MODULE, plugin_nodes, read_export
from .profiles import DECODER, ENCODER, describe_profiles

TOOL = "basam-trt triton-repo"
ENCODER_MODEL, DECODER_MODEL, ENSEMBLE_MODEL = (
    "basam_image_encoder",
    "basam_mask_decoder",
    "basam_sam",
)
TENSORRT, ONNX = "tensorrt", "onnx"
BACKENDS = ("auto", TENSORRT, ONNX)
KINDS = ("gpu", "cpu")
PLATFORMS = {TENSORRT: "tensorrt_plan", ONNX: "onnxruntime_onnx"}
MODEL_FILES = {TENSORRT: "model.plan", ONNX: "model.onnx"}
ENGINE_SUFFIXES = (".engine", ".plan")
EXPORT_FILES = {ENCODER: "encoder.onnx", DECODER: "decoder.onnx"}
# ONNX Runtime accepts any batch the export allows (1024): 4 is a modest default, as activation
# memory grows with batch x resolution; --max-batch changes it. Engines default to what every one of
# their profiles accepts.
DEFAULT_ONNX_MAX_BATCH = 4
# numpy dtype names (as the manifests and onnx.helper write them) -> Triton's model-config types.
TRITON_TYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "bfloat16": "TYPE_BF16",
}

# basam's own plugin registers only an ahead-of-time implementation (tensorrt/plugin.py): TensorRT
# has no JIT one to fall back to, so its engines always embed the kernel.
AOT_ONLY_MODULES = frozenset({PLUGIN_MODULE})

Dim = Union[int, str]


@dataclass(frozen=True)
class TritonRepoOptions:
    """backend: auto (engines when the folder has them, else ONNX), tensorrt or onnx.
    kind: gpu, or cpu (ONNX only: TensorRT plans run on GPUs).
    max_batch: the encoder's max_batch_size; None = every engine profile's batch (ONNX: 4);
    0 turns Triton's batching off for the encoder."""

    backend: str = "auto"
    instances: int = 1
    max_batch: Optional[int] = None
    kind: str = "gpu"


@dataclass(frozen=True)
class Tensor:
    """One model input or output: Triton type and the graph's own shape (names for dynamic axes)."""

    name: str
    data_type: str
    shape: Tuple[Dim, ...]

    def dims(self, batching: bool) -> Tuple[int, ...]:
        """Triton ``dims``: without the leading batch axis when the model batches; -1 = dynamic."""
        shape = self.shape[1:] if batching else self.shape
        return tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape)


@dataclass(frozen=True)
class GraphSource:
    """The encoder or decoder as found in the source folder."""

    graph: str
    file: Path
    sha256: str
    inputs: Tuple[Tensor, ...]
    outputs: Tuple[Tensor, ...]
    extra_files: Tuple[Path, ...] = ()  # ONNX external data, copied beside the model
    profiles: Tuple[Mapping, ...] = ()  # engines: per profile, input name -> ShapeRange
    manifest: Mapping = field(default_factory=dict)  # the engine manifest, or the export's entry


@dataclass(frozen=True)
class Step:
    model: str
    input_map: Tuple[Tuple[str, str], ...]  # model input -> ensemble tensor
    output_map: Tuple[Tuple[str, str], ...]  # model output -> ensemble tensor


@dataclass(frozen=True)
class ModelPlan:
    """One model of the repository: what its ``config.pbtxt`` says and which files go beside it."""

    name: str
    platform: str
    max_batch_size: int
    inputs: Tuple[Tensor, ...]
    outputs: Tuple[Tensor, ...]
    instance_kind: Optional[str] = None  # KIND_GPU | KIND_CPU; None for the ensemble
    instances: int = 1
    profiles: Tuple[str, ...] = ()  # TensorRT optimization profile indices, as Triton names them
    dynamic_batching: bool = False
    parameters: Tuple[Tuple[str, str], ...] = ()
    comments: Tuple[str, ...] = ()
    files: Tuple[Tuple[Path, str], ...] = ()  # (source file, path under the version folder)
    steps: Tuple[Step, ...] = ()

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 0

    def config_text(self) -> str:
        return model_config_text(self)


@dataclass(frozen=True)
class RepoPlan:
    source: Path
    backend: str  # tensorrt | onnx
    models: Tuple[ModelPlan, ...]  # encoder, decoder, ensemble
    graphs: Tuple[GraphSource, ...]  # encoder, decoder
    options: TritonRepoOptions = TritonRepoOptions()
    provenance: Mapping = field(default_factory=dict)
    notes: Tuple[str, ...] = ()

    def describe(self) -> str:
        """The plan as ``basam-trt triton-repo --dry-run`` prints it."""
        lines = ["basam-trt triton-repo plan", f"  source     {self.source} ({self._what()})"]
        for index, model in enumerate(self.models):
            label = "  models     " if index == 0 else "             "
            if model.steps:
                chain = " -> ".join(step.model for step in model.steps)
                lines.append(f"{label}{model.name:<20} ensemble        {chain}")
                continue
            batching = f"max_batch_size {model.max_batch_size}" + (
                ", dynamic batching" if model.dynamic_batching else ""
            )
            profiles = f", profiles {','.join(model.profiles)}" if model.profiles else ""
            lines.append(
                f"{label}{model.name:<20} {model.platform:<15} {batching}; "
                f"{model.instance_kind} x{model.instances}{profiles}"
            )
        lines += [f"  note       {note}" for note in self.notes]
        return "\n".join(lines)

    def _what(self) -> str:
        files = ", ".join(g.file.name for g in self.graphs)
        if self.backend == TENSORRT:
            trt = self.provenance.get("tensorrt")
            return f"TensorRT engines {files}; built with TensorRT {trt}"
        return f"ONNX export {files}"


# Reading the source folder ----------------------------------------------------------------------


def _triton_type(dtype: str, where: str) -> str:
    if dtype not in TRITON_TYPES:
        raise BasamError(f"{where} has type {dtype!r}, which Triton has no type for: export again")
    return TRITON_TYPES[dtype]


def _io_from_manifest(io: Mapping, kind: str, where: str) -> Tuple[Tensor, ...]:
    tensors = []
    for name, entry in (io.get(kind) or {}).items():
        shape = tuple(d if isinstance(d, str) else int(d) for d in entry["shape"])
        tensors.append(Tensor(name, _triton_type(str(entry["dtype"]), f"{where} {name}"), shape))
    return tuple(tensors)


def _io_from_onnx(values, skip, where: str) -> Tuple[Tensor, ...]:
    tensors = []
    for value in values:
        if value.name in skip:
            continue
        t = value.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "?"
        shape = tuple(d.dim_param or (d.dim_value if d.dim_value > 0 else "?") for d in t.shape.dim)
        tensors.append(Tensor(value.name, _triton_type(dtype, f"{where} {value.name}"), shape))
    return tuple(tensors)


def _check_names(source: GraphSource) -> None:
    """The graphs must be basam-export's: the ensemble wires them by these names."""
    expected = {
        ENCODER: (ENCODER_INPUTS, ENCODER_OUTPUTS),
        DECODER: (DECODER_INPUTS, DECODER_OUTPUTS),
    }[source.graph]
    found = (tuple(t.name for t in source.inputs), tuple(t.name for t in source.outputs))
    if tuple(map(set, found)) != tuple(map(set, expected)):
        raise BasamError(
            f"{source.file.name} has inputs {list(found[0])} and outputs {list(found[1])}, not "
            f"basam-export's {source.graph} ({list(expected[0])} -> {list(expected[1])}): export "
            f"again with basam-export (and build the engines again from that export)"
        )


def _engine_files(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in ENGINE_SUFFIXES)


def _read_engines(folder: Path) -> Tuple[Tuple[GraphSource, ...], Dict[str, object], List[str]]:
    found: Dict[str, List[Tuple[Path, Mapping]]] = {ENCODER: [], DECODER: []}
    for engine in _engine_files(folder):
        manifest = read_engine_manifest(engine)
        graph = (manifest.get("source") or {}).get("graph")
        if graph not in found:
            raise BasamError(f"{engine.name}.json gives graph {graph!r}: rebuild the engine")
        found[graph].append((engine, manifest))
    for graph, engines in found.items():
        if len(engines) != 1:
            names = ", ".join(e.name for e, _ in engines) or "none"
            raise BasamError(
                f"{folder} holds {len(engines)} {graph} engines ({names}): a Triton repository takes "
                f"one encoder and one decoder engine; put the pair to serve in a folder of its own"
            )
    sources = []
    for graph in (ENCODER, DECODER):
        engine, manifest = found[graph][0]
        digest = sha256(engine)
        if manifest["engine"]["sha256"] != digest:
            raise BasamError(
                f"{engine.name} differs from the engine its manifest describes (sha256 mismatch): "
                f"rebuild it with basam-trt build"
            )
        io = manifest.get("io") or {}
        source = GraphSource(
            graph=graph,
            file=engine,
            sha256=digest,
            inputs=_io_from_manifest(io, "inputs", engine.name),
            outputs=_io_from_manifest(io, "outputs", engine.name),
            profiles=tuple(manifest_profiles(manifest)),
            manifest=manifest,
        )
        _check_names(source)
        sources.append(source)
    encoder, decoder = sources
    notes: List[str] = []
    a, b = encoder.manifest, decoder.manifest
    if a["tensorrt"]["version"] != b["tensorrt"]["version"]:
        raise BasamError(
            f"{encoder.file.name} was built with TensorRT {a['tensorrt']['version']}, "
            f"{decoder.file.name} with {b['tensorrt']['version']}: Triton runs both with its own "
            f"TensorRT; rebuild them with one version"
        )
    gpus = [(m.get("gpu") or {}).get("compute_capability") for m in (a, b)]
    if None not in gpus and gpus[0] != gpus[1]:
        raise BasamError(
            f"{encoder.file.name} was built for compute capability {gpus[0]}, {decoder.file.name} "
            f"for {gpus[1]}: rebuild both on the GPU that will serve them"
        )
    if a["source"].get("export") != b["source"].get("export"):
        raise BasamError(
            f"{encoder.file.name} and {decoder.file.name} come from different exports (model, "
            f"preset, bias or precision differ): build both from one basam-export folder"
        )
    resolutions = [[p["resolution"] for p in m["profiles"]] for m in (a, b)]
    if resolutions[0] != resolutions[1]:
        notes.append(
            "the encoder and decoder engines have different resolution profiles: an image size "
            "the encoder serves may have no decoder profile (build both with the same --profiles)"
        )
    gpu = a.get("gpu") or {}
    provenance = {
        "tensorrt": a["tensorrt"]["version"],
        "gpu": gpu or None,
        "export": a["source"].get("export"),
        "engines": {
            s.graph: {
                "file": s.file.name,
                "sha256": s.sha256,
                "manifest": s.file.name + ".json",
                "onnx": s.manifest["source"].get("onnx"),
                "onnx_sha256": s.manifest["source"].get("sha256"),
                "precision": s.manifest.get("precision"),
                "plugins": s.manifest.get("plugins") or [],
            }
            for s in sources
        },
    }
    return tuple(sources), provenance, notes


def _external_data(model: onnx.ModelProto, folder: Path, name: str) -> Tuple[Path, ...]:
    """Files the ONNX keeps its weights in (``location`` of external tensors), beside the model."""
    locations = set()
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if onnx.external_data_helper.uses_external_data(tensor):
            info = {e.key: e.value for e in tensor.external_data}
            locations.add(info.get("location", ""))
    files = []
    for location in sorted(locations):
        path = (folder / location).resolve()
        if not location or folder.resolve() not in path.parents or not path.is_file():
            raise BasamError(
                f"{name} keeps weights in {location!r}, which is not a file beside it: export again"
            )
        files.append(path)
    return tuple(files)


def _read_export(folder: Path) -> Tuple[Tuple[GraphSource, ...], Dict[str, object], List[str]]:
    manifest = read_manifest(folder)
    if manifest.get("tool") != "basam-export":
        raise BasamError(
            f"{folder / MANIFEST} was not written by basam-export: give the folder basam-export "
            f"or basam-trt build wrote"
        )
    sources = []
    for graph, name in EXPORT_FILES.items():
        path = folder / name
        model, _, digest = read_export(path)
        entry = manifest["files"][name]
        nodes = plugin_nodes(model)
        if nodes:
            raise BasamError(
                f"{name} holds {len(nodes)} BA-SAM plugin node(s) that onnxruntime cannot run: "
                f"build TensorRT engines from it (basam-trt build), or export with --bias subgraph"
            )
        initializers = {i.name for i in model.graph.initializer}
        source = GraphSource(
            graph=graph,
            file=path,
            sha256=digest,
            inputs=_io_from_onnx(model.graph.input, initializers, name),
            outputs=_io_from_onnx(model.graph.output, (), name),
            extra_files=_external_data(model, folder, name),
            manifest=entry,
        )
        _check_names(source)
        sources.append(source)
    provenance = {
        "export": {k: manifest.get(k) for k in ("model", "preset", "bias", "precision", "opset")},
        "size_range": manifest.get("size_range"),
        "files": {
            s.file.name: {
                "sha256": s.sha256,
                **({"external_data": [p.name for p in s.extra_files]} if s.extra_files else {}),
            }
            for s in sources
        },
    }
    return tuple(sources), provenance, []


def read_source(
    folder: Path, backend: str = "auto"
) -> Tuple[str, Tuple[GraphSource, ...], Dict, List]:
    """(backend, (encoder, decoder), provenance, notes) of an engine or export folder."""
    folder = Path(folder)
    if backend not in BACKENDS:
        raise BasamError(f"--backend {backend!r}: choose {', '.join(BACKENDS)}")
    if not folder.exists():
        raise BasamError(
            f"source folder {folder} not found: give the folder basam-trt build or basam-export wrote"
        )
    if not folder.is_dir():
        raise BasamError(
            f"{folder} is not a folder: give the folder that holds the engines or the ONNX export"
        )
    has_engines = bool(_engine_files(folder))
    has_export = (folder / MANIFEST).is_file() and all(
        (folder / name).is_file() for name in EXPORT_FILES.values()
    )
    if backend == "auto":
        backend = TENSORRT if has_engines else ONNX if has_export else ""
    if backend == TENSORRT and not has_engines:
        raise BasamError(
            f"{folder} holds no TensorRT engine (*.engine or *.plan): build them with basam-trt "
            f"build, or use --backend onnx"
        )
    if backend == ONNX and not has_export:
        raise BasamError(
            f"{folder} is not a basam-export folder (encoder.onnx, decoder.onnx, manifest.json): "
            f"export with basam-export, or give an engine folder"
        )
    if not backend:
        raise BasamError(
            f"{folder} is neither an engine folder (ENGINE + ENGINE.json from basam-trt build) nor "
            f"an export folder (encoder.onnx, decoder.onnx, manifest.json from basam-export): "
            f"give one of those"
        )
    reader = _read_engines if backend == TENSORRT else _read_export
    sources, provenance, notes = reader(folder)
    encoder, decoder = sources
    # The ensemble feeds one to the other: channels and type must agree.
    enc = {t.name: t for t in encoder.outputs}["image_embeddings"]
    dec = {t.name: t for t in decoder.inputs}["image_embeddings"]
    if enc.shape[1:2] != dec.shape[1:2] or enc.data_type != dec.data_type:
        raise BasamError(
            f"the encoder's image_embeddings ({enc.data_type} {list(enc.shape)}) do not fit the "
            f"decoder's ({dec.data_type} {list(dec.shape)}): use an encoder and decoder of one model"
        )
    return backend, sources, provenance, notes


# Deciding the configurations --------------------------------------------------------------------


def shared_batch_axis(source: GraphSource) -> bool:
    """True when every input and output starts with one and the same named dynamic axis: only then
    is that axis Triton's implicit batch dimension (``max_batch_size`` > 0), which Triton splits
    and concatenates across requests."""
    firsts = {t.shape[0] if t.shape else None for t in source.inputs + source.outputs}
    first = next(iter(firsts))
    return len(firsts) == 1 and isinstance(first, str) and first != "?"


def _profile_batches(source: GraphSource) -> List[Tuple[int, int]]:
    """(min, max) batch of each engine profile, over its inputs (as Triton's TensorRT backend
    computes a profile's batch limit)."""
    return [
        (max(r.min[0] for r in p.values()), min(r.max[0] for r in p.values()))
        for p in source.profiles
    ]


def _encoder_max_batch(
    source: GraphSource, backend: str, requested: Optional[int], notes: List[str]
) -> int:
    """The encoder's max_batch_size. For a plan the default is the smallest batch limit among its
    profiles: the dynamic batcher forms batches without looking at profiles, so only that limit
    fits whichever profile serves a size. Triton refuses more than the largest limit."""
    if requested is not None and requested < 0:
        raise BasamError(f"--max-batch {requested} is negative: give 0 (no batching) or more")
    if not shared_batch_axis(source):
        if requested:
            raise BasamError(
                f"{source.file.name} has no batch axis shared by its inputs and outputs: drop "
                f"--max-batch (the encoder is served with max_batch_size 0)"
            )
        return 0
    if backend == ONNX:
        return DEFAULT_ONNX_MAX_BATCH if requested is None else requested
    batches = _profile_batches(source)
    smallest = min(high for _, high in batches)
    largest = max(high for _, high in batches)
    if requested is None:
        return smallest
    if requested > largest:
        raise BasamError(
            f"--max-batch {requested} is above every optimization profile of {source.file.name} "
            f"(largest batch {largest}), so Triton would refuse the model: choose --max-batch <= "
            f"{largest}, or rebuild the engine with a larger batch in --profile"
        )
    if requested > smallest:
        small = [str(i) for i, (_, high) in enumerate(batches) if high < requested]
        notes.append(
            f"--max-batch {requested}: profile(s) #{', #'.join(small)} of {source.file.name} take "
            f"smaller batches, so a batch of more images at sizes only they serve fails"
        )
    return requested


def _export_text(export: Optional[Mapping]) -> str:
    return ", ".join(f"{k} {v}" for k, v in (export or {}).items() if v is not None)


def _plugin_text(manifest: Mapping) -> Tuple[str, Optional[str]]:
    """(parameter text, warning or None) for the plugins an engine manifest lists.

    An ahead-of-time plugin kernel is embedded in the plan, which then runs on the plain TensorRT
    runtime; a JIT (Python) plugin needs Python in the serving process, which Triton's TensorRT
    backend does not have. Manifests may say which one TensorRT used (``aot`` or
    ``implementation``); basam-trt build asks for the AOT kernel whenever a plugin is needed."""
    plugins = list(manifest.get("plugins") or [])
    if not plugins:
        return "none (TensorRT's built-in layers only)", None
    ops = ", ".join(f"{op} x{n}" for p in plugins for op, n in p.get("ops") or [])
    modules = ", ".join(sorted({str(p.get("module")) for p in plugins}))
    kinds = []
    for p in plugins:
        kind = p.get("implementation") or {True: "aot", False: "jit"}.get(p.get("aot"))
        if kind is None and p.get("module") in AOT_ONLY_MODULES:
            kind = "aot"
        kinds.append(str(kind).lower() if kind else None)
    if "jit" in kinds:
        text = (
            f"JIT plugin {ops} from the Python module {modules}: it needs Python and that module "
            f"in the serving process, which Triton's TensorRT backend does not provide; rebuild the "
            f"engine with the plugin's ahead-of-time kernel (TensorRT >= 10.9)"
        )
        return text, text
    if all(k == "aot" for k in kinds):
        return (
            f"ahead-of-time plugin {ops} ({modules}): its kernel is embedded in the plan, no plugin "
            f"library or Python is needed at serving time",
            None,
        )
    return (
        f"plugin {ops} ({modules}), built preferring its ahead-of-time kernel, which the plan embeds "
        f"(no plugin library or Python at serving time); the manifest does not record TensorRT's "
        f"choice: if Triton reports a missing plugin creator, rebuild with TensorRT >= 10.9",
        None,
    )


def _profile_lines(source: GraphSource) -> List[str]:
    """One row per profile and input: '  #0 image            min 1x3x256x256  opt ...  max ...'."""

    def text(shape: Sequence[int]) -> str:
        return "x".join(map(str, shape))

    return [
        f"  #{index} {name:<16} min {text(r.min)}  opt {text(r.opt)}  max {text(r.max)}"
        for index, profile in enumerate(source.profiles)
        for name, r in profile.items()
    ]


GRAPH_ROLE = {
    ENCODER: "the image encoder (basam-export's EncoderGraph): image -> image_embeddings",
    DECODER: "the prompt encoder and mask decoder (basam-export's DecoderGraph)",
}


def _graph_model(
    source: GraphSource,
    name: str,
    backend: str,
    options: TritonRepoOptions,
    max_batch: int,
    provenance: Mapping,
    notes: List[str],
) -> ModelPlan:
    batching = max_batch > 0
    comments = [f"{name}: {GRAPH_ROLE[source.graph]}, from {source.file.name}."]
    parameters = [
        ("basam_graph", source.graph),
        ("basam_source", f"{source.file.name} sha256 {source.sha256}"),
        ("basam_export", _export_text(provenance.get("export"))),
    ]
    if source.graph == ENCODER:
        comments.append(
            "image: normalized RGB (segment-anything's pixel mean and std), zero-padded at the "
            "bottom and right to multiples of 16; the client resizes, normalizes and pads "
            "(basam_deploy.pipeline.transform.ImageTransform.model_input)."
        )
        comments.append(
            f"max_batch_size {max_batch}: "
            + (
                "the graph's first axis (batch) is shared by image and image_embeddings, so it is "
                "Triton's batch dimension; the dynamic batcher joins requests of equal H x W only."
                if batching
                else "Triton's batching is off (--max-batch 0 or no shared batch axis); dims "
                "carry the batch axis explicitly."
            )
        )
    else:
        comments.append(
            "max_batch_size 0: image_embeddings has batch 1 while point_coords, point_labels, "
            "mask_input and has_mask_input share the prompt axis, so no axis is a batch of whole "
            "requests; one request = one image's embeddings with any number of prompts."
        )
    files: List[Tuple[Path, str]]
    if backend == TENSORRT:
        manifest = source.manifest
        gpu = manifest.get("gpu") or {}
        plugin, warning = _plugin_text(manifest)
        if warning:
            notes.append(f"{source.file.name}: {warning}")
        precision = manifest.get("precision") or {}
        parameters += [
            ("basam_tensorrt_version", str(manifest["tensorrt"]["version"])),
            (
                "basam_gpu",
                f"{gpu.get('name')} (compute capability {gpu.get('compute_capability')})"
                if gpu
                else "unknown",
            ),
            (
                "basam_precision",
                f"{precision.get('route')} from the {str(precision.get('onnx')).upper()} ONNX",
            ),
            ("basam_profiles", describe_profiles(list(source.profiles))),
            ("basam_plugin", plugin),
        ]
        comments.append(
            f"Built with TensorRT {manifest['tensorrt']['version']} for compute capability "
            f"{gpu.get('compute_capability', '?')}: serve it with a Triton release built on that "
            f"TensorRT version, on a GPU of that compute capability."
        )
        comments.append(
            "Optimization profiles (every one is listed in instance_group, else Triton uses only "
            "#0; per request Triton takes the one nearest to the input shapes among those that "
            "contain them):"
        )
        comments += _profile_lines(source)
        if len(source.profiles) > 1:
            # Triton makes one execution context per listed profile; STATIC would give each the
            # activation memory of the largest profile, ON_PROFILE_CHANGE only its own.
            parameters.append(("execution_context_allocation_strategy", "ON_PROFILE_CHANGE"))
            comments.append(
                "execution_context_allocation_strategy ON_PROFILE_CHANGE: each profile's context "
                "holds the activation memory of its own profile, not of the largest one."
            )
        files = [(source.file, MODEL_FILES[TENSORRT])]
        kind = "KIND_GPU"
        profiles = tuple(str(i) for i in range(len(source.profiles)))
        for index, (low, _) in enumerate(_profile_batches(source)):
            if batching and low > 1:
                notes.append(
                    f"profile #{index} of {source.file.name} needs batch >= {low}: smaller batches "
                    f"at its sizes fail"
                )
    else:
        sizes = provenance.get("size_range") or {}
        parameters += [
            (
                "basam_sizes",
                f"H and W multiples of {sizes.get('multiple_of')} in {sizes.get('min')}-"
                f"{sizes.get('max')} px",
            ),
            ("basam_plugin", "none (onnxruntime runs the graph as exported)"),
        ]
        comments.append(
            "onnxruntime accepts every size the export accepts: H and W multiples of "
            f"{sizes.get('multiple_of')} in {sizes.get('min')}-{sizes.get('max')} px."
        )
        model_file = MODEL_FILES[ONNX]
        if source.extra_files:
            # Triton loads an ONNX with external data from a folder named model.onnx holding
            # model.onnx and the data files under the names the graph refers to.
            files = [(source.file, f"{model_file}/{model_file}")]
            files += [(p, f"{model_file}/{p.name}") for p in source.extra_files]
        else:
            files = [(source.file, model_file)]
        kind = "KIND_CPU" if options.kind == "cpu" else "KIND_GPU"
        profiles = ()
    return ModelPlan(
        name=name,
        platform=PLATFORMS[backend],
        max_batch_size=max_batch,
        inputs=source.inputs,
        outputs=source.outputs,
        instance_kind=kind,
        instances=options.instances,
        profiles=profiles,
        # With max_batch_size 1 the batcher could only ever form batches of one.
        dynamic_batching=max_batch > 1,
        parameters=tuple(parameters),
        comments=tuple(comments),
        files=tuple(files),
    )


def _ensemble_model(encoder: ModelPlan, decoder: ModelPlan) -> ModelPlan:
    """One image per request (the decoder's contract), so ``max_batch_size: 0``; ``image`` is
    ``[1, 3, -1, -1]``. Triton's ensemble scheduler hands it to the batching encoder as a batch of
    one and strips nothing on the way to the decoder, whose image_embeddings is ``[1, C, h, w]``."""
    image = next(t for t in encoder.inputs if t.name == "image")
    ensemble_image = Tensor(image.name, image.data_type, (1,) + tuple(image.shape[1:]))
    prompt_inputs = tuple(t for t in decoder.inputs if t.name != "image_embeddings")
    steps = (
        Step(
            encoder.name,
            tuple((t.name, t.name) for t in encoder.inputs),
            tuple((t.name, t.name) for t in encoder.outputs),
        ),
        Step(
            decoder.name,
            tuple((t.name, t.name) for t in decoder.inputs),
            tuple((t.name, t.name) for t in decoder.outputs),
        ),
    )
    return ModelPlan(
        name=ENSEMBLE_MODEL,
        platform="ensemble",
        max_batch_size=0,
        inputs=(ensemble_image,) + prompt_inputs,
        outputs=decoder.outputs,
        parameters=(
            (
                "basam_preprocessing",
                "client side: resize (aspect kept), normalize, pad to multiples of 16, map prompt "
                "coordinates to the padded input, upscale low_res_masks "
                "(basam_deploy.pipeline.transform.ImageTransform)",
            ),
        ),
        comments=(
            f"{ENSEMBLE_MODEL}: {encoder.name} then {decoder.name} in one request.",
            "max_batch_size 0: one image per request with any number of prompts (the decoder's "
            "contract); image is [1, 3, H, W], H and W padded to multiples of 16.",
            "Prompts are pixels of the padded model input, x then y (ImageTransform.to_model_coords);"
            " low_res_masks are logits at H/4 x W/4 (ImageTransform.masks_to_image).",
            f"To encode once and prompt many times, call {encoder.name} and {decoder.name} directly.",
        ),
        steps=steps,
    )


def plan_triton_repo(
    source: Union[str, Path], options: TritonRepoOptions = TritonRepoOptions()
) -> RepoPlan:
    """Every decision of the repository, from the source folder and the options."""
    source = Path(source)
    if options.instances < 1:
        raise BasamError(f"--instances {options.instances} must be 1 or more")
    if options.kind not in KINDS:
        raise BasamError(f"instance kind {options.kind!r}: choose gpu or cpu")
    backend, graphs, provenance, notes = read_source(source, options.backend)
    if backend == TENSORRT and options.kind == "cpu":
        raise BasamError("--cpu applies to ONNX models only: TensorRT plans run on GPUs")
    encoder_source, decoder_source = graphs
    max_batch = _encoder_max_batch(encoder_source, backend, options.max_batch, notes)
    encoder = _graph_model(
        encoder_source, ENCODER_MODEL, backend, options, max_batch, provenance, notes
    )
    decoder = _graph_model(decoder_source, DECODER_MODEL, backend, options, 0, provenance, notes)
    models = (encoder, decoder, _ensemble_model(encoder, decoder))
    check_ensemble(models[2], models)
    return RepoPlan(
        source=source,
        backend=backend,
        models=models,
        graphs=graphs,
        options=options,
        provenance=provenance,
        notes=tuple(notes),
    )


# config.pbtxt -------------------------------------------------------------------------------------


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


# Checks -------------------------------------------------------------------------------------------


def _bug(message: str) -> BasamError:
    return BasamError(f"{message}: a basam-deploy bug, please report it")


def _schema():
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
    schema = _schema()
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


def _check_parsed(config, model: ModelPlan) -> None:
    """The parsed message must say what the plan says (guards the text writer)."""
    _, pb = _schema()

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


# Writing ----------------------------------------------------------------------------------------


def _shape_text(t: Tensor) -> str:
    return f"{t.name} {t.data_type[5:]} [{', '.join(map(str, t.shape))}]"


def repo_readme(plan: RepoPlan) -> str:
    """The README.md written at the repository's root."""
    encoder, decoder, ensemble = plan.models
    if plan.backend == TENSORRT:
        trt = plan.provenance.get("tensorrt")
        gpu = plan.provenance.get("gpu") or {}
        serve = (
            f"The plans were built with TensorRT {trt} for compute capability "
            f"{gpu.get('compute_capability', '?')} ({gpu.get('name', 'unknown GPU')}). Serve them "
            f"with the Triton Inference Server release whose TensorRT is {trt} (NVIDIA's framework "
            f"support matrix lists it per release), on a GPU of that compute capability; anything "
            f"else makes Triton refuse to load the plans: rebuild them there with basam-trt build."
        )
    else:
        serve = (
            "The models are ONNX files for Triton's onnxruntime backend "
            f"({'on the CPU' if encoder.instance_kind == 'KIND_CPU' else 'on the GPU'})."
        )
    lines = [
        "# BA-SAM Triton model repository",
        "",
        f"Written by `{TOOL}` (basam-deploy {__version__}) from `{plan.source.resolve()}`; "
        f"`{MANIFEST}` records the source files, their checksums and the versions used. "
        "Regenerate it rather than editing it.",
        "",
        "| model | platform | what it does |",
        "|---|---|---|",
        f"| `{encoder.name}` | `{encoder.platform}` | image -> image_embeddings, max_batch_size "
        f"{encoder.max_batch_size} |",
        f"| `{decoder.name}` | `{decoder.platform}` | embeddings + prompts -> low-res masks, "
        "max_batch_size 0 |",
        f"| `{ensemble.name}` | `ensemble` | {encoder.name} then {decoder.name}: one image and its "
        "prompts per request |",
        "",
        "## Serving",
        "",
        "```bash",
        "tritonserver --model-repository=$(pwd)   # from this folder",
        "```",
        "",
        serve,
        "",
        "## Requests",
        "",
        f"`{ensemble.name}` inputs (one image per request, any number P of prompts with N points):",
        "",
    ]
    lines += [f"- `{_shape_text(t)}`" for t in ensemble.inputs]
    lines += ["", "outputs:", ""]
    lines += [f"- `{_shape_text(t)}`" for t in ensemble.outputs]
    lines += [
        "",
        "The client prepares the image and maps coordinates, as `basam_deploy.Predictor` does "
        "(`basam_deploy.pipeline.transform.ImageTransform`): resize with the aspect ratio kept, "
        "normalize with segment-anything's pixel mean and std, zero-pad at the bottom and right to "
        "multiples of 16 (`model_input`); prompt coordinates in pixels of the padded input, x then y "
        "(`to_model_coords`), a padding point (0, 0) with label -1 when there is no box, box corners "
        "as labels 2 and 3; `low_res_masks` are logits at H/4 x W/4, upscaled and cropped with "
        "`masks_to_image`, mask > 0. An ensemble of platform models cannot run that Python code "
        "without Triton's Python backend, which this repository does not use.",
        "",
        f"To encode an image once and prompt it many times, call `{encoder.name}` and then "
        f"`{decoder.name}` with the embeddings. (`basam-serve` serves the whole pipeline, raw "
        "images in, as `basam_encoder` / `basam_decoder`: another contract, other names.)",
    ]
    if plan.backend == TENSORRT:
        lines += [
            "",
            "## Optimization profiles",
            "",
            "Every profile of each plan is listed in its `instance_group` (Triton would use only "
            "profile 0 otherwise); Triton picks, per request, the profile nearest to the input "
            "shapes among those that contain them. A shape outside every profile is refused.",
            "",
        ]
        for graph in plan.graphs:
            lines.append(f"`{graph.file.name}`:")
            lines += ["", "```"] + [line[2:] for line in _profile_lines(graph)] + ["```", ""]
        lines.append(
            f"Plugins: {encoder.name} {dict(encoder.parameters)['basam_plugin']}; "
            f"{decoder.name} {dict(decoder.parameters)['basam_plugin']}."
        )
    if plan.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in plan.notes]
    return "\n".join(lines) + "\n"


def _repo_manifest(plan: RepoPlan, files: Dict, schema) -> Dict:
    options = plan.options
    return {
        "tool": TOOL,
        "format": 1,
        "basam_deploy": __version__,
        "source": {"folder": str(plan.source.resolve()), "backend": plan.backend},
        "provenance": dict(plan.provenance),
        "options": {
            "backend": options.backend,
            "instances": options.instances,
            "max_batch": options.max_batch,
            "kind": options.kind,
        },
        "models": {
            m.name: {
                "platform": m.platform,
                "max_batch_size": m.max_batch_size,
                "instance_kind": m.instance_kind,
                "instances": m.instances if m.instance_kind else None,
                "profiles": list(m.profiles),
                "dynamic_batching": m.dynamic_batching,
            }
            for m in plan.models
        },
        "files": files,
        "validation": {
            "model_config_schema": (
                f"tritonclient {package_versions(['tritonclient'])['tritonclient']} "
                f"model_config_pb2 (text_format.Parse)"
                if schema
                else None
            ),
            "ensemble": "Triton's tensor-consistency rules (core ensemble_utils.cc), in Python",
        },
        "versions": package_versions(["tritonclient", "protobuf", "onnx", "onnxruntime"]),
        "notes": list(plan.notes),
    }


def _check_destination(plan: RepoPlan, output: Path, force: bool) -> None:
    source, target = plan.source.resolve(), output.resolve()
    if target == source or target in source.parents:
        raise BasamError(f"--output {output} would replace the source folder: choose another")
    if output.exists() and not (output.is_dir() and not any(output.iterdir())):
        if not force:
            raise BasamError(
                f"output {output} already exists: pass --force to replace it, or choose another "
                f"--output"
            )
        # --force replaces an earlier repository of this tool, never someone else's folder.
        check_output_folder(output, TOOL)


def write_triton_repo(
    plan: RepoPlan,
    output: Union[str, Path],
    *,
    force: bool = False,
) -> Dict[str, object]:
    """Write the repository atomically; returns its manifest.

    Every config is parsed with Triton's ModelConfig schema and compared with the plan before any
    file is copied, and the written files are parsed again before the folder is renamed into place.
    Without tritonclient the schema check is skipped with a BasamWarning (the manifest says so)."""
    output = Path(output)
    _check_destination(plan, output, force)
    schema = _schema()
    if schema is None:
        warnings.warn(
            "tritonclient is not installed: the configs were not checked against Triton's "
            "ModelConfig schema (pip install 'tritonclient[grpc]')",
            BasamWarning,
            stacklevel=2,
        )
    texts = {m.name: m.config_text() for m in plan.models}
    if schema:
        for model in plan.models:
            _check_parsed(parse_model_config(texts[model.name], model.name), model)
    check_ensemble(plan.models[2], plan.models)
    with staged_folder(output) as staging:
        for model in plan.models:
            version = staging / model.name / "1"
            version.mkdir(parents=True)  # an ensemble needs an (empty) version folder too
            config = staging / model.name / "config.pbtxt"
            config.write_text(texts[model.name])
            for source, relative in model.files:
                target = version / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            if schema:
                _check_parsed(parse_model_config(config.read_text(), str(config)), model)
        (staging / "README.md").write_text(repo_readme(plan))
        files = {
            path.relative_to(staging).as_posix(): {
                "sha256": sha256(path),
                "bytes": path.stat().st_size,
            }
            for path in sorted(staging.rglob("*"))
            if path.is_file()
        }
        for model in plan.models:  # a copy that differs from its source must not land
            for source, relative in model.files:
                entry = files[f"{model.name}/1/{relative}"]
                expected = next(
                    (g.sha256 for g in plan.graphs if g.file == source), None
                ) or sha256(source)
                if entry["sha256"] != expected:
                    raise BasamError(f"copying {source} to {relative} changed it: write again")
        manifest = _repo_manifest(plan, files, schema)
        write_json(staging / MANIFEST, manifest)
    return manifest


__all__ = [
    "ENCODER_MODEL",
    "DECODER_MODEL",
    "ENSEMBLE_MODEL",
    "TOOL",
    "RepoPlan",
    "TritonRepoOptions",
    "check_ensemble",
    "model_config_text",
    "parse_model_config",
    "plan_triton_repo",
    "read_source",
    "write_triton_repo",
]
