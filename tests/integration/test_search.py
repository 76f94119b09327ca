"""The model search end to end on the real Fashion-MNIST (1% subsets, 1-2 epochs): Optuna study
in SQLite, MLflow runs with params/metrics/artifacts, resume, pruning, the report, and the model
registry entry of the released ONNX file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from product_classifier.cli.main import app
from product_classifier.training.search import load_search_config, run_stage
from product_classifier.training.tracking import data_checksum

ROOT = Path(__file__).resolve().parents[2]
# The real data, found by the project's locator (tests/conftest.py): skipped without it,
# except under CI=true, where it fails.
needs_data = pytest.mark.usefixtures("fashion_mnist")


def test_the_project_search_config_loads_and_every_value_makes_a_valid_config() -> None:
    cfg = load_search_config(ROOT / "configs/search.yaml")
    assert list(cfg.stages) == ["grid", "regularisation", "architectures"]
    grid = cfg.stages["grid"]
    assert grid.sampler == "grid" and grid.grid_size() == 27
    assert cfg.stages["regularisation"].inherit_best_from == "grid"
    arch = cfg.stages["architectures"].space["architecture"]
    assert arch.grid_values() == ["baseline_cnn", "resnet", "efficientnet"]
    assert arch.overrides("architecture", "resnet")["model.name"] == "resnet"
    assert cfg.stage_budget("architectures", trials=2).trials == 2


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ({"s": {"sampler": "grid", "space": {"optimizer.lr": {"low": 0.1, "high": 1}}}}, "grid"),
        ({"s": {"space": {"optimizer.lr": {"choices": [1], "low": 0.1}}}}, "exactly one"),
        ({"s": {"space": {"optimizer.lrr": {"choices": [0.1]}}, "budget": {"trials": 2}}}, "lrr"),
        ({"s": {"space": {"model.name": {"choices": ["vgg"]}}, "budget": {"trials": 2}}}, "vgg"),
        (
            {
                "a": {"space": {"optimizer.lr": {"choices": [0.1]}}, "inherit_best_from": "b"},
                "b": {"space": {"optimizer.lr": {"choices": [0.1]}}},
            },
            "earlier stage",
        ),
    ],
)
def test_bad_search_configs_fail_at_load_time_with_the_culprit(
    tmp_path: Path, stages: dict[str, Any], message: str
) -> None:
    from product_classifier.config import ConfigError

    path = tmp_path / "search.yaml"
    path.write_text(
        yaml.safe_dump({"base_config": str(ROOT / "configs/baseline.yaml"), "stages": stages})
    )
    with pytest.raises(ConfigError, match=message):
        load_search_config(path)


def _search_yaml(directory: Path) -> Path:
    spec: dict[str, Any] = {
        "base_config": str(ROOT / "configs/baseline.yaml"),
        "storage": f"sqlite:///{directory / 'optuna.db'}",
        "tracking_uri": f"sqlite:///{directory / 'mlruns.db'}",
        "output_dir": str(directory / "runs"),
        "budget": {
            "epochs": 1,
            "subset_fraction": 0.01,
            "val_subset_fraction": 0.05,
            "timeout_minutes": None,
        },
        "stages": {
            "grid": {
                "sampler": "grid",
                "fixed": {"model.params.channels": [8, 16], "model.params.hidden": 32},
                "space": {"optimizer.lr": {"choices": [0.001, 0.003]}},
                "heatmap": {"x": "optimizer.lr", "y": "optimizer.lr"},
            },
            "prune": {
                "sampler": "grid",
                "budget": {"epochs": 2},
                "fixed": {"model.params.channels": [8, 16], "model.params.hidden": 32},
                "space": {"optimizer.lr": {"choices": [0.001]}},
            },
        },
        "pruner": {"n_startup_trials": 1},
    }
    path = directory / "search.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("search")


@pytest.fixture(scope="module")
def searched(workdir: Path) -> dict[str, Any]:
    """`search run` through the CLI for one trial, then a resume that finishes the grid."""
    # MLflow puts artifacts under ./mlruns of the working directory: keep them in tmp.
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        config = _search_yaml(workdir)
        result = CliRunner().invoke(
            app,
            ["search", "run", "-c", str(config), "--stage", "grid", "--trials", "1"],
        )
        assert result.exit_code == 0, result.output
        cfg = load_search_config(config)
        resumed = run_stage(cfg, "grid", log=lambda _msg: None)
        again = run_stage(cfg, "grid", log=lambda _msg: None)
    return {"cfg": cfg, "cli_output": result.output, "resumed": resumed, "again": again}


def _client(workdir: Path) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{workdir / 'mlruns.db'}")


@pytest.mark.slow
@needs_data
def test_study_resumes_the_grid_and_stops_when_it_is_exhausted(searched: dict[str, Any]) -> None:
    import optuna

    cfg = searched["cfg"]
    assert "1 new trials; 1 complete" in searched["cli_output"]
    assert searched["resumed"].trials_run_now == 1
    assert searched["again"].trials_run_now == 0
    study = optuna.load_study(study_name=cfg.study_name("grid"), storage=cfg.storage)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert sorted(t.params["optimizer.lr"] for t in trials) == [0.001, 0.003]
    for trial in trials:
        attrs = trial.user_attrs
        assert 0.0 <= attrs["accuracy"] <= 1.0
        assert attrs["accuracy"] == pytest.approx(trial.value, abs=1e-6)
        assert 0.0 <= attrs["min_recall"] <= attrs["accuracy"] + 1e-9
        assert attrs["epochs_run"] == 1 and len(attrs["history"]) == 1
        assert attrs["parameters"] > 0 and attrs["seconds_per_epoch"] > 0
        assert attrs["val_images"] == 300  # 5% of the 6,000 validation images
        # Sampled value reached the trained config.
        saved = yaml.safe_load((Path(attrs["run_dir"]) / "config.yaml").read_text())
        assert saved["optimizer"]["lr"] == trial.params["optimizer.lr"]
        assert saved["model"]["params"]["channels"] == [8, 16]


@pytest.mark.slow
@needs_data
def test_mlflow_has_a_nested_run_per_trial_with_params_metrics_tags_artifacts(
    searched: dict[str, Any], workdir: Path
) -> None:
    from product_classifier.data.fashion_mnist import dataset_checksums

    client = _client(workdir)
    experiment = client.get_experiment_by_name("product-classifier-search")
    runs = client.search_runs([experiment.experiment_id], "tags.`search.stage` = 'grid'")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert parent.data.metrics["trials_complete"] == 2
    expected_checksum = data_checksum(dataset_checksums())
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["optuna.state"] == "COMPLETE"
        assert run.data.tags["data_checksum"] == expected_checksum
        assert run.data.tags["git_sha"]
        assert float(run.data.params["optimizer.lr"]) in (0.001, 0.003)
        assert run.data.params["model.name"] == "baseline_cnn"
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == [1]
        assert "val_macro_f1" in run.data.metrics
        files = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
        assert {"evaluation/confusion_matrix.png", "evaluation/summary.md"} <= files
    best = max(children, key=lambda r: r.data.metrics["best_val_accuracy"])
    assert best.data.tags["best_in_study"] == "true"
    assert parent.data.tags["best_run_id"] == best.info.run_id
    onnx_file = client.download_artifacts(best.info.run_id, "model/model.onnx", str(workdir))
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"image": np.zeros((3, 1, 28, 28), np.float32)})[0]
    assert logits.shape == (3, 10)


@pytest.mark.slow
@needs_data
def test_a_trial_below_the_median_is_pruned_after_its_first_epoch(
    searched: dict[str, Any], workdir: Path
) -> None:
    import optuna

    cfg = searched["cfg"]
    # A finished trial that reached 0.99 after epoch 1: anything real on 1% of the data is
    # below that median, so the MedianPruner (1 startup trial) must stop the next trial.
    study = optuna.create_study(
        study_name=cfg.study_name("prune"), storage=cfg.storage, direction="maximize"
    )
    study.add_trial(optuna.trial.create_trial(value=0.99, intermediate_values={1: 0.99}))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        outcome = run_stage(cfg, "prune", trials=2, log=lambda _msg: None)
    assert outcome.pruned == 1 and outcome.trials_run_now == 1
    trial = optuna.load_study(study_name=cfg.study_name("prune"), storage=cfg.storage).trials[1]
    assert trial.state.name == "PRUNED"
    assert list(trial.intermediate_values) == [1]
    assert trial.user_attrs["pruned_at_epoch"] == 1 and trial.user_attrs["epochs_run"] == 1
    assert Path(trial.user_attrs["run_dir"], "best.pt").exists()  # graceful stop kept it
    run = _client(workdir).get_run(trial.user_attrs["mlflow_run_id"])
    assert run.data.tags["optuna.state"] == "PRUNED" and run.info.status == "FINISHED"


@pytest.mark.slow
@needs_data
def test_report_writes_tables_and_plots_and_keeps_hand_written_text(
    searched: dict[str, Any], workdir: Path
) -> None:
    from product_classifier.training.search_report import BEGIN, END, write_report

    out = workdir / "docs" / "experiments.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("# Experiments\n\n## Final recipe and evidence\n\nHand-written.\n")
    log = workdir / "gpu.log"
    log.write_text(
        "epoch   1/2 train_loss 1.0 train_acc 0.6 val_loss 0.5 val_acc 0.8000 (9s) *\n"
        "epoch   2/2 train_loss 0.5 train_acc 0.8 val_loss 0.3 val_acc 0.9000 (3s) *\n"
    )
    for _ in range(2):  # idempotent: the second run replaces the block, does not add one
        written = write_report(
            searched["cfg"],
            out=out,
            img_dir=workdir / "docs" / "img",
            history_sources={"gpu run": (workdir / "missing.pt", log)},
        )
    text = out.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "Hand-written." in text
    assert "| # | lr | val acc | macro-F1 | min P | min R |" in text
    assert "| gpu run | `" in text and "| 2 | 0.9000 | 2 |" in text
    pngs = [p for p in written if p.suffix == ".png"]
    assert {p.name for p in pngs} >= {
        "experiments-grid-heatmap.png",
        "experiments-val-curves.png",
        "experiments-release-curves.png",
    }
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"img/{png.name}" in text


@pytest.mark.slow
@needs_data
def test_release_is_registered_once_and_a_tampered_file_is_refused(
    workdir: Path, tmp_path: Path
) -> None:
    import mlflow

    from product_classifier.provenance import sha256_file
    from product_classifier.training.tracking import register_release

    uri = f"sqlite:///{workdir / 'mlruns.db'}"
    model = ROOT / "artifacts/model.onnx"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        first = register_release(model, tracking_uri=uri, name="pc-test")
        second = register_release(model, tracking_uri=uri, name="pc-test")
    assert not first.already_registered and second.already_registered
    assert second.version == first.version == "1"
    client = _client(workdir)
    version = client.get_model_version_by_alias("pc-test", "champion")
    assert str(version.version) == "1" and version.tags["sha256"] == sha256_file(model)
    local = mlflow.artifacts.download_artifacts(
        run_id=first.run_id, artifact_path="release", tracking_uri=uri, dst_path=str(tmp_path)
    )
    card = json.loads((Path(local) / "model_card.json").read_text())
    assert card["sha256"] == first.sha256
    source = client.get_model_version_download_uri("pc-test", version.version)
    flavour = mlflow.artifacts.download_artifacts(
        artifact_uri=source, tracking_uri=uri, dst_path=str(tmp_path / "m")
    )
    assert (Path(flavour) / "MLmodel").exists()
    kept = Path(local) / "model.onnx"  # only if the flavour's copy is not byte-identical
    released = kept if kept.exists() else Path(flavour) / "model.onnx"
    assert sha256_file(released) == sha256_file(model)

    tampered = tmp_path / "t" / "model.onnx"
    tampered.parent.mkdir()
    tampered.write_bytes(model.read_bytes() + b"\0")
    (tampered.parent / "model_card.json").write_text(
        (ROOT / "artifacts/model_card.json").read_text()
    )
    with pytest.raises(ValueError, match="SHA-256"):
        register_release(tampered, tracking_uri=uri, name="pc-test")
