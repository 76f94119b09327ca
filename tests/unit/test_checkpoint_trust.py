"""Checkpoints load as plain data; a pickle that would run code is refused without the switch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from product_classifier.config import DistillConfig
from product_classifier.models import create_model
from product_classifier.training.trainer import (
    CHECKPOINT_FORMAT,
    UntrustedCheckpointError,
    load_checkpoint,
    model_from_checkpoint,
)


class _Payload:
    """Unpickling this calls os.mkdir(marker): any code could run in its place."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.marker),))


def _checkpoint(model_name: str = "baseline_cnn") -> dict:
    model = create_model(model_name)
    return {
        "format": CHECKPOINT_FORMAT,
        "model": {"name": model_name, "params": {}},
        "model_state": model.state_dict(),
        "ema_state": None,
        "config": {"name": "x", "train": {"epochs": 1}},
        "history": [{"epoch": 1, "val_accuracy": 0.5}],
    }


def test_a_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "teacher.pt"
    torch.save({**_checkpoint(), "extra": _Payload(marker)}, path)
    for load in (load_checkpoint, model_from_checkpoint):
        with pytest.raises(UntrustedCheckpointError, match="trust_checkpoint"):
            load(path)
        assert not marker.exists()
    # The explicit switch unpickles everything, which is why it is only for trusted files.
    load_checkpoint(path, trusted=True)
    assert marker.is_dir()


def test_a_plain_checkpoint_needs_no_trust(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    torch.save(_checkpoint(), path)
    model, ckpt = model_from_checkpoint(path)
    assert ckpt["history"][0]["epoch"] == 1
    assert sum(p.numel() for p in model.parameters()) > 0


def test_the_teacher_is_untrusted_unless_the_config_says_so() -> None:
    assert DistillConfig(teacher_checkpoint=Path("t.pt")).trust_checkpoint is False
