"""The README.md at the repository's root: what each model does, how to serve and call it."""

from typing import List

from .._version import __version__
from ..artifacts import MANIFEST
from .model import TENSORRT, TOOL, RepoPlan, Tensor
from .sources import profile_lines


def _shape_text(t: Tensor) -> str:
    return f"{t.name} {t.data_type[5:]} [{', '.join(map(str, t.shape))}]"


def _serving_section(plan: RepoPlan) -> List[str]:
    """How to start Triton, and which Triton and GPU can serve the models: the plans' TensorRT
    and compute capability, or onnxruntime's backend."""
    start = [
        "## Serving",
        "",
        "```bash",
        "tritonserver --model-repository=$(pwd)   # from this folder",
        "```",
        "",
    ]
    encoder = plan.models[0]
    if plan.backend != TENSORRT:
        return start + [
            "The models are ONNX files for Triton's onnxruntime backend "
            f"({'on the CPU' if encoder.instance_kind == 'KIND_CPU' else 'on the GPU'})."
        ]
    trt, gpu = plan.provenance.tensorrt, plan.provenance.gpu
    return start + [
        f"The plans were built with TensorRT {trt} for compute capability "
        f"{gpu.compute_capability if gpu else '?'} ({gpu.name if gpu else 'unknown GPU'}). Serve "
        f"them "
        f"with the Triton Inference Server release whose TensorRT is {trt} (NVIDIA's framework "
        f"support matrix lists it per release), on a GPU of that compute capability; anything "
        f"else makes Triton refuse to load the plans: rebuild them there with basam-trt build."
    ]


def _models_section(plan: RepoPlan) -> List[str]:
    """The title, where the repository comes from, and the table of its models."""
    encoder, decoder, ensemble = plan.models
    return [
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
        # The rule as docs/triton_repo.md and docs/serving.md state it; basam-serve's names are
        # serving.protocol.SERVED_MODELS (a sibling layer: tests/test_triton_repo.py checks them).
        "Names: a model that carries one of SAM's modules' raw tensors (a preprocessed image in, "
        f"low-res mask logits out) is named after that module (`{encoder.name}`, `{decoder.name}`, "
        f"and `{ensemble.name}` for both); a model that takes an image and returns masks at the "
        "original size, as `basam-serve` serves them, is `basam_encoder` / `basam_decoder`. The "
        "contracts differ, so the names do: a client written for one never reaches the other.",
    ]


def _requests_section(plan: RepoPlan) -> List[str]:
    """The ensemble's inputs and outputs, and what the client does around them."""
    encoder, decoder, ensemble = plan.models
    lines = [
        "## Requests",
        "",
        f"`{ensemble.name}` inputs (one image per request, any number P of prompts with N points):",
        "",
    ]
    lines += [f"- `{_shape_text(t)}`" for t in ensemble.inputs]
    lines += ["", "outputs:", ""]
    lines += [f"- `{_shape_text(t)}`" for t in ensemble.outputs]
    return lines + [
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
        f"`{decoder.name}` with the embeddings.",
    ]


def _profiles_section(plan: RepoPlan) -> List[str]:
    """The plans' optimization profiles and plugins (TensorRT only)."""
    encoder, decoder, _ = plan.models
    lines = [
        "## Optimization profiles",
        "",
        "Every profile of each plan is listed in its `instance_group` (Triton would use only "
        "profile 0 otherwise); Triton picks, per request, the profile nearest to the input "
        "shapes among those that contain them. A shape outside every profile is refused.",
        "",
    ]
    for graph in plan.graphs:
        lines.append(f"`{graph.file.name}`:")
        lines += ["", "```"] + [line[2:] for line in profile_lines(graph)] + ["```", ""]
    lines.append(
        f"Plugins: {encoder.name} {dict(encoder.parameters)['basam_plugin']}; "
        f"{decoder.name} {dict(decoder.parameters)['basam_plugin']}."
    )
    return lines


def repo_readme(plan: RepoPlan) -> str:
    """The README.md written at the repository's root: its sections, in order."""
    lines = _models_section(plan) + [""] + _serving_section(plan) + [""] + _requests_section(plan)
    if plan.backend == TENSORRT:
        lines += [""] + _profiles_section(plan)
    if plan.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in plan.notes]
    return "\n".join(lines) + "\n"
