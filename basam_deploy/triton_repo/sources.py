"""Reading the source folder: basam-trt engines (``ENGINE`` + ``ENGINE.json``) or a basam-export
folder (``encoder.onnx`` + ``decoder.onnx`` + ``manifest.json``) into two ``GraphSource``s, and what
a source allows (its batch axis, its engine profiles)."""

from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import onnx

from ..artifacts import MANIFEST, sha256
from ..errors import BasamError
from ..export.graphs import (
    DECODER_FILE,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_FILE,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
)
from ..export.manifest import ExportManifest, TensorRecord, read_export
from ..fused_op_contract import plugin_nodes
from ..onnx_types import value_types
from ..tensorrt.manifest import EngineManifest, read_engine_manifest
from ..tensorrt.profiles import DECODER, ENCODER
from .model import BACKENDS, ONNX, TENSORRT, GraphSource, Tensor
from .provenance import EngineProvenance, EngineRecord, ExportProvenance, SourceFile

ENGINE_SUFFIXES = (".engine", ".plan")
EXPORT_FILES = {ENCODER: ENCODER_FILE, DECODER: DECODER_FILE}
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


def _triton_type(dtype: str, where: str) -> str:
    if dtype not in TRITON_TYPES:
        raise BasamError(f"{where} has type {dtype!r}, which Triton has no type for: export again")
    return TRITON_TYPES[dtype]


def _io_from_manifest(records: Mapping[str, TensorRecord], where: str) -> Tuple[Tensor, ...]:
    return tuple(
        Tensor(name, _triton_type(t.dtype, f"{where} {name}"), t.shape)
        for name, t in records.items()
    )


def _io_from_onnx(values, skip, where: str) -> Tuple[Tensor, ...]:
    """Unknown dims read "?", as does an undeclared type (which _triton_type refuses)."""
    return tuple(
        Tensor(
            value.name,
            _triton_type(value.dtype or "?", f"{where} {value.name}"),
            value.dims_or("?"),
        )
        for value in value_types(values, skip)
    )


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


def _read_engines(folder: Path) -> Tuple[Tuple[GraphSource, ...], EngineProvenance, List[str]]:
    found: Dict[str, List[Tuple[Path, EngineManifest]]] = {ENCODER: [], DECODER: []}
    for engine in _engine_files(folder):
        manifest = read_engine_manifest(engine)
        graph = manifest.source.graph
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
        if manifest.engine.sha256 != digest:
            raise BasamError(
                f"{engine.name} differs from the engine its manifest describes (sha256 mismatch): "
                f"rebuild it with basam-trt build"
            )
        source = GraphSource(
            graph=graph,
            file=engine,
            sha256=digest,
            inputs=_io_from_manifest(manifest.inputs, engine.name),
            outputs=_io_from_manifest(manifest.outputs, engine.name),
            profiles=tuple(manifest.profile_ranges()),
            engine_manifest=manifest,
        )
        _check_names(source)
        sources.append(source)
    encoder, decoder = sources
    notes: List[str] = []
    a, b = found[ENCODER][0][1], found[DECODER][0][1]
    if a.tensorrt_version != b.tensorrt_version:
        raise BasamError(
            f"{encoder.file.name} was built with TensorRT {a.tensorrt_version}, "
            f"{decoder.file.name} with {b.tensorrt_version}: Triton runs both with its own "
            f"TensorRT; rebuild them with one version"
        )
    gpus = [m.gpu.compute_capability if m.gpu else None for m in (a, b)]
    if None not in gpus and gpus[0] != gpus[1]:
        raise BasamError(
            f"{encoder.file.name} was built for compute capability {gpus[0]}, {decoder.file.name} "
            f"for {gpus[1]}: rebuild both on the GPU that will serve them"
        )
    if a.source.export != b.source.export:
        raise BasamError(
            f"{encoder.file.name} and {decoder.file.name} come from different exports (model, "
            f"preset, bias or precision differ): build both from one basam-export folder"
        )
    resolutions = [[p.resolution for p in m.profiles] for m in (a, b)]
    if resolutions[0] != resolutions[1]:
        notes.append(
            "the encoder and decoder engines have different resolution profiles: an image size "
            "the encoder serves may have no decoder profile (build both with the same profiles)"
        )
    provenance = EngineProvenance(
        tensorrt=a.tensorrt_version,
        gpu=a.gpu,
        export=dict(a.source.export),
        engines={
            s.graph: EngineRecord(
                file=s.file.name,
                sha256=s.sha256,
                manifest=s.file.name + ".json",
                onnx=m.source.onnx,
                onnx_sha256=m.source.sha256,
                precision=m.precision,
                plugins=m.plugins,
            )
            for s, m in ((encoder, a), (decoder, b))
        },
    )
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


def _read_export(folder: Path) -> Tuple[Tuple[GraphSource, ...], ExportProvenance, List[str]]:
    manifest = ExportManifest.read(folder)
    sources = []
    for graph, name in EXPORT_FILES.items():
        path = folder / name
        model, _, digest = read_export(path)
        nodes = plugin_nodes(model)
        if nodes:
            raise BasamError(
                f"{name} holds {len(nodes)} BA-SAM plugin node(s) that onnxruntime cannot run: "
                f"build TensorRT engines from it (basam-trt build), or export with `bias=subgraph`"
            )
        initializers = {i.name for i in model.graph.initializer}
        source = GraphSource(
            graph=graph,
            file=path,
            sha256=digest,
            inputs=_io_from_onnx(model.graph.input, initializers, name),
            outputs=_io_from_onnx(model.graph.output, (), name),
            extra_files=_external_data(model, folder, name),
        )
        _check_names(source)
        sources.append(source)
    provenance = ExportProvenance(
        export={
            "model": manifest.model,
            "preset": manifest.preset,
            "bias": manifest.bias,
            "precision": manifest.precision,
            "opset": manifest.opset,
        },
        size_range=manifest.size_range,
        files={
            s.file.name: SourceFile(s.sha256, tuple(p.name for p in s.extra_files)) for s in sources
        },
    )
    return tuple(sources), provenance, []


def read_source(
    folder: Path, backend: str = "auto"
) -> Tuple[str, Tuple[GraphSource, ...], Dict, List]:
    """(backend, (encoder, decoder), provenance, notes) of an engine or export folder."""
    folder = Path(folder)
    if backend not in BACKENDS:
        raise BasamError(f"`backend` {backend!r}: choose {', '.join(BACKENDS)}")
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
            f"build, or use `backend=onnx`"
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


# What a source allows ----------------------------------------------------------------------------


def shared_batch_axis(source: GraphSource) -> bool:
    """True when every input and output starts with one and the same named dynamic axis: only then
    is that axis Triton's implicit batch dimension (``max_batch_size`` > 0), which Triton splits
    and concatenates across requests."""
    firsts = {t.shape[0] if t.shape else None for t in source.inputs + source.outputs}
    first = next(iter(firsts))
    return len(firsts) == 1 and isinstance(first, str) and first != "?"


def profile_batches(source: GraphSource) -> List[Tuple[int, int]]:
    """(min, max) batch of each engine profile, over its inputs (as Triton's TensorRT backend
    computes a profile's batch limit)."""
    return [
        (max(r.min[0] for r in p.values()), min(r.max[0] for r in p.values()))
        for p in source.profiles
    ]


def profile_lines(source: GraphSource) -> List[str]:
    """One row per profile and input: '  #0 image            min 1x3x256x256  opt ...  max ...'."""

    def text(shape: Sequence[int]) -> str:
        return "x".join(map(str, shape))

    return [
        f"  #{index} {name:<16} min {text(r.min)}  opt {text(r.opt)}  max {text(r.max)}"
        for index, profile in enumerate(source.profiles)
        for name, r in profile.items()
    ]
