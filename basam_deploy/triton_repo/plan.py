"""Deciding every model configuration of the repository from the source folder and the options:
the encoder and decoder models (``_graph_model``: the graph's part, then ``_tensorrt_serving`` or
``_onnx_serving``), the ensemble (``_ensemble_model``), the whole ``RepoPlan``
(``plan_triton_repo``). The docstrings below say why each decision is made."""

from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional, Tuple, Union

from ..errors import BasamError
from ..tensorrt.manifest import EngineManifest
from ..tensorrt.plan import PLUGIN_MODULE
from ..tensorrt.profiles import DECODER, ENCODER, describe_profiles
from .checks import check_ensemble
from .model import (
    KINDS,
    ONNX,
    TENSORRT,
    GraphSource,
    ModelPlan,
    RepoPlan,
    Step,
    Tensor,
    TritonRepoOptions,
)
from .provenance import ExportProvenance, Provenance
from .sources import profile_batches, profile_lines, read_source, shared_batch_axis

# The naming rule (docs/triton_repo.md): a model that carries one of SAM's modules' raw tensors (a
# preprocessed float image in, low-res logits out) is named after that module, the ensemble of both
# after SAM; basam-serve's models (an image in, original-size masks out) are basam_encoder /
# basam_decoder (serving.protocol.SERVED_MODELS). The contracts differ, so the names never meet.
ENCODER_MODEL, DECODER_MODEL, ENSEMBLE_MODEL = (
    "basam_image_encoder",
    "basam_mask_decoder",
    "basam_sam",
)
REPO_MODELS = (ENCODER_MODEL, DECODER_MODEL, ENSEMBLE_MODEL)
PLATFORMS = {TENSORRT: "tensorrt_plan", ONNX: "onnxruntime_onnx"}
MODEL_FILES = {TENSORRT: "model.plan", ONNX: "model.onnx"}
# ONNX Runtime accepts any batch the export allows (1024): 4 is a modest default, as activation
# memory grows with batch x resolution; ``max_batch`` changes it. Engines default to what every one of
# their profiles accepts.
DEFAULT_ONNX_MAX_BATCH = 4

# basam's own plugin registers only an ahead-of-time implementation (tensorrt/plugin.py): TensorRT
# has no JIT one to fall back to, so its engines always embed the kernel.
AOT_ONLY_MODULES = frozenset({PLUGIN_MODULE})


def _encoder_max_batch(
    source: GraphSource, backend: str, requested: Optional[int], notes: List[str]
) -> int:
    """The encoder's max_batch_size. For a plan the default is the smallest batch limit among its
    profiles: the dynamic batcher forms batches without looking at profiles, so only that limit
    fits whichever profile serves a size. Triton refuses more than the largest limit."""
    if requested is not None and requested < 0:
        raise BasamError(f"`max_batch` {requested} is negative: give 0 (no batching) or more")
    if not shared_batch_axis(source):
        if requested:
            raise BasamError(
                f"{source.file.name} has no batch axis shared by its inputs and outputs: drop "
                f"`max_batch` (the encoder is served with max_batch_size 0)"
            )
        return 0
    if backend == ONNX:
        return DEFAULT_ONNX_MAX_BATCH if requested is None else requested
    batches = profile_batches(source)
    smallest = min(high for _, high in batches)
    largest = max(high for _, high in batches)
    if requested is None:
        return smallest
    if requested > largest:
        raise BasamError(
            f"`max_batch` {requested} is above every optimization profile of {source.file.name} "
            f"(largest batch {largest}), so Triton would refuse the model: choose `max_batch` <= "
            f"{largest}, or rebuild the engine with a larger batch in its profiles"
        )
    if requested > smallest:
        small = [str(i) for i, (_, high) in enumerate(batches) if high < requested]
        notes.append(
            f"`max_batch` {requested}: profile(s) #{', #'.join(small)} of {source.file.name} take "
            f"smaller batches, so a batch of more images at sizes only they serve fails"
        )
    return requested


def _export_text(export: Optional[Mapping]) -> str:
    return ", ".join(f"{k} {v}" for k, v in (export or {}).items() if v is not None)


def _plugin_text(manifest: EngineManifest) -> Tuple[str, Optional[str]]:
    """(parameter text, warning or None) for the plugins an engine manifest lists.

    An ahead-of-time plugin kernel is embedded in the plan, which then runs on the plain TensorRT
    runtime; a JIT (Python) plugin needs Python in the serving process, which Triton's TensorRT
    backend does not have. Manifests may say which one TensorRT used
    (``PluginRecord.implementation``); basam-trt build asks for the AOT kernel whenever a plugin
    is needed."""
    plugins = manifest.plugins
    if not plugins:
        return "none (TensorRT's built-in layers only)", None
    ops = ", ".join(f"{op} x{n}" for p in plugins for op, n in p.ops)
    modules = ", ".join(sorted({p.module for p in plugins}))
    kinds = []
    for p in plugins:
        kind = p.implementation
        if kind is None and p.module in AOT_ONLY_MODULES:
            kind = "aot"
        kinds.append(kind.lower() if kind else None)
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


GRAPH_ROLE = {
    ENCODER: "the image encoder (basam-export's EncoderGraph): image -> image_embeddings",
    DECODER: "the prompt encoder and mask decoder (basam-export's DecoderGraph)",
}


@dataclass(frozen=True)
class _Serving:
    """What the backend decides for one graph model: its parameters and comments (after the
    graph's own), its files, where its instances run, and its profiles."""

    parameters: Tuple[Tuple[str, str], ...]
    comments: Tuple[str, ...]
    files: Tuple[Tuple[Path, str], ...]
    instance_kind: str
    profiles: Tuple[str, ...] = ()


def _graph_comments(source: GraphSource, name: str, max_batch: int) -> List[str]:
    """What the graph is and what its batch axis means, whatever the backend."""
    comments = [f"{name}: {GRAPH_ROLE[source.graph]}, from {source.file.name}."]
    if source.graph != ENCODER:
        comments.append(
            "max_batch_size 0: image_embeddings has batch 1 while point_coords, point_labels, "
            "mask_input and has_mask_input share the prompt axis, so no axis is a batch of whole "
            "requests; one request = one image's embeddings with any number of prompts."
        )
        return comments
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
            if max_batch > 0
            else "Triton's batching is off (`max_batch=0` or no shared batch axis); dims "
            "carry the batch axis explicitly."
        )
    )
    return comments


def _tensorrt_serving(source: GraphSource, max_batch: int, notes: List[str]) -> _Serving:
    """An engine: its build (TensorRT version, GPU, precision, profiles, plugins), served on the
    GPU with every profile listed."""
    manifest = source.engine_manifest
    assert manifest is not None  # sources.read_source gives every engine its manifest
    gpu, precision = manifest.gpu, manifest.precision
    plugin, warning = _plugin_text(manifest)
    if warning:
        notes.append(f"{source.file.name}: {warning}")
    parameters = [
        ("basam_tensorrt_version", manifest.tensorrt_version),
        (
            "basam_gpu",
            f"{gpu.name} (compute capability {gpu.compute_capability})" if gpu else "unknown",
        ),
        ("basam_precision", f"{precision.route} from the {precision.onnx.upper()} ONNX"),
        ("basam_profiles", describe_profiles(list(source.profiles))),
        ("basam_plugin", plugin),
    ]
    comments = [
        f"Built with TensorRT {manifest.tensorrt_version} for compute capability "
        f"{gpu.compute_capability if gpu else '?'}: serve it with a Triton release built on that "
        f"TensorRT version, on a GPU of that compute capability.",
        "Optimization profiles (every one is listed in instance_group, else Triton uses only "
        "#0; per request Triton takes the one nearest to the input shapes among those that "
        "contain them):",
        *profile_lines(source),
    ]
    if len(source.profiles) > 1:
        # Triton makes one execution context per listed profile; STATIC would give each the
        # activation memory of the largest profile, ON_PROFILE_CHANGE only its own.
        parameters.append(("execution_context_allocation_strategy", "ON_PROFILE_CHANGE"))
        comments.append(
            "execution_context_allocation_strategy ON_PROFILE_CHANGE: each profile's context "
            "holds the activation memory of its own profile, not of the largest one."
        )
    for index, (low, _) in enumerate(profile_batches(source)):
        if max_batch > 0 and low > 1:
            notes.append(
                f"profile #{index} of {source.file.name} needs batch >= {low}: smaller batches "
                f"at its sizes fail"
            )
    return _Serving(
        parameters=tuple(parameters),
        comments=tuple(comments),
        files=((source.file, MODEL_FILES[TENSORRT]),),
        instance_kind="KIND_GPU",
        profiles=tuple(str(i) for i in range(len(source.profiles))),
    )


def _onnx_serving(
    source: GraphSource, options: TritonRepoOptions, provenance: ExportProvenance
) -> _Serving:
    """An ONNX graph: every size the export accepts, on the CPU or GPU as asked."""
    sizes = provenance.size_range
    accepted = f"H and W multiples of {sizes.multiple_of} in {sizes.min}-{sizes.max} px"
    model_file = MODEL_FILES[ONNX]
    files = [(source.file, model_file)]
    if source.extra_files:
        # Triton loads an ONNX with external data from a folder named model.onnx holding
        # model.onnx and the data files under the names the graph refers to.
        files = [(source.file, f"{model_file}/{model_file}")]
        files += [(p, f"{model_file}/{p.name}") for p in source.extra_files]
    return _Serving(
        parameters=(
            ("basam_sizes", accepted),
            ("basam_plugin", "none (onnxruntime runs the graph as exported)"),
        ),
        comments=(f"onnxruntime accepts every size the export accepts: {accepted}.",),
        files=tuple(files),
        instance_kind="KIND_CPU" if options.kind == "cpu" else "KIND_GPU",
    )


def _graph_model(
    source: GraphSource,
    name: str,
    backend: str,
    options: TritonRepoOptions,
    max_batch: int,
    provenance: Provenance,
    notes: List[str],
) -> ModelPlan:
    """The encoder's or decoder's model: the graph's comments, then the backend's decisions."""
    if backend == TENSORRT:
        serving = _tensorrt_serving(source, max_batch, notes)
    else:
        serving = _onnx_serving(source, options, provenance)
    parameters = (
        ("basam_graph", source.graph),
        ("basam_source", f"{source.file.name} sha256 {source.sha256}"),
        ("basam_export", _export_text(provenance.export)),
    )
    return ModelPlan(
        name=name,
        platform=PLATFORMS[backend],
        max_batch_size=max_batch,
        inputs=source.inputs,
        outputs=source.outputs,
        instance_kind=serving.instance_kind,
        instances=options.instances,
        profiles=serving.profiles,
        # With max_batch_size 1 the batcher could only ever form batches of one.
        dynamic_batching=max_batch > 1,
        parameters=parameters + serving.parameters,
        comments=tuple(_graph_comments(source, name, max_batch)) + serving.comments,
        files=serving.files,
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
    source: Union[str, Path],
    options: TritonRepoOptions = TritonRepoOptions(),  # noqa: B008 (frozen dataclass)
) -> RepoPlan:
    """Every decision of the repository, from the source folder and the options."""
    source = Path(source)
    if options.instances < 1:
        raise BasamError(f"`instances` {options.instances} must be 1 or more")
    if options.kind not in KINDS:
        raise BasamError(f"instance kind {options.kind!r}: choose gpu or cpu")
    backend, graphs, provenance, notes = read_source(source, options.backend)
    if backend == TENSORRT and options.kind == "cpu":
        raise BasamError("`kind=cpu` applies to ONNX models only: TensorRT plans run on GPUs")
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
