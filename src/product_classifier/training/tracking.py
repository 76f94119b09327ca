"""MLflow tracking: one run per search trial (nested under one run per stage), and the model
registry entry of the released model.

Everything goes through an explicit ``MlflowClient`` rather than mlflow's fluent API, so there is
no process-wide "active run" or tracking URI: a test, a search and a registration can each talk
to their own store in one process.

Default store: ``sqlite:///mlruns.db`` for runs, params, metrics and the model registry (the
registry needs a database-backed store), with artifacts under ``./mlruns``. Any tracking URI
works (``file:./mlruns`` without the registry, ``http://127.0.0.1:5000`` for a tracking server).
Browse: ``mlflow ui --backend-store-uri sqlite:///mlruns.db``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from product_classifier.provenance import git_sha, sha256_file

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
DEFAULT_REGISTERED_MODEL = "product-classifier"
RELEASE_EXPERIMENT = "product-classifier-release"
RELEASE_ALIAS = "champion"
# MLflow rejects longer parameter values.
_MAX_PARAM_CHARS = 6000


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values (they are one hyper-parameter)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def data_checksum(checksums: Mapping[str, str]) -> str:
    """One SHA-256 over the per-file checksums: a single tag that changes if any file does."""
    text = json.dumps(dict(sorted(checksums.items())), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def provenance_tags(checksums: Mapping[str, str]) -> dict[str, str]:
    tags = {"git_sha": git_sha() or "unknown", "data_checksum": data_checksum(checksums)}
    tags.update({f"data.{name}": value for name, value in checksums.items()})
    return tags


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:_MAX_PARAM_CHARS]


class Tracker:
    """A thin, explicit wrapper over one experiment of one MLflow store."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (
            found.experiment_id if found else self.client.create_experiment(experiment)
        )

    def start_run(
        self, name: str, tags: Mapping[str, str] | None = None, parent_run_id: str | None = None
    ) -> str:
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id  # shows as nested in the UI
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return str(run.info.run_id)

    def run_exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return False
        return run.info.experiment_id == self.experiment_id and run.info.lifecycle_stage == "active"

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(key, _param_value(value)) for key, value in params.items()]
        for start in range(0, len(items), 100):  # the REST API's batch limit
            self.client.log_batch(run_id, params=items[start : start + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self.client.log_batch(run_id, metrics=items)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)


@dataclass(frozen=True)
class RegisteredRelease:
    name: str
    version: str
    run_id: str
    sha256: str
    already_registered: bool


def register_release(
    model_path: Path = Path("artifacts/model.onnx"),
    card_path: Path | None = None,
    *,
    tracking_uri: str = DEFAULT_TRACKING_URI,
    name: str = DEFAULT_REGISTERED_MODEL,
) -> RegisteredRelease:
    """Register the released ONNX file and its model card as a version of ``name``.

    Refuses a file whose SHA-256 differs from its card's. Idempotent: a file already registered
    (same SHA-256) returns the existing version. The version holds an MLflow ``onnx`` flavour
    (``models:/NAME@champion`` loads with ``mlflow.onnx.load_model``; its model.onnx is the
    released file byte for byte, else the original is kept under ``release/`` too) and the card
    under ``release/``.
    """
    import mlflow.onnx
    import onnx

    card_path = card_path or model_path.with_name("model_card.json")
    card = json.loads(card_path.read_text())
    digest = sha256_file(model_path)
    if digest != card.get("sha256"):
        raise ValueError(
            f"{model_path} has SHA-256 {digest} but {card_path} says {card.get('sha256')}"
        )
    tracker = Tracker(tracking_uri, RELEASE_EXPERIMENT)
    client = tracker.client
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="Fashion-MNIST product-photo classifier (ONNX, see model card)."
        )
    for existing in client.search_model_versions(f"name='{name}'"):
        if existing.tags.get("sha256") == digest:
            return RegisteredRelease(
                name, str(existing.version), str(existing.run_id), digest, True
            )

    test = card.get("metrics", {}).get("test", {})
    run_id = tracker.start_run(
        f"release-{card.get('model_version', 'unknown')}",
        tags={
            **provenance_tags(card.get("data", {}).get("payload_sha256", {})),
            "model_version": str(card.get("model_version")),
            "sha256": digest,
            # The commit the card recorded at training time (None for the GPU run's copy).
            "card_git_sha": str(card.get("git_sha")),
        },
    )
    tracker.log_params(
        run_id,
        {
            "architecture": card.get("architecture", {}).get("name"),
            **{
                f"architecture.{k}": v
                for k, v in card.get("architecture", {}).get("params", {}).items()
            },
            "parameters": card.get("parameters"),
            "tta_flip": card.get("contract", {}).get("tta_flip_in_graph"),
        },
    )
    tracker.log_metrics(
        run_id,
        {
            f"test_{key}": test[key]
            for key in ("accuracy", "macro_f1", "min_precision", "min_recall")
            if key in test
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        flavour_dir = Path(tmp) / "model"
        mlflow.onnx.save_model(
            onnx.load(str(model_path)), str(flavour_dir), save_as_external_data=False
        )
        tracker.client.log_artifacts(run_id, str(flavour_dir), "model")
        # save_model re-serialises the protobuf; keep the original too if the bytes moved.
        if sha256_file(flavour_dir / "model.onnx") != digest:
            tracker.log_artifact(run_id, model_path, "release")
    tracker.log_artifact(run_id, card_path, "release")
    tracker.end_run(run_id)

    source = f"{client.get_run(run_id).info.artifact_uri}/model"
    version = client.create_model_version(
        name,
        source,
        run_id=run_id,
        tags={"sha256": digest, "model_version": str(card.get("model_version"))},
        description=(
            f"{card.get('model_version')}: 10k-test accuracy {test.get('accuracy')}, "
            f"macro-F1 {test.get('macro_f1')}"
        ),
    )
    client.set_registered_model_alias(name, RELEASE_ALIAS, version.version)
    return RegisteredRelease(name, str(version.version), run_id, digest, False)
