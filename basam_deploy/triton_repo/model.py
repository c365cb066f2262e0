"""The data of a Triton repository plan: the options, the graphs read from the source folder
(``GraphSource`` with its ``Tensor``s), and the models decided from them (``ModelPlan``, ``Step``,
``RepoPlan``). Plain frozen dataclasses; reading, deciding, rendering and writing live beside."""

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Tuple, Union

from ..tensorrt.manifest import EngineManifest
from .provenance import Provenance

TOOL = "basam-trt triton-repo"
TENSORRT, ONNX = "tensorrt", "onnx"
BACKENDS = ("auto", TENSORRT, ONNX)
KINDS = ("gpu", "cpu")

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
    engine_manifest: Optional[EngineManifest] = None  # engines: the manifest beside the engine


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


@dataclass(frozen=True)
class RepoPlan:
    source: Path
    backend: str  # tensorrt | onnx
    models: Tuple[ModelPlan, ...]  # encoder, decoder, ensemble
    graphs: Tuple[GraphSource, ...]  # encoder, decoder
    provenance: Provenance  # what the source folder's manifests say
    options: TritonRepoOptions = TritonRepoOptions()
    notes: Tuple[str, ...] = ()

    def describe(self) -> str:
        """The plan as ``basam-trt triton-repo`` prints it."""
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
            trt = self.provenance.tensorrt
            return f"TensorRT engines {files}; built with TensorRT {trt}"
        return f"ONNX export {files}"
