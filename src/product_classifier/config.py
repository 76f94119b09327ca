"""Typed experiment configuration, loaded from YAML under ``configs/``.

The YAML mirrors these classes one to one; unknown keys are errors, so a typo fails at load time
with the offending path instead of being silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from product_classifier.preprocessing import FASHION_MNIST_SPEC, InputSpec


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class DataConfig(StrictModel):
    """Where the pictures come from: Fashion-MNIST, a catalog folder, or both merged.

    ``folder`` is one sub-folder per category (any names), or ``train/`` + ``test/`` (and
    optionally ``val/``) each holding those sub-folders when you split it yourself, e.g. to
    hold out pictures from other sources. ``fashion_mnist`` defaults to "only when there is no
    folder"; set it to true next to a folder to merge the two (same-named categories merge).
    """

    data_dir: Path | None = None  # Fashion-MNIST's files (default: the documented search)
    folder: Path | None = None
    fashion_mnist: bool | None = None
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    # Folders without their own test/ part: the share held out for `evaluate` and the card.
    test_fraction: float = Field(0.15, gt=0.0, lt=1.0)
    # A category with fewer usable pictures stops the run (its name and count are reported).
    min_images_per_class: int = Field(10, ge=2)
    split_seed: int = 42
    # Fraction of the training split actually used; search and smoke runs shrink it.
    subset_fraction: float = Field(1.0, gt=0.0, le=1.0)

    @property
    def use_fashion_mnist(self) -> bool:
        return self.folder is None if self.fashion_mnist is None else self.fashion_mnist

    @model_validator(mode="after")
    def _has_data(self) -> DataConfig:
        if not self.use_fashion_mnist and self.folder is None:
            raise ValueError("data: fashion_mnist is false and no folder is set: no pictures")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("data: val_fraction + test_fraction leave under 10% to train on")
        return self


class InputConfig(StrictModel):
    """The model's input spec (preprocessing.InputSpec): recorded in the checkpoint and ONNX."""

    size: int = 28
    channels: int = 1
    canonicalization: Literal["fashion-mnist", "letterbox"] = "fashion-mnist"

    @model_validator(mode="after")
    def _valid_spec(self) -> InputConfig:
        self.spec()  # InputSpecError is a ValueError: pydantic reports it with the field path
        return self

    def spec(self) -> InputSpec:
        return InputSpec(self.size, self.channels, self.canonicalization)


class ModelConfig(StrictModel):
    # A registered architecture (models/registry.py), or "timm/<name>" when timm is installed.
    name: str = "baseline_cnn"
    params: dict[str, Any] = Field(default_factory=dict)
    # Transfer learning: a weights file (state dict, .safetensors or one of our checkpoints)
    # loaded where the shapes match; the classifier is new. For "timm/<name>": true downloads
    # the library's pretrained weights, a path loads that file through timm's own loader.
    pretrained: Path | bool | None = None


class OptimizerConfig(StrictModel):
    name: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True


class SchedulerConfig(StrictModel):
    name: Literal["onecycle", "cosine", "none"] = "onecycle"
    warmup_fraction: float = Field(0.15, ge=0, lt=1)


class AugmentConfig(StrictModel):
    hflip: bool = True
    crop_padding: int = Field(2, ge=0)
    rotation_degrees: float = Field(0.0, ge=0)
    scale: float = Field(0.0, ge=0, lt=0.5)  # random zoom, +- this fraction
    brightness: float = Field(0.0, ge=0, lt=1)
    random_erasing: float = Field(0.0, ge=0, le=1)
    # RGB inputs only: probability of a grey copy, and per-channel colour scaling.
    grayscale: float = Field(0.0, ge=0, le=1)
    channel_jitter: float = Field(0.0, ge=0, lt=1)
    # Grey, bright-on-dark inputs only (Fashion-MNIST): probability of redrawing a photo as a
    # silhouette, outline, line drawing or shaded clip art (augment.random_style).
    style: float = Field(0.0, ge=0, le=1)
    # Same inputs: probability of redrawing one as an icon looks after canonicalize: a simpler
    # shape, a bright contour around a grey inside (augment.random_icon).
    icon: float = Field(0.0, ge=0, le=1)
    gamma: float = Field(0.0, ge=0)  # random gamma in [1/(1+g), 1+g]
    blur: float = Field(0.0, ge=0, le=1)  # probability of a light blur


class DistillConfig(StrictModel):
    """Knowledge distillation (Hinton et al. 2015) from a trained teacher checkpoint."""

    teacher_checkpoint: Path
    # The teacher is loaded as plain data (torch.load weights_only=True). true also allows
    # pickled Python objects in it, which can run code: only for a file you trust.
    trust_checkpoint: bool = False
    alpha: float = Field(0.7, ge=0, le=1)  # weight of the teacher's soft targets
    temperature: float = Field(4.0, gt=0)


class OutlierExposureConfig(StrictModel):
    """Outlier exposure (Hendrycks et al. 2019) with synthetic negatives made from the batch:
    shuffled patches, round shapes, scribbles and noise (augment.synthetic_outliers) are
    trained towards a uniform prediction, so pictures of none of the categories get a low
    confidence, which the review policy reads."""

    fraction: float = Field(0.25, gt=0, le=1)  # negatives per batch, as a share of its size
    weight: float = Field(0.5, gt=0)  # the uniform-target loss's weight


class TrainConfig(StrictModel):
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1024, ge=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    ema_decay: float | None = Field(None, gt=0, lt=1)
    early_stopping_patience: int | None = Field(5, ge=1)
    # Small datasets: make every epoch at least this many steps (several passes of the data).
    min_steps_per_epoch: int | None = Field(None, ge=1)
    # Hard stop for the whole run, checked between epochs (the 15-minute CPU budget).
    max_minutes: float | None = Field(None, gt=0)
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = Field(None, ge=1)
    output_dir: Path = Path("runs")
    run_name: str | None = None
    # Export with horizontal-flip test-time augmentation averaged inside the graph.
    tta_flip: bool = False
    distill: DistillConfig | None = None
    outlier_exposure: OutlierExposureConfig | None = None


class ExperimentConfig(StrictModel):
    name: str = "baseline"
    data: DataConfig = Field(default_factory=DataConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _outliers_fit_the_input(self) -> ExperimentConfig:
        # The synthetic negatives are grey, bright-on-dark Fashion-MNIST-style pictures; on a
        # letterboxed or colour catalog they would teach the model nothing about its pictures.
        if self.train.outlier_exposure is not None and self.input.spec() != FASHION_MNIST_SPEC:
            raise ValueError(
                "train.outlier_exposure makes grey 28x28 bright-on-dark negatives and needs the "
                "Fashion-MNIST input (input.size 28, channels 1, canonicalization fashion-mnist); "
                f"this config has {self.input.spec().to_dict()}: remove train.outlier_exposure"
            )
        return self

    @model_validator(mode="after")
    def _model_is_registered(self) -> ExperimentConfig:
        # Imported lazily: the registry imports torch, and config must load without it.
        from product_classifier.models.registry import TIMM_PREFIX, list_models

        if self.model.pretrained is True and not self.model.name.startswith(TIMM_PREFIX):
            raise ValueError(
                "model.pretrained: true downloads a library's weights and needs a "
                f"'{TIMM_PREFIX}<name>' model; for {self.model.name!r} give a weights file"
            )
        if self.model.name.startswith(TIMM_PREFIX):
            return self
        if self.model.name not in list_models():
            raise ValueError(
                f"unknown model {self.model.name!r}; registered: {', '.join(list_models())}"
            )
        return self


class ConfigError(ValueError):
    """A config file is missing, not YAML, or does not match the schema."""


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
    node[leaf] = value


def load_experiment_config(
    path: str | Path, overrides: list[str] | dict[str, Any] | None = None
) -> ExperimentConfig:
    """Load a YAML experiment config, applying ``key.sub=value`` overrides (values are YAML)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must contain a mapping at the top level")
    items: list[tuple[str, Any]]
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for item in overrides or []:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like key.sub=value")
            key, value = item.split("=", 1)
            items.append((key.strip(), yaml.safe_load(value)))
    for key, value in items:
        _set_dotted(raw, key, value)
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid config\n{exc}") from exc
