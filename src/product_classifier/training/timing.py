"""How long a training recipe takes on this machine, without training it: time a few real steps
of the trainer's loop and extrapolate to an epoch (``product-classifier search time-recipe``)."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

from product_classifier.config import ExperimentConfig


@dataclass(frozen=True)
class RecipeTiming:
    """Seconds per training step and per validation image of a config on this machine."""

    config_name: str
    steps_timed: int
    seconds_per_step: float
    cpu_seconds_per_step: float
    steps_per_epoch: int
    val_images: int
    val_seconds: float
    threads: int
    load_average: tuple[float, float, float]

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds_per_step * self.steps_per_epoch + self.val_seconds

    def total_hours(self, epochs: int) -> float:
        return self.seconds_per_epoch * epochs / 3600


def time_recipe(config: ExperimentConfig, steps: int = 8, warmup: int = 2) -> RecipeTiming:
    """Time ``steps`` real training steps of ``config`` and extrapolate to a full epoch.

    Runs the trainer's own loop (same augmentation, EMA, distillation) for one epoch on the first
    ``warmup`` and then ``warmup + steps`` batches of the training split; the difference of the
    two epoch times cancels the fixed costs (first-step warm-up, the tiny evaluation). Validation
    is timed separately on up to 2000 images and scaled to the whole validation split.
    """
    import tempfile

    import torch

    from product_classifier.models import create_model
    from product_classifier.training.trainer import (
        model_params,
        predict_logits,
        prepare_data,
        resolve_device,
        train,
    )

    full = prepare_data(config)
    batch = config.train.batch_size
    short = config.model_copy(deep=True)
    short.train.epochs, short.train.early_stopping_patience = 1, None
    measured: dict[int, tuple[float, float]] = {}
    for n_steps in (warmup, warmup + steps):
        n = n_steps * batch
        data = dataclasses.replace(
            full,
            train_x=full.train_x[:n],
            train_y=full.train_y[:n],
            val_x=full.val_x[:64],
            val_y=full.val_y[:64],
        )
        cpu_start = time.process_time()
        with tempfile.TemporaryDirectory() as run_dir:
            result = train(short, run_dir=Path(run_dir), progress=False, data=data)
        measured[n_steps] = (result.history[0]["epoch_seconds"], time.process_time() - cpu_start)
    (wall_a, cpu_a), (wall_b, cpu_b) = measured[warmup], measured[warmup + steps]
    device = resolve_device(config.train.device)
    model = create_model(config.model.name, **model_params(config, full)).to(device).eval()
    sample = full.val_x[:2000]
    start = time.perf_counter()
    predict_logits(model, sample, config.train.eval_batch_size, device)
    val_seconds = (time.perf_counter() - start) * len(full.val_x) / max(1, len(sample))
    return RecipeTiming(
        config_name=config.name,
        steps_timed=steps,
        seconds_per_step=(wall_b - wall_a) / steps,
        cpu_seconds_per_step=(cpu_b - cpu_a) / steps,
        steps_per_epoch=max(1, len(full.train_x) // batch),
        val_images=len(full.val_x),
        val_seconds=val_seconds,
        threads=torch.get_num_threads(),
        load_average=os.getloadavg(),
    )
