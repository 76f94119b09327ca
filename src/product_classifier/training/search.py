"""Hyper-parameter search: Optuna studies over a search space declared in YAML, every trial
tracked in MLflow.

``configs/search.yaml`` (schema: :class:`SearchConfig`) names a base experiment config, a
budget and stages. Each stage is one Optuna study in one storage (SQLite by default; any
SQLAlchemy URL), created with ``load_if_exists=True``, so running a stage again resumes it: a
grid continues with its unvisited points, a TPE stage until it has ``trials`` finished trials.
Trials killed mid-way (no clean exit) are detected by Optuna's heartbeat and retried once.

A trial = base config + budget + inherited best params of an earlier stage + the stage's
``fixed`` overrides + the sampled values, trained by :func:`trainer.train` with a callback that
logs each epoch to MLflow and reports validation accuracy to a MedianPruner. Pruning raises
``StopTraining`` (the trainer's graceful stop, so the checkpoint and history survive) and the
objective then raises ``optuna.TrialPruned``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from product_classifier.config import (
    ConfigError,
    ExperimentConfig,
    StrictModel,
    load_experiment_config,
)
from product_classifier.training.tracking import DEFAULT_TRACKING_URI, flatten, provenance_tags

if TYPE_CHECKING:
    import optuna

    from product_classifier.training.trainer import PreparedData

DEFAULT_STORAGE = "sqlite:///runs/optuna.db"
Scalar = bool | int | float | str | None
Log = Callable[[str], None]


class ParamSpec(StrictModel):
    """One searched hyper-parameter. Exactly one of:

    - ``choices``: categorical values for the dotted config key it is named after;
    - ``presets``: named bundles of overrides (e.g. an architecture with its params);
    - ``low``/``high`` (+ ``log``, ``integer``): a range, for TPE or random sampling.
    """

    choices: list[Scalar] | None = None
    presets: dict[str, dict[str, Any]] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> ParamSpec:
        is_range = self.low is not None or self.high is not None
        if sum([self.choices is not None, self.presets is not None, is_range]) != 1:
            raise ValueError("give exactly one of: choices, presets, low/high")
        if self.choices is not None and not self.choices:
            raise ValueError("choices must not be empty")
        if self.presets is not None and not self.presets:
            raise ValueError("presets must not be empty")
        if is_range:
            if self.low is None or self.high is None or self.low >= self.high:
                raise ValueError("a range needs low < high")
            if self.log and self.low <= 0:
                raise ValueError("a log range needs low > 0")
        return self

    @property
    def categorical(self) -> bool:
        return self.choices is not None or self.presets is not None

    def grid_values(self) -> list[Scalar]:
        if self.presets is not None:
            return list(self.presets)
        if self.choices is None:
            raise ValueError("a range has no grid values")
        return list(self.choices)

    def suggest(self, trial: optuna.Trial, name: str) -> Scalar:
        if self.categorical:
            return trial.suggest_categorical(name, self.grid_values())
        assert self.low is not None and self.high is not None
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def overrides(self, name: str, value: Scalar) -> dict[str, Any]:
        if self.presets is not None:
            return dict(self.presets[str(value)])
        return {name: value}


class BudgetConfig(StrictModel):
    epochs: int = Field(2, ge=1)
    # Fractions of the training and validation splits (stratified): the search runs on a
    # subset, but selection needs enough validation images per class to mean anything.
    subset_fraction: float = Field(0.1, gt=0, le=1)
    val_subset_fraction: float = Field(0.25, gt=0, le=1)
    # Finished (complete + pruned) trials the study should hold; None = the whole grid.
    trials: int | None = Field(None, ge=1)
    # Optuna stops starting new trials after this; None = no limit.
    timeout_minutes: float | None = Field(10.0, gt=0)
    # One thread per trial: the search shares the machine's cores with other work.
    num_threads: int | None = Field(1, ge=1)


class PrunerConfig(StrictModel):
    enabled: bool = True
    n_startup_trials: int = Field(5, ge=0)  # never prune before this many trials finished
    n_warmup_steps: int = Field(0, ge=0)  # epochs before a trial can be pruned
    interval_steps: int = Field(1, ge=1)


class HeatmapSpec(StrictModel):
    """How ``search report`` draws a grid stage: value = best val accuracy."""

    x: str
    y: str
    facet: str | None = None


class StageConfig(StrictModel):
    description: str = ""
    sampler: Literal["grid", "tpe", "random"] = "tpe"
    space: dict[str, ParamSpec] = Field(min_length=1)
    fixed: dict[str, Any] = Field(default_factory=dict)
    inherit_best_from: str | None = None
    budget: dict[str, Any] = Field(default_factory=dict)  # overrides of the global budget
    heatmap: HeatmapSpec | None = None

    @model_validator(mode="after")
    def _grid_is_categorical(self) -> StageConfig:
        if self.sampler == "grid":
            ranges = [name for name, spec in self.space.items() if not spec.categorical]
            if ranges:
                raise ValueError(f"a grid needs choices or presets, not ranges: {ranges}")
        return self

    def grid_size(self) -> int:
        size = 1
        for spec in self.space.values():
            size *= len(spec.grid_values())
        return size


class SearchConfig(StrictModel):
    base_config: Path
    study_prefix: str = "product-classifier"
    storage: str = DEFAULT_STORAGE
    tracking_uri: str = DEFAULT_TRACKING_URI
    experiment: str = "product-classifier-search"
    output_dir: Path = Path("runs/search")
    seed: int = 0
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    stages: dict[str, StageConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> SearchConfig:
        names = list(self.stages)
        for index, (name, stage) in enumerate(self.stages.items()):
            parent = stage.inherit_best_from
            if parent is not None and parent not in names[:index]:
                raise ValueError(f"stage {name!r}: inherit_best_from must name an earlier stage")
            budget = self.stage_budget(name)  # validates the stage's budget overrides
            if stage.sampler != "grid" and budget.trials is None and budget.timeout_minutes is None:
                raise ValueError(f"stage {name!r}: a {stage.sampler} stage needs trials or timeout")
        return self

    def stage_budget(self, stage: str, **overrides: Any) -> BudgetConfig:
        merged = {**self.budget.model_dump(), **self.stages[stage].budget}
        merged.update({k: v for k, v in overrides.items() if v is not None})
        return BudgetConfig.model_validate(merged)

    def study_name(self, stage: str) -> str:
        return f"{self.study_prefix}-{stage}"


def load_search_config(path: str | Path) -> SearchConfig:
    """Load and check a search YAML, including that every searched value makes a valid config."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        cfg = SearchConfig.model_validate(raw)
    except FileNotFoundError as exc:
        raise ConfigError(f"search config not found: {path}") from exc
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: invalid search config\n{exc}") from exc
    for name, stage in cfg.stages.items():
        budget = cfg.stage_budget(name)
        for param, spec in stage.space.items():
            values = spec.grid_values() if spec.categorical else [spec.low, spec.high]
            for value in values:
                if spec.integer and value is not None:
                    value = int(value)
                overrides = {
                    **_budget_overrides(budget),
                    **stage.fixed,
                    **spec.overrides(param, value),
                }
                try:
                    load_experiment_config(cfg.base_config, overrides)
                except ConfigError as exc:
                    raise ConfigError(f"{path}: stage {name!r}, {param}={value!r}: {exc}") from exc
    return cfg


def _budget_overrides(budget: BudgetConfig) -> dict[str, Any]:
    return {
        "train.epochs": budget.epochs,
        "data.subset_fraction": budget.subset_fraction,
        "train.num_threads": budget.num_threads,
    }


@dataclass
class StageOutcome:
    stage: str
    study_name: str
    trials_run_now: int
    complete: int
    pruned: int
    failed: int
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]
    best_onnx: Path | None
    parent_run_id: str


def search_data(config: ExperimentConfig, budget: BudgetConfig) -> PreparedData:
    """Stratified subsets of the training and validation splits, as the trainer expects them.

    The training subset is exactly what ``prepare_data`` gives for ``data.subset_fraction``; the
    validation subset has its own fraction (``budget.val_subset_fraction``).
    """
    import torch

    from product_classifier.data.split import stratified_subset
    from product_classifier.training.trainer import prepare_data

    full = prepare_data(
        config.model_copy(update={"data": config.data.model_copy(update={"subset_fraction": 1.0})})
    )
    seed = config.data.split_seed

    def subset(x: torch.Tensor, y: torch.Tensor, fraction: float) -> tuple[Any, Any]:
        if fraction >= 1.0:
            return x, y
        keep = torch.from_numpy(stratified_subset(y.numpy(), fraction, seed))
        return x[keep], y[keep]

    train_x, train_y = subset(full.train_x, full.train_y, budget.subset_fraction)
    val_x, val_y = subset(full.val_x, full.val_y, budget.val_subset_fraction)
    return dataclasses.replace(full, train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y)


def describe_settings(config: ExperimentConfig, exclude: set[str]) -> str:
    """One line of the training settings a stage does not search, for the report."""
    flat = flatten(config.model_dump(mode="json"))
    keys = [
        "model.name",
        "optimizer.name",
        "optimizer.lr",
        "optimizer.weight_decay",
        "train.batch_size",
        "scheduler.name",
        "train.label_smoothing",
        "train.ema_decay",
        "augment.hflip",
        "augment.crop_padding",
        "augment.rotation_degrees",
        "augment.brightness",
        "augment.random_erasing",
    ]
    return ", ".join(f"{k}={flat.get(k)}" for k in keys if k not in exclude)


def host_description() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # The quota-capped count, not the host's: a trial's speed depends on what it may use.
    from product_classifier.resources import available_cpus

    return f"{model}, {os.cpu_count()} logical CPUs ({available_cpus():g} usable)"


def _storage(url: str) -> optuna.storages.BaseStorage:
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        if str(db) != ":memory:":
            db.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # A trial whose process died without a clean exit stops beating: after the grace period
        # Optuna marks it failed and re-queues the same parameters once.
        return RDBStorage(
            url,
            heartbeat_interval=30,
            grace_period=120,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
        )


def _sampler(cfg: SearchConfig, stage: StageConfig) -> optuna.samplers.BaseSampler:
    import optuna

    if stage.sampler == "grid":
        space = {name: spec.grid_values() for name, spec in stage.space.items()}
        return optuna.samplers.GridSampler(space, seed=cfg.seed)
    if stage.sampler == "random":
        return optuna.samplers.RandomSampler(seed=cfg.seed)
    return optuna.samplers.TPESampler(seed=cfg.seed)


def _pruner(cfg: PrunerConfig) -> optuna.pruners.BasePruner:
    import optuna

    if not cfg.enabled:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=cfg.n_startup_trials,
        n_warmup_steps=cfg.n_warmup_steps,
        interval_steps=cfg.interval_steps,
    )


def load_stage_study(cfg: SearchConfig, stage: str, storage: str | None = None) -> optuna.Study:
    import optuna

    return optuna.load_study(study_name=cfg.study_name(stage), storage=storage or cfg.storage)


def inherited_overrides(cfg: SearchConfig, stage: str, storage: str) -> dict[str, Any]:
    """The best trial's searched overrides of the stage this one inherits from."""
    parent = cfg.stages[stage].inherit_best_from
    if parent is None:
        return {}
    try:
        study = load_stage_study(cfg, parent, storage)
        best = study.best_trial
    except (KeyError, ValueError) as exc:
        raise RuntimeError(
            f"stage {stage!r} inherits from {parent!r}, which has no completed trial yet: "
            f"run `product-classifier search run --stage {parent}` first"
        ) from exc
    return dict(best.user_attrs.get("searched_overrides", {}))


def run_stage(
    cfg: SearchConfig,
    stage: str,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    epochs: int | None = None,
    subset_fraction: float | None = None,
    trials: int | None = None,
    timeout_minutes: float | None = None,
    progress: bool = False,
    log: Log = print,
) -> StageOutcome:
    """Run (or resume) one stage; returns what its study holds afterwards."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from product_classifier.training.tracking import Tracker

    if stage not in cfg.stages:
        raise KeyError(f"unknown stage {stage!r}; stages: {', '.join(cfg.stages)}")
    spec = cfg.stages[stage]
    storage = storage or cfg.storage
    budget = cfg.stage_budget(
        stage,
        epochs=epochs,
        subset_fraction=subset_fraction,
        trials=trials,
        timeout_minutes=timeout_minutes,
    )
    total = budget.trials or (spec.grid_size() if spec.sampler == "grid" else None)
    study_name = cfg.study_name(stage)
    study = optuna.create_study(
        study_name=study_name,
        storage=_storage(storage),
        sampler=_sampler(cfg, spec),
        pruner=_pruner(cfg.pruner),
        direction="maximize",
        load_if_exists=True,
    )
    study.set_user_attr("stage", stage)
    study.set_user_attr("stage_config", spec.model_dump(mode="json"))
    study.set_user_attr("base_config", str(cfg.base_config))
    study.set_user_attr("budget", budget.model_dump(mode="json"))

    inherited = inherited_overrides(cfg, stage, storage)
    study.set_user_attr("inherited", inherited)
    base = load_experiment_config(
        cfg.base_config, {**_budget_overrides(budget), **inherited, **spec.fixed}
    )
    data = search_data(base, budget)
    searched_keys = set(spec.space).union(
        *(overrides for p in spec.space.values() for overrides in (p.presets or {}).values())
    )
    study.set_user_attr("base_settings", describe_settings(base, exclude=searched_keys))
    tracker = Tracker(tracking_uri or cfg.tracking_uri, cfg.experiment)
    parent_run_id = study.user_attrs.get("mlflow_parent_run_id")
    if not (isinstance(parent_run_id, str) and tracker.run_exists(parent_run_id)):
        parent_run_id = tracker.start_run(
            study_name,
            tags={
                **provenance_tags(data.checksums),
                "optuna.study": study_name,
                "optuna.storage": storage,
                "search.stage": stage,
            },
        )
        tracker.log_params(
            parent_run_id, {"sampler": spec.sampler, "description": spec.description}
        )
        study.set_user_attr("mlflow_parent_run_id", parent_run_id)
    log(
        f"[{stage}] study {study_name} in {storage}: {spec.sampler} over "
        f"{', '.join(spec.space)}; {budget.epochs} epochs, train {len(data.train_x)} / "
        f"val {len(data.val_x)} images; target {total or 'unbounded'} trials, timeout "
        f"{budget.timeout_minutes} min; MLflow {tracker.tracking_uri} run {parent_run_id}"
    )
    objective = _Objective(
        cfg=cfg,
        stage=stage,
        base_overrides={**_budget_overrides(budget), **inherited, **spec.fixed},
        data=data,
        tracker=tracker,
        parent_run_id=parent_run_id,
        study_name=study_name,
        val_subset_fraction=budget.val_subset_fraction,
        progress=progress,
        log=log,
    )
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    done_before = len(study.get_trials(deepcopy=False, states=finished))
    before = len(study.trials)
    if total is None or done_before < total:
        callbacks = [MaxTrialsCallback(total, states=finished)] if total is not None else []
        study.optimize(
            objective,
            timeout=budget.timeout_minutes * 60 if budget.timeout_minutes else None,
            callbacks=callbacks,
            # A config that fails (e.g. diverges into an error) is a FAIL trial, not the end of
            # the stage; bugs still show up in the log and the trial's MLflow run.
            catch=(RuntimeError, ValueError),
            gc_after_trial=True,
        )
    else:
        log(f"[{stage}] already has {done_before} finished trials (target {total}): nothing to do")
    outcome = _finish_stage(study, stage, tracker, parent_run_id, log)
    outcome.trials_run_now = len(study.trials) - before
    return outcome


class _Objective:
    """One trial: config from the sampled values, train, evaluate, log."""

    def __init__(
        self,
        *,
        cfg: SearchConfig,
        stage: str,
        base_overrides: dict[str, Any],
        data: PreparedData,
        tracker: Any,
        parent_run_id: str,
        study_name: str,
        val_subset_fraction: float,
        progress: bool,
        log: Log,
    ) -> None:
        self.cfg, self.stage, self.base_overrides = cfg, stage, base_overrides
        self.data, self.tracker, self.parent_run_id = data, tracker, parent_run_id
        self.study_name, self.val_subset_fraction = study_name, val_subset_fraction
        self.progress, self.log = progress, log
        self.host = host_description()

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        from product_classifier.training.trainer import StopTraining, train

        spec = self.cfg.stages[self.stage]
        searched: dict[str, Any] = {}
        for name, param in spec.space.items():
            searched.update(param.overrides(name, param.suggest(trial, name)))
        config = load_experiment_config(self.cfg.base_config, {**self.base_overrides, **searched})
        run_dir = self.cfg.output_dir / self.study_name / f"trial-{trial.number:04d}"
        run_id = self.tracker.start_run(
            f"{self.stage}-{trial.number:03d}",
            parent_run_id=self.parent_run_id,
            tags={
                **provenance_tags(self.data.checksums),
                "optuna.study": self.study_name,
                "optuna.trial": trial.number,
                "search.stage": self.stage,
                "host": self.host,
            },
        )
        for key, value in {
            "searched_overrides": searched,
            "mlflow_run_id": run_id,
            "run_dir": str(run_dir),
            "host": self.host,
            "train_images": len(self.data.train_x),
            "val_images": len(self.data.val_x),
        }.items():
            trial.set_user_attr(key, value)
        self.tracker.log_params(
            run_id,
            {
                **flatten(config.model_dump(mode="json")),
                "search.stage": self.stage,
                "search.val_subset_fraction": self.val_subset_fraction,
                **{f"search.{k}": v for k, v in trial.params.items()},
            },
        )
        cpu_marks = [time.process_time()]
        pruned_at: list[int] = []

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            cpu_marks.append(time.process_time())
            logged = {k: v for k, v in metrics.items() if k != "epoch"}
            logged["cpu_seconds"] = cpu_marks[-1] - cpu_marks[-2]
            self.tracker.log_metrics(run_id, logged, step=epoch)
            trial.report(metrics["val_accuracy"], step=epoch)
            # After the last epoch there is nothing left to save: the trial is complete.
            if epoch < config.train.epochs and trial.should_prune():
                pruned_at.append(epoch)
                raise StopTraining  # graceful: the trainer keeps the checkpoint and history

        params_text = ", ".join(f"{k}={v}" for k, v in trial.params.items())
        self.log(f"[{self.stage}] trial {trial.number}: {params_text}")
        try:
            result = train(
                config,
                run_dir=run_dir,
                callbacks=[on_epoch],
                progress=self.progress,
                data=self.data,
            )
            summary = self._evaluate(trial, run_id, result.best_checkpoint, run_dir)
            cpu_per_epoch = (cpu_marks[-1] - cpu_marks[0]) / max(1, len(result.history))
            attrs = {
                **summary,
                "parameters": result.parameters,
                "epochs_run": len(result.history),
                "best_epoch": result.best_epoch,
                "seconds_per_epoch": sum(h["epoch_seconds"] for h in result.history)
                / max(1, len(result.history)),
                "cpu_seconds_per_epoch": cpu_per_epoch,
                "wall_seconds": result.wall_seconds,
                "history": result.history,
                "pruned_at_epoch": pruned_at[0] if pruned_at else None,
            }
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            self.tracker.log_metrics(
                run_id,
                {
                    "best_val_accuracy": result.best_val_accuracy,
                    "val_macro_f1": summary["macro_f1"],
                    "val_min_precision": summary["min_precision"],
                    "val_min_recall": summary["min_recall"],
                    "parameters": result.parameters,
                    "seconds_per_epoch": attrs["seconds_per_epoch"],
                    "cpu_seconds_per_epoch": cpu_per_epoch,
                },
            )
            (run_dir / "last.pt").unlink(missing_ok=True)  # a trial never resumes; save disk
        except BaseException as exc:
            state = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            self.tracker.set_tags(run_id, {"optuna.state": "FAIL", "error": repr(exc)[:500]})
            self.tracker.end_run(run_id, state)
            raise
        state = "PRUNED" if pruned_at else "COMPLETE"
        self.tracker.set_tags(run_id, {"optuna.state": state})
        self.tracker.end_run(run_id)
        self.log(
            f"[{self.stage}] trial {trial.number} {state.lower()}: val acc "
            f"{result.best_val_accuracy:.4f}, macro-F1 {summary['macro_f1']:.4f} "
            f"({len(result.history)} epochs, {attrs['seconds_per_epoch']:.1f} s/epoch)"
        )
        if pruned_at:
            raise optuna.TrialPruned(f"pruned after epoch {pruned_at[0]}")
        return result.best_val_accuracy

    def _evaluate(
        self, trial: optuna.Trial, run_id: str, checkpoint: Path, run_dir: Path
    ) -> dict[str, float]:
        """Per-class metrics of the best checkpoint on the search's validation images."""
        import torch

        from product_classifier.evaluation.metrics import compute_metrics
        from product_classifier.evaluation.report import write_evaluation_report
        from product_classifier.training.trainer import model_from_checkpoint, predict_logits

        model, _ = model_from_checkpoint(checkpoint)
        logits = predict_logits(model, self.data.val_x, 1024, torch.device("cpu"))
        metrics = compute_metrics(
            self.data.val_y.numpy(), logits.argmax(1).numpy(), self.data.class_names
        )
        paths = write_evaluation_report(
            metrics,
            run_dir / "eval",
            title=f"{self.study_name} trial {trial.number} (validation subset)",
            extra={"params": json.dumps(trial.params), "checkpoint": str(checkpoint)},
        )
        for kind in ("confusion_matrix_png", "summary", "metrics"):
            self.tracker.log_artifact(run_id, paths[kind], "evaluation")
        self.tracker.log_artifact(run_id, run_dir / "config.yaml")
        return {
            "accuracy": metrics.accuracy,
            "macro_f1": metrics.macro_f1,
            "min_precision": metrics.min_precision,
            "min_recall": metrics.min_recall,
        }


def _finish_stage(
    study: optuna.Study, stage: str, tracker: Any, parent_run_id: str, log: Log
) -> StageOutcome:
    """Export the best trial to ONNX, log it to its run, and summarise the stage."""
    from optuna.trial import TrialState

    from product_classifier.constants import CLASS_NAMES
    from product_classifier.export.model_card import checkpoint_spec
    from product_classifier.export.onnx_export import export_onnx
    from product_classifier.training.trainer import model_from_checkpoint

    counts = {
        state: len(study.get_trials(deepcopy=False, states=(state,)))
        for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    outcome = StageOutcome(
        stage=stage,
        study_name=study.study_name,
        trials_run_now=0,
        complete=counts[TrialState.COMPLETE],
        pruned=counts[TrialState.PRUNED],
        failed=counts[TrialState.FAIL],
        best_trial=None,
        best_value=None,
        best_params={},
        best_onnx=None,
        parent_run_id=parent_run_id,
    )
    if not counts[TrialState.COMPLETE]:
        log(f"[{stage}] no completed trial yet")
        return outcome
    best = study.best_trial
    outcome.best_trial, outcome.best_value = best.number, best.value
    outcome.best_params = dict(best.params)
    if "run_dir" not in best.user_attrs:  # added by hand (study.add_trial): nothing to export
        log(f"[{stage}] best trial {best.number} has no checkpoint to export")
        return outcome
    run_dir = Path(best.user_attrs["run_dir"])
    onnx_path = run_dir / "model.onnx"
    best_run = best.user_attrs["mlflow_run_id"]
    if study.user_attrs.get("best_onnx_run_id") != best_run or not onnx_path.exists():
        model, ckpt = model_from_checkpoint(run_dir / "best.pt")
        export_onnx(
            model,
            onnx_path,
            model_version=f"{study.study_name}-trial{best.number}",
            class_names=ckpt.get("class_names") or CLASS_NAMES,
            spec=checkpoint_spec(ckpt),
        )
        tracker.log_artifact(best_run, onnx_path, "model")
        previous = study.user_attrs.get("best_onnx_run_id")
        if isinstance(previous, str) and previous != best_run and tracker.run_exists(previous):
            tracker.set_tags(previous, {"best_in_study": "false"})
        tracker.set_tags(best_run, {"best_in_study": "true"})
        study.set_user_attr("best_onnx_run_id", best_run)
        study.set_user_attr("best_onnx", str(onnx_path))
    outcome.best_onnx = onnx_path
    tracker.set_tags(
        parent_run_id,
        {"best_trial": best.number, "best_run_id": best_run, "best_params": best.params},
    )
    tracker.log_metrics(
        parent_run_id,
        {
            "best_val_accuracy": float(best.value or 0.0),
            "trials_complete": outcome.complete,
            "trials_pruned": outcome.pruned,
            "trials_failed": outcome.failed,
        },
    )
    tracker.end_run(parent_run_id)
    log(
        f"[{stage}] {outcome.complete} complete, {outcome.pruned} pruned, {outcome.failed} failed;"
        f" best trial {best.number} val acc {best.value:.4f} {best.params} -> {onnx_path}"
    )
    return outcome
