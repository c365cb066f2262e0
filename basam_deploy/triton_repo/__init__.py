"""A Triton Inference Server model repository from basam-trt engines or a basam-export folder.

``plan_triton_repo(SOURCE, TritonRepoOptions(...))`` reads an engine folder (``encoder.engine`` +
``decoder.engine`` with their ``ENGINE.json`` manifests, written by ``basam-trt build``) or an export
folder (``encoder.onnx`` + ``decoder.onnx`` + ``manifest.json``, written by ``basam-export``) and
decides every model configuration; ``write_triton_repo(plan, REPO)`` writes, atomically::

    REPO/basam_image_encoder/config.pbtxt + 1/model.plan    (or 1/model.onnx; a folder with external data)
    REPO/basam_mask_decoder/config.pbtxt + 1/model.plan
    REPO/basam_sam/config.pbtxt + 1/                  ensemble: encoder -> decoder
    REPO/README.md, REPO/manifest.json                what made it, checksums, versions

Decisions (the docstrings of the functions in ``plan.py`` say why):
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

Layout (data flows one way: sources -> plan -> config, readme, manifest -> write):
- ``model.py``: the data (``TritonRepoOptions``, ``Tensor``, ``GraphSource``, ``Step``,
  ``ModelPlan``, ``RepoPlan``) and the names shared by every layer;
- ``provenance.py``: the source folder's facts from its manifests (``ExportProvenance``,
  ``EngineProvenance``), decided from and recorded in the repository's manifest;
- ``sources.py``: an engine or export folder read into two ``GraphSource``s and its provenance
  (``read_source``);
- ``checks.py``: Triton's ``ModelConfig`` schema (``parse_model_config``) and ensemble rules
  (``check_ensemble``);
- ``plan.py``: every model configuration decided (``plan_triton_repo``);
- ``config.py``: a model's ``config.pbtxt`` text (``model_config_text``);
- ``readme.py``: the repository's README.md;
- ``manifest.py``: the repository's ``manifest.json`` as data (``RepoManifest``, ``repo_manifest``);
- ``write.py``: the repository written atomically with its manifest (``write_triton_repo``).
"""

from .checks import check_ensemble, parse_model_config
from .config import model_config_text
from .manifest import RepoManifest
from .model import TOOL, RepoPlan, TritonRepoOptions
from .plan import DECODER_MODEL, ENCODER_MODEL, ENSEMBLE_MODEL, REPO_MODELS, plan_triton_repo
from .sources import read_source
from .write import write_triton_repo

__all__ = [
    "ENCODER_MODEL",
    "DECODER_MODEL",
    "ENSEMBLE_MODEL",
    "REPO_MODELS",
    "TOOL",
    "RepoManifest",
    "RepoPlan",
    "TritonRepoOptions",
    "check_ensemble",
    "model_config_text",
    "parse_model_config",
    "plan_triton_repo",
    "read_source",
    "write_triton_repo",
]
