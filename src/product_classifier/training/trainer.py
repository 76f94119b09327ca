"""The training loop: one function, ``train(config)``, used by the CLI, the search and DDP.

Design notes
- The whole dataset sits in memory as one float tensor (54k x 784 floats = 170 MB): on two CPU
  cores a DataLoader's worker processes would cost more than they save.
- Augmentation runs per batch on the training device (see augment.py).
- Checkpoints describe themselves (config, data checksums, versions, history) and ``last.pt`` is
  written atomically every epoch, so an interrupted run resumes where it stopped.
- Under ``torchrun`` (WORLD_SIZE > 1) each rank trains on its shard of every epoch's permutation
  and DistributedDataParallel averages gradients; only rank 0 writes.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import pickle  # nosec B403
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from product_classifier.config import DistillConfig, ExperimentConfig
from product_classifier.constants import CLASS_NAMES
from product_classifier.data.dataset import MANIFEST_NAME, Dataset
from product_classifier.models import count_parameters, create_model
from product_classifier.models.registry import TIMM_PREFIX
from product_classifier.preprocessing import FASHION_MNIST_SPEC, InputSpec
from product_classifier.provenance import git_sha, library_versions, utc_now
from product_classifier.training.augment import augment_batch, synthetic_outliers

CHECKPOINT_FORMAT = 1

EpochCallback = Callable[[int, dict[str, float]], None]


class StopTraining(Exception):
    """Raised by a callback to end training early (not an error)."""


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path
    best_val_accuracy: float
    best_epoch: int
    epochs_run: int
    wall_seconds: float
    parameters: int
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _init_distributed(device: torch.device) -> DistributedContext:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(
        rank=dist.get_rank(),
        world_size=world_size,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


@dataclass
class PreparedData:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    checksums: dict[str, str]
    class_names: tuple[str, ...] = CLASS_NAMES
    spec: InputSpec = FASHION_MNIST_SPEC
    dataset: Dataset | None = None  # the splits and manifest behind the tensors


def prepare_data(config: ExperimentConfig, *, progress: bool = True) -> PreparedData:
    """The run's train and validation splits as float tensors (the test split stays unread)."""
    from product_classifier.data.dataset import load_dataset

    spec = config.input.spec()
    dataset = load_dataset(config.data, spec, splits=("train", "val"), progress=progress)
    return PreparedData(
        train_x=torch.from_numpy(dataset.model_input("train")),
        train_y=torch.from_numpy(dataset.labels["train"]),
        val_x=torch.from_numpy(dataset.model_input("val")),
        val_y=torch.from_numpy(dataset.labels["val"]),
        checksums=dataset.checksums,
        class_names=dataset.class_names,
        spec=spec,
        dataset=dataset,
    )


def model_params(config: ExperimentConfig, data: PreparedData) -> dict[str, Any]:
    """The architecture's parameters for this data: the config's, plus the class count, the
    input channels and (for catalog inputs) the pixel statistics that the graph normalises
    with. Recorded in the checkpoint, so ``model_from_checkpoint`` rebuilds the same net."""
    params = dict(config.model.params)
    params.setdefault("num_classes", len(data.class_names))
    params.setdefault("in_channels", data.spec.channels)
    if data.spec != FASHION_MNIST_SPEC and not config.model.name.startswith(TIMM_PREFIX):
        sample = data.train_x[: min(len(data.train_x), 4096)]
        params.setdefault("norm_mean", round(float(sample.mean()), 4))
        params.setdefault("norm_std", round(max(float(sample.std()), 1e-3), 4))
    if config.model.name.startswith(TIMM_PREFIX) and config.model.pretrained is not None:
        pretrained = config.model.pretrained
        params.setdefault("pretrained", str(pretrained) if isinstance(pretrained, Path) else True)
    return params


def build_optimizer(model: nn.Module, config: ExperimentConfig) -> torch.optim.Optimizer:
    opt = config.optimizer
    # No weight decay on biases and norm parameters: decaying them only hurts (Goyal et al.).
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": opt.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if opt.name == "sgd":
        return torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov)
    if opt.name == "adam":
        return torch.optim.Adam(groups, lr=opt.lr)
    return torch.optim.AdamW(groups, lr=opt.lr)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: ExperimentConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    sched = config.scheduler
    total = max(1, config.train.epochs * steps_per_epoch)
    if sched.name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.optimizer.lr,
            total_steps=total,
            pct_start=max(sched.warmup_fraction, 1e-3),
        )
    if sched.name == "cosine":
        warmup = int(sched.warmup_fraction * total)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return None


class ModelEMA:
    """Exponential moving average of weights and buffers; evaluated and exported instead."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        self.decay = decay
        for p in self.module.parameters():
            p.requires_grad_(False)

        # One fused foreach call per step instead of one kernel per tensor: on a GPU the
        # per-tensor version costs more than the model's own backward pass.
        pairs = zip(self.module.state_dict().values(), model.state_dict().values(), strict=True)
        self._float = [(e, v) for e, v in pairs if e.dtype.is_floating_point]
        pairs = zip(self.module.state_dict().values(), model.state_dict().values(), strict=True)
        self._other = [(e, v) for e, v in pairs if not e.dtype.is_floating_point]

        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        # Warm-up (as in TensorFlow's ExponentialMovingAverage): early on, the average would be
        # dominated by the random initial weights, so the effective decay starts small.
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        if self._float:
            ema, live = zip(*self._float, strict=True)
            torch._foreach_lerp_(list(ema), list(live), 1 - decay)
        for ema_v, v in self._other:
            ema_v.copy_(v)


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device
) -> torch.Tensor:
    model.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            outputs.append(model(batch).float().cpu())
    if outputs:
        return torch.cat(outputs)
    return torch.empty(0, int(getattr(model, "num_classes", len(CLASS_NAMES))))


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _atomic_save(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class UntrustedCheckpointError(ValueError):
    """A checkpoint needs full unpickling (which can run any code) and was not trusted."""


def load_checkpoint(path: str | Path, *, trusted: bool = False) -> dict[str, Any]:
    """A checkpoint as plain data: ``torch.load(weights_only=True)``, which unpickles only
    tensors, containers and primitives, so a crafted file cannot run code.

    This trainer's checkpoints are such data (the config is stored as a JSON-like dict).
    ``trusted=True`` (``train.distill.trust_checkpoint``) allows a file that also holds other
    pickled Python objects, e.g. one written by another tool; only for files you trust.
    """
    try:
        ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trusted:
            raise UntrustedCheckpointError(
                f"{path}: refused: not a weights-only checkpoint (it holds pickled Python "
                "objects, which can run code when loaded, or is no checkpoint at all). Only "
                "if you made it or trust where it came from, allow it explicitly "
                "(train.distill.trust_checkpoint: true for a teacher); docs/security.md"
            ) from None
        # The caller vouched for this file (the documented trust switch).
        ckpt = torch.load(path, map_location="cpu", weights_only=False)  # nosec B614
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: unsupported checkpoint format {found!r}")
    return ckpt


def model_from_checkpoint(
    path: str | Path, use_ema: bool = True, *, trusted: bool = False
) -> tuple[nn.Module, dict]:
    """Rebuild the architecture from the checkpoint's own description and load its weights
    (``trusted``: see :func:`load_checkpoint`)."""
    ckpt = load_checkpoint(path, trusted=trusted)
    params = dict(ckpt["model"]["params"])
    params.pop("pretrained", None)  # the weights come from the checkpoint, not a download
    model = create_model(ckpt["model"]["name"], **params)
    state = ckpt["ema_state"] if use_ema and ckpt.get("ema_state") else ckpt["model_state"]
    model.load_state_dict(state)
    return model.eval(), ckpt


def default_run_dir(config: ExperimentConfig) -> Path:
    name = config.train.run_name or f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return config.train.output_dir / name


def train(
    config: ExperimentConfig,
    *,
    run_dir: Path | None = None,
    resume: bool = False,
    callbacks: Sequence[EpochCallback] = (),
    progress: bool = True,
    data: PreparedData | None = None,
) -> TrainResult:
    """Train ``config`` and return where the best checkpoint is.

    ``resume=True`` continues from ``run_dir/last.pt`` if it exists (same config expected).
    """
    started = time.perf_counter()
    tc = config.train
    device = resolve_device(tc.device)
    ctx = _init_distributed(device)
    if device.type == "cuda" and ctx.world_size > 1:
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    torch.manual_seed(tc.seed + ctx.rank)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    data = data or prepare_data(config, progress=progress and ctx.is_main)
    run_dir = run_dir or default_run_dir(config)
    manifest_sha = None
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(_config_yaml(config))
        if data.dataset is not None:
            manifest_sha = data.dataset.write_manifest(run_dir / MANIFEST_NAME)

    params = model_params(config, data)
    model = create_model(config.model.name, **params)
    transfer = None
    pretrained = config.model.pretrained
    if isinstance(pretrained, Path) and not config.model.name.startswith(TIMM_PREFIX):
        from product_classifier.models.transfer import load_pretrained, reinflate_batch_norm

        transfer = load_pretrained(model, pretrained)
        # Folded weights (an ONNX file) in a batch-norm model: the norms come back exactly,
        # measured on training images (the validation split stays unseen).
        reinflate_batch_norm(model, transfer, data.train_x[: min(len(data.train_x), 4096)])
        if ctx.is_main:
            tqdm.write(transfer.summary())
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    n_params = count_parameters(model)
    ema = ModelEMA(model, tc.ema_decay) if tc.ema_decay else None
    optimizer = build_optimizer(model, config)
    per_rank = math.ceil(len(data.train_x) / ctx.world_size)
    steps_per_epoch = max(1, per_rank // tc.batch_size)  # drop_last: BN hates a batch of 1
    # A small catalog would get one or two optimiser steps per epoch; an epoch is then several
    # passes (fresh permutations, fresh augmentation), so early stopping and the schedule see
    # enough steps between validations.
    steps_per_epoch = max(steps_per_epoch, tc.min_steps_per_epoch or 0)
    passes = math.ceil(steps_per_epoch * tc.batch_size / max(1, per_rank))
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)

    start_epoch, best_acc, best_epoch, bad_epochs = 0, -1.0, -1, 0
    history: list[dict[str, float]] = []
    elapsed_before = 0.0
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if resume and last_path.exists():
        ckpt = load_checkpoint(last_path)
        model.load_state_dict(ckpt["model_state"])
        optimizer.load_state_dict(ckpt["optimizer_state"])
        if scheduler is not None and ckpt.get("scheduler_state"):
            scheduler.load_state_dict(ckpt["scheduler_state"])
        if ema is not None and ckpt.get("ema_state"):
            ema.module.load_state_dict(ckpt["ema_state"])
            ema.updates = ckpt.get("ema_updates", 0)
        start_epoch = ckpt["epoch"] + 1
        best_acc, best_epoch = ckpt["best_val_accuracy"], ckpt["best_epoch"]
        bad_epochs = ckpt.get("bad_epochs", 0)
        history = ckpt["history"]
        elapsed_before = ckpt.get("wall_seconds", 0.0)
        if ctx.is_main:
            tqdm.write(f"resuming {run_dir} at epoch {start_epoch + 1}/{tc.epochs}")

    train_model: nn.Module = model
    if ctx.world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    gen = torch.Generator().manual_seed(tc.seed * 1000 + ctx.rank)
    base_meta = {
        "format": CHECKPOINT_FORMAT,
        "model": {"name": config.model.name, "params": params},
        "parameters": n_params,
        "config": config.model_dump(mode="json"),
        "class_names": list(data.class_names),
        "input_spec": data.spec.to_dict(),
        "data_checksums": data.checksums,
        "data_manifest": (
            {"file": MANIFEST_NAME, "sha256": manifest_sha, "counts": data.dataset.counts()}
            if data.dataset is not None and manifest_sha
            else None
        ),
        "transfer": transfer.to_dict() if transfer is not None else None,
        "versions": library_versions(),
        "git_sha": git_sha(),
        "device": str(device),
        "world_size": ctx.world_size,
    }
    teacher: nn.Module | None = None
    if tc.distill is not None:
        teacher, _ = model_from_checkpoint(
            tc.distill.teacher_checkpoint, trusted=tc.distill.trust_checkpoint
        )
        teacher = teacher.to(device)
        if device.type == "cuda":
            teacher = teacher.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        base_meta["teacher"] = str(tc.distill.teacher_checkpoint)
    if device.type == "cuda":
        # The whole dataset fits in GPU memory; per-batch host copies would dominate.
        data = dataclasses.replace(
            data, train_x=data.train_x.to(device), train_y=data.train_y.to(device)
        )
    # The page colour that augmentation pads with: Fashion-MNIST is dark, letterboxes white.
    background = 1.0 if data.spec.canonicalization == "letterbox" else 0.0
    stopped_early = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, tc.epochs):
        epoch_start = time.perf_counter()
        train_model.train()
        # Same permutation on every rank (seeded by epoch), each rank takes its own slice.
        epoch_gen = torch.Generator().manual_seed(tc.seed * 7919 + epoch)
        perm = torch.cat(
            [torch.randperm(len(data.train_x), generator=epoch_gen) for _ in range(passes)]
        )[ctx.rank :: ctx.world_size]
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{tc.epochs}",
            disable=not (progress and ctx.is_main),
            leave=False,
            dynamic_ncols=True,
        )
        for step in bar:
            idx = perm[step * tc.batch_size : (step + 1) * tc.batch_size]
            x = data.train_x[idx].to(device, non_blocking=True)
            y = data.train_y[idx].to(device, non_blocking=True)
            x = augment_batch(x, config.augment, gen, background)
            negatives = 0
            if tc.outlier_exposure is not None:  # config: only on the Fashion-MNIST input
                negatives = max(1, round(len(x) * tc.outlier_exposure.fraction))
                fake = synthetic_outliers(x, negatives, gen)
                x = torch.cat([x, augment_batch(fake, config.augment, gen, background)])
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = train_model(x)
                if negatives:
                    logits, outlier_logits = logits[:-negatives], logits[-negatives:]
                    x = x[:-negatives]
                loss = F.cross_entropy(logits.float(), y, label_smoothing=tc.label_smoothing)
                if teacher is not None and tc.distill is not None:
                    loss = _distill_loss(loss, logits, teacher, x, tc.distill)
                if negatives and tc.outlier_exposure is not None:
                    # Cross-entropy to the uniform distribution over the categories.
                    uniform = -F.log_softmax(outlier_logits.float(), dim=1).mean(dim=1).mean()
                    loss = loss + tc.outlier_exposure.weight * uniform
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update(model)
            if step % 10 == 0 or step == steps_per_epoch - 1:
                # .item() syncs with the GPU; doing it every step would stall the pipeline.
                loss_sum += loss.item() * len(y)
                correct += int((logits.argmax(1) == y).sum().item())
                seen += len(y)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")

        eval_model = ema.module if ema is not None else model
        val_logits = predict_logits(eval_model, data.val_x, tc.eval_batch_size, device)
        val_loss = float(F.cross_entropy(val_logits, data.val_y).item())
        val_acc = float((val_logits.argmax(1) == data.val_y).float().mean().item())
        epoch_seconds = time.perf_counter() - epoch_start
        metrics = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(1, seen),
            "train_accuracy": correct / max(1, seen),
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "lr": optimizer.param_groups[0]["lr"],
            "epoch_seconds": epoch_seconds,
        }
        history.append(metrics)
        improved = val_acc > best_acc
        if improved:
            best_acc, best_epoch, bad_epochs = val_acc, epoch + 1, 0
        else:
            bad_epochs += 1
        wall = elapsed_before + time.perf_counter() - started
        if ctx.is_main:
            tqdm.write(
                f"epoch {epoch + 1:3d}/{tc.epochs} train_loss {metrics['train_loss']:.4f} "
                f"train_acc {metrics['train_accuracy']:.4f} val_loss {val_loss:.4f} "
                f"val_acc {val_acc:.4f} ({epoch_seconds:.0f}s){' *' if improved else ''}"
            )
            ckpt = {
                **base_meta,
                "epoch": epoch,
                "model_state": _unwrap(model).state_dict(),
                "ema_state": ema.module.state_dict() if ema is not None else None,
                "ema_updates": ema.updates if ema is not None else 0,
                "optimizer_state": optimizer.state_dict(),
                "scheduler_state": scheduler.state_dict() if scheduler is not None else None,
                "best_val_accuracy": best_acc,
                "best_epoch": best_epoch,
                "bad_epochs": bad_epochs,
                "history": history,
                "wall_seconds": wall,
                "saved_at": utc_now(),
            }
            if improved:
                _atomic_save(ckpt, best_path)
            _atomic_save(ckpt, last_path)
        stop = False
        try:
            for callback in callbacks:
                callback(epoch + 1, metrics)
        except StopTraining:
            stop = True
        patience = tc.early_stopping_patience
        if not stop and patience is not None and bad_epochs >= patience:
            if ctx.is_main:
                tqdm.write(f"early stopping: no val improvement for {patience} epochs")
            stop = True
        if not stop and tc.max_minutes is not None and wall + epoch_seconds > tc.max_minutes * 60:
            if ctx.is_main:
                tqdm.write(f"time budget of {tc.max_minutes} min reached")
            stop = True
        if ctx.world_size > 1:
            # Ranks see slightly different BN statistics (so val accuracy) and their own clocks:
            # if one stopped alone, the others would wait forever in the next all-reduce.
            flag = torch.tensor([float(stop)], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            stopped_early = True
            break

    if ctx.world_size > 1:
        dist.barrier()
    return TrainResult(
        run_dir=run_dir,
        best_checkpoint=best_path,
        best_val_accuracy=best_acc,
        best_epoch=best_epoch,
        epochs_run=epoch + 1,
        wall_seconds=elapsed_before + time.perf_counter() - started,
        parameters=n_params,
        history=history,
        stopped_early=stopped_early,
    )


def _distill_loss(
    hard_loss: torch.Tensor,
    logits: torch.Tensor,
    teacher: nn.Module,
    x: torch.Tensor,
    cfg: DistillConfig,
) -> torch.Tensor:
    with torch.no_grad():
        teacher_logits = teacher.eval()(x).float()
    t = cfg.temperature
    soft = F.kl_div(
        F.log_softmax(logits.float() / t, dim=1),
        F.log_softmax(teacher_logits / t, dim=1),
        log_target=True,
        reduction="batchmean",
    ) * (t * t)  # T^2 keeps the soft-target gradients on the same scale as the hard ones
    return (1 - cfg.alpha) * hard_loss + cfg.alpha * soft


def _config_yaml(config: ExperimentConfig) -> str:
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
