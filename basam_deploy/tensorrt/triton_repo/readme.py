"""The README.md at the repository's root: what each model does, how to serve and call it."""

from ..._version import __version__
from ...artifacts import MANIFEST
from .model import TENSORRT, TOOL, RepoPlan, Tensor
from .sources import profile_lines


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
            lines += ["", "```"] + [line[2:] for line in profile_lines(graph)] + ["```", ""]
        lines.append(
            f"Plugins: {encoder.name} {dict(encoder.parameters)['basam_plugin']}; "
            f"{decoder.name} {dict(decoder.parameters)['basam_plugin']}."
        )
    if plan.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in plan.notes]
    return "\n".join(lines) + "\n"
