"""The release workflow ships what the service loads, and only after CI passed on its commit.

The expected files come from the code (each MODEL_VARIANT's settings and the model card, through
``released.served_files``), never from a copy of the list.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from product_classifier.released import RELEASE_DIR, served_files
from product_classifier.serving.settings import ServeSettings

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"


def _workflow(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def _release_assets() -> set[str]:
    """The ``files=( ... )`` list of the step that creates the GitHub release."""
    steps = _workflow("release.yml")["jobs"]["github-release"]["steps"]
    (script,) = [s["run"] for s in steps if "gh release create" in s.get("run", "")]
    match = re.search(r"^\s*files=\(([^)]*)\)", script, re.M)
    assert match, "the release step names its files as files=( ... )"
    return set(match.group(1).split())


@pytest.fixture
def variants(monkeypatch: pytest.MonkeyPatch) -> tuple[str, ...]:
    for key in list(os.environ):
        if key.startswith("PRODUCT_CLASSIFIER_"):
            monkeypatch.delenv(key)
    return get_args(ServeSettings.model_fields["model_variant"].annotation)


def test_the_release_ships_every_file_each_variant_loads(variants: tuple[str, ...]) -> None:
    loaded: set[str] = set()
    for variant in variants:
        for path in served_files(ServeSettings(model_variant=variant)):  # type: ignore[arg-type]
            assert path.parent == RELEASE_DIR, f"{variant} loads {path}, not a released file"
            loaded.add(f"artifacts/{path.name}")
    assert "artifacts/model.student.int8.onnx" in loaded  # the cascade's first stage
    assert "artifacts/model.pictures.int8.onnx" in loaded  # the pictures' second opinion
    assert _release_assets() == loaded


def test_every_release_asset_exists() -> None:
    root = WORKFLOWS.parents[1]
    missing = [name for name in _release_assets() if not (root / name).is_file()]
    assert not missing, f"release.yml lists files that do not exist: {missing}"


def test_publishing_and_deploying_wait_for_ci() -> None:
    jobs = _workflow("release.yml")["jobs"]
    gates = [name for name, job in jobs.items() if job.get("uses") == "./.github/workflows/ci.yml"]
    assert gates, "release.yml does not call the CI workflow"

    def needs(name: str) -> set[str]:
        direct = jobs[name].get("needs", [])
        direct = {direct} if isinstance(direct, str) else set(direct)
        return direct.union(*(needs(n) for n in direct))

    for name in jobs.keys() - set(gates):
        assert needs(name) & set(gates), f"release job {name!r} does not wait for CI"
    assert "workflow_call" in _workflow("ci.yml")["on"]


def test_ci_runs_make_security() -> None:
    jobs = _workflow("ci.yml")["jobs"].values()
    runs = [step.get("run", "") for job in jobs for step in job.get("steps", [])]
    assert any(re.search(r"^\s*make security\b", run, re.M) for run in runs)
