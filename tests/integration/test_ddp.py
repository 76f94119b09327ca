"""DistributedDataParallel on this CPU: two real processes under torchrun, gloo backend.

Each test starts ``python -m torch.distributed.run --standalone --nproc_per_node=2`` (the
rendezvous listens on a free localhost port), with the real Fashion-MNIST and a 2% subset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _torchrun(args: list[str], cwd: Path, log_dir: Path, timeout: float = 240) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        f"--log-dir={log_dir}",
        "--redirects=3",  # each rank's stdout/stderr to its own file under log_dir
        *args,
    ]
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:  # a rank waiting on a collective forever
        pytest.fail(f"torchrun did not finish in {timeout}s (ranks deadlocked?)\n{exc.stderr}")
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stderr[-4000:]}"


def _rank_output(log_dir: Path, rank: int, stream: str = "stdout") -> str:
    """torchrun writes LOG_DIR/<run id>/attempt_0/<local rank>/stdout.log."""
    files = sorted(log_dir.glob(f"*/attempt_*/{rank}/{stream}.log"))
    assert files, f"no {stream} log for rank {rank} under {log_dir}"
    return "".join(f.read_text() for f in files)


def test_cli_train_under_torchrun_runs_both_ranks_and_writes_one_checkpoint(
    tmp_path: Path,
) -> None:
    import torch

    run_dir = tmp_path / "run"
    _torchrun(
        [
            "-m",
            "product_classifier.cli.main",
            "train",
            "-c",
            str(ROOT / "configs/baseline.yaml"),
            "--set",
            "train.epochs=1",
            "--set",
            "data.subset_fraction=0.02",
            "--set",
            f"train.output_dir={tmp_path / 'runs'}",
            "--run-dir",
            str(run_dir),
            "--no-progress",
        ],
        cwd=tmp_path,
        log_dir=tmp_path / "logs",
    )
    for rank in (0, 1):
        out = _rank_output(tmp_path / "logs", rank)
        assert "best val accuracy" in out, f"rank {rank} did not finish training:\n{out}"
    # Only rank 0 writes: one run directory, one best and one last checkpoint, one manifest.
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "best.pt",
        "config.yaml",
        "data_manifest.json",
        "last.pt",
    ]
    assert not (tmp_path / "runs").exists()
    ckpt = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    assert ckpt["world_size"] == 2
    assert len(ckpt["history"]) == 1
    # Each rank trained on half of the 2% subset: ~1080 images / 2 ranks / batch 128 = 4 steps.
    assert 0.0 <= ckpt["history"][0]["val_accuracy"] <= 1.0


_STOP_ON_ONE_RANK = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from product_classifier.config import load_experiment_config
    from product_classifier.training.trainer import StopTraining, train

    rank = int(os.environ["RANK"])
    out = Path(sys.argv[2])
    cfg = load_experiment_config(sys.argv[1], {
        "train.epochs": 3, "data.subset_fraction": 0.02, "train.output_dir": str(out / "runs"),
        "train.early_stopping_patience": None, "train.max_minutes": None,
    })

    def stop_on_rank_1(epoch, metrics):
        # What a pruner or a per-rank clock does: one rank decides alone to stop.
        if rank == 1 and epoch == 1:
            raise StopTraining

    result = train(cfg, run_dir=out / "run", callbacks=[stop_on_rank_1], progress=False)
    (out / f"rank{rank}.json").write_text(json.dumps(
        {"epochs_run": result.epochs_run, "stopped_early": result.stopped_early}
    ))
    """
)


def test_a_stop_on_one_rank_stops_all_ranks_instead_of_deadlocking(tmp_path: Path) -> None:
    script = tmp_path / "stop_one_rank.py"
    script.write_text(_STOP_ON_ONE_RANK)
    _torchrun(
        [str(script), str(ROOT / "configs/baseline.yaml"), str(tmp_path)],
        cwd=tmp_path,
        log_dir=tmp_path / "logs",
        timeout=180,
    )
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert results == [{"epochs_run": 1, "stopped_early": True}] * 2
