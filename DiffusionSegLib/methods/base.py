"""What every segmentation method provides: metadata the GUI/CLI are built from, and a
`segment` call on batches of preprocessed 2D slices.

Method modules must import without torch (the Slicer panel reads `info` in its own light
process); they import their model code inside `load`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from ..contract.errors import InvalidParameter, ModelLoadFailed, describe

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..contract.events import JobContext
    from ..decision.selection import SelectionParams, SliceScores

PARAM_TYPES = ("int", "float", "bool", "choice", "str")


@dataclass(frozen=True)
class Param:
    """One tunable, described well enough for a GUI widget and a CLI flag."""

    name: str
    type: str
    default: Any
    help: str
    label: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    advanced: bool = True

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(f"parameter {self.name}: unknown type {self.type!r}")
        if self.type == "choice" and self.default not in self.choices:
            raise ValueError(f"parameter {self.name}: default {self.default!r} not in choices")

    def coerce(self, value: Any) -> Any:
        """Convert a value from JSON or the command line, or explain why it is not allowed."""
        try:
            if self.type == "bool":
                value = _to_bool(value)
            elif isinstance(value, bool) and self.type in ("int", "float"):
                raise ValueError   # JSON true is not the number 1: a request that says so is a mistake
            elif self.type == "int":
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                value = int(value)
            elif self.type == "float":
                value = float(value)
                if not math.isfinite(value):  # NaN passes every range check below
                    raise ValueError
            else:
                value = str(value)
        except (TypeError, ValueError, OverflowError):
            kind = " (true/false is not a number)" if isinstance(value, bool) else ""
            raise InvalidParameter(
                f"Parameter '{self.name}' must be a finite {self.type}, got {describe(value)}{kind}.") from None
        if self.type == "choice" and value not in self.choices:
            raise InvalidParameter(
                f"Parameter '{self.name}' must be one of {', '.join(self.choices)}; got {describe(value)}.")
        if self.type in ("int", "float"):
            if self.minimum is not None and value < self.minimum or \
                    self.maximum is not None and value > self.maximum:
                raise InvalidParameter(
                    f"Parameter '{self.name}' must lie in [{self.minimum}, {self.maximum}]; got {value}.")
        return value

    def to_dict(self) -> dict:
        data = asdict(self)
        data["choices"] = list(self.choices)
        data["label"] = self.label or self.name.replace("_", " ").capitalize()
        return data


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


@dataclass(frozen=True)
class MethodInfo:
    """Metadata that the Slicer panel and the CLI build themselves from."""

    name: str
    label: str
    description: str
    prompt: str  # "required", "optional" or "none"
    needs_checkpoint: bool
    default_model: str | None
    params: tuple[Param, ...] = ()
    prompt_examples: tuple[str, ...] = ()
    reference: str = ""
    trainable: bool = False
    # Whether the prompt changes the result (not just the segment's name): only such methods
    # accept several prompts in one job.
    prompt_conditioned: bool = True
    # Bundle maps that are probabilities in [0, 1]: with a DICOM SEG output they also go out as a
    # fractional (probability) SEG beside it, which a PACS viewer shows.
    probability_maps: tuple[str, ...] = ()

    def param(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        raise InvalidParameter(
            f"Method '{self.name}' has no parameter '{name}'. "
            f"Its parameters are: {', '.join(p.name for p in self.params) or 'none'}.")

    def resolve_params(self, given: dict[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with the given values, each validated."""
        values = {p.name: p.default for p in self.params}
        for name, value in (given or {}).items():
            values[name] = self.param(name).coerce(value)
        return values

    def to_dict(self) -> dict:
        return {
            "name": self.name, "label": self.label, "description": self.description,
            "prompt": self.prompt, "needs_checkpoint": self.needs_checkpoint,
            "default_model": self.default_model, "prompt_examples": list(self.prompt_examples),
            "reference": self.reference, "trainable": self.trainable,
            "prompt_conditioned": self.prompt_conditioned, "probability_maps": list(self.probability_maps),
            "params": [p.to_dict() for p in self.params],
        }


MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 2048


def check_image_size(size: Any, source: str, multiple: int = 1) -> int:
    """The model side a checkpoint asks for, bounded: a crafted config must not make the job
    allocate an arbitrarily large canvas per slice (latent models also need a multiple of 8)."""
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE \
            or size % multiple:
        rule = f"multiples of {multiple} " if multiple > 1 else ""
        raise ModelLoadFailed(f"{source} asks for an image size of {describe(size, 30)} pixels; supported are "
                              f"{rule}from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}.",
                              hint="The model's configuration is damaged or was not made for DiffusionSeg.")
    return size


@dataclass
class SliceSegmentation:
    """A method's answer for one batch, on the model grid (B, S, S).

    labels: 0 is background; other values are segments named by `Method.segment_name`.
    probabilities: optional foreground probability in [0, 1] (DiffuGTS, SDSeg), for in-process
    callers; the CLI writes labels only (`Letterbox.inverse_maps` maps it back to the slice grid).
    segment_map: optional map of every unsupervised segment (ADZUS), for oracle evaluation.
    consistent_ids: False when label values are arbitrary per slice and the volume pipeline must
    match them across slices.
    scores, selection: when given, `segment_map` holds the proposals (ids local to each slice),
    `scores[b]` their evidence and `labels` only each slice's own decision; the pipeline then
    decides the whole volume at once with `selection.select_labels` (absent targets, the
    volume-level step), the same call `reselect` makes on a saved bundle.

    The evidence a method computed on the way (the result bundle, docs/evidence.md), each
    optional and collected only when a job asks for it (the pipeline streams it onto the
    input grid batch by batch):
    evidence: (B, S, S) float, why a pixel was chosen (ADZUS absolute prompt attention, which the
    bundle divides by the volume's reference as the vote does; SDSeg mean foreground
    probability over the x_T seeds; DiffuGTS fused residual R).
    uncertainty: (B, S, S) float (SDSeg std over seeds; ADZUS's vote margin is computed by the
    bundle from the scores).
    anomaly: (B, S, S) float, DiffuGTS's anomaly (AOVA) map.
    pseudo_healthy: (B, 3, S, S) in [0, 1] model-input units, DiffuGTS's repainted image.
    """

    labels: "torch.Tensor"
    probabilities: "torch.Tensor | None" = None
    segment_map: "torch.Tensor | None" = None
    consistent_ids: bool = True
    scores: "list[SliceScores] | None" = None
    selection: "SelectionParams | None" = None
    evidence: "torch.Tensor | None" = None
    uncertainty: "torch.Tensor | None" = None
    anomaly: "torch.Tensor | None" = None
    pseudo_healthy: "torch.Tensor | None" = None


@dataclass
class Method(ABC):
    """A segmentation method. Construct cheaply; `load` does the heavy work."""

    info: ClassVar[MethodInfo]

    model: str | None
    params: dict[str, Any]
    prompt: str | None
    context: "JobContext"
    image_size: int = field(default=0, init=False)

    def validate(self) -> None:
        """Reject prompt/parameter combinations that cannot work, before any file or model is
        read (called by the job right after construction). Default: nothing to check."""

    @abstractmethod
    def load(self) -> None:
        """Load weights onto `context.device` and set `image_size` (model input side, px)."""

    @abstractmethod
    def segment(self, images: "torch.Tensor", valid: "torch.Tensor",
                indices: Sequence[int] | None = None) -> SliceSegmentation:
        """Segment a batch.

        images: (B, 3, S, S) float32 in [0, 1], S = `image_size`, on the CPU.
        valid: (B, S, S) bool, True on real pixels, False on letterbox padding.
        indices: each image's slice index in the volume (None: 0..B-1). Random draws are seeded
        from (job seed, slice index) so a slice's result does not depend on the batch it is in.
        """

    @classmethod
    def add_train_arguments(cls, parser: Any) -> None:
        """Add this method's `train <method>` options to an argparse parser (trainable methods)."""
        raise NotImplementedError(f"{cls.info.name} cannot be trained")

    @classmethod
    def train(cls, args: Any, context: "JobContext") -> dict:
        """Run training from parsed arguments; returns a summary (metrics, checkpoint path)."""
        raise NotImplementedError(f"{cls.info.name} cannot be trained")

    def segment_name(self, label: int) -> str:
        base = (self.prompt or "").strip() or self.info.label
        return base if label == 1 else f"{base} {label}"
