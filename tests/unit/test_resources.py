"""available_cpus: CPU affinity capped by cgroup v1/v2 quotas, read from fake cgroup trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from product_classifier import resources
from product_classifier.resources import available_cpus, cgroup_cpu_quota, usable_cores


@pytest.fixture
def affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 16-CPU host, whatever this machine has."""
    monkeypatch.setattr(resources.os, "sched_getaffinity", lambda _pid: set(range(16)))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _v2(tmp_path: Path, cpu_max: dict[str, str], own: str = "/") -> tuple[Path, Path]:
    """A unified hierarchy: ``cpu_max`` maps a cgroup path ('.' is the root) to cpu.max."""
    root = tmp_path / "cgroup"
    _write(root / "cgroup.controllers", "cpuset cpu io memory pids")
    for where, text in cpu_max.items():
        _write(root / where / "cpu.max", text)
    proc = tmp_path / "proc_self_cgroup"
    _write(proc, f"0::{own}")
    return root, proc


def _v1(tmp_path: Path, quota: str, period: str = "100000", own: str = "/") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    _write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", quota)
    _write(root / "cpu,cpuacct" / "cpu.cfs_period_us", period)
    (root / "memory").mkdir()
    proc = tmp_path / "proc_self_cgroup"
    _write(proc, f"5:memory:{own}\n4:cpu,cpuacct:{own}\n1:name=systemd:{own}")
    return root, proc


@pytest.mark.parametrize(
    ("cpu_max", "expected_cpus", "expected_cores"),
    [
        ("200000 100000", 2.0, 2),  # docker --cpus=2, Compose cpus: 2
        ("150000 100000", 1.5, 1),  # rounded down: throttling is worse than half a core idle
        ("50000 100000", 0.5, 1),  # never below one worker
        ("max 100000", 16.0, 16),  # no limit: the affinity
        ("3200000 100000", 16.0, 16),  # a quota above the affinity: the affinity
    ],
)
def test_cgroup_v2_quota_caps_the_affinity(
    affinity: None, tmp_path: Path, cpu_max: str, expected_cpus: float, expected_cores: int
) -> None:
    root, proc = _v2(tmp_path, {".": cpu_max})
    assert available_cpus(root, proc) == pytest.approx(expected_cpus)
    assert usable_cores(root, proc) == expected_cores


def test_cgroup_v2_reads_the_process_cgroup_and_the_tightest_parent(
    affinity: None, tmp_path: Path
) -> None:
    # A host process in a systemd slice: the slice's limit binds though the leaf has none.
    root, proc = _v2(
        tmp_path,
        {"system.slice": "300000 100000", "system.slice/app.service": "max 100000"},
        own="/system.slice/app.service",
    )
    assert cgroup_cpu_quota(root, proc) == pytest.approx(3.0)
    root2, proc2 = _v2(
        tmp_path / "b",
        {"system.slice": "300000 100000", "system.slice/app.service": "100000 50000"},
        own="/system.slice/app.service",
    )
    assert cgroup_cpu_quota(root2, proc2) == pytest.approx(2.0)


def test_cgroup_v2_container_with_its_own_namespace_reads_the_mount(
    affinity: None, tmp_path: Path
) -> None:
    root, proc = _v2(tmp_path, {".": "400000 100000"}, own="/")
    assert available_cpus(root, proc) == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("quota", "period", "expected"),
    [("200000", "100000", 2.0), ("25000", "10000", 2.5), ("-1", "100000", 16.0)],
)
def test_cgroup_v1_quota_caps_the_affinity(
    affinity: None, tmp_path: Path, quota: str, period: str, expected: float
) -> None:
    root, proc = _v1(tmp_path, quota, period)
    assert available_cpus(root, proc) == pytest.approx(expected)


def test_cgroup_v1_without_namespace_falls_back_to_the_mount(
    affinity: None, tmp_path: Path
) -> None:
    # Docker on v1 shows /docker/<id> in /proc/self/cgroup but mounts that cgroup as the root.
    root, proc = _v1(tmp_path, "200000", own="/docker/0123abcd")
    assert available_cpus(root, proc) == pytest.approx(2.0)


@pytest.mark.parametrize("garbage", ["", "max", "abc 100000", "100000 0"])
def test_unreadable_or_odd_files_mean_no_quota(
    affinity: None, tmp_path: Path, garbage: str
) -> None:
    root, proc = _v2(tmp_path, {".": garbage})
    assert cgroup_cpu_quota(root, proc) is None
    assert available_cpus(root, proc) == 16.0


def test_no_cgroup_filesystem_means_the_affinity(affinity: None, tmp_path: Path) -> None:
    assert available_cpus(tmp_path / "absent", tmp_path / "absent-proc") == 16.0


def test_this_host_is_positive_and_at_most_the_affinity() -> None:
    cpus = available_cpus()
    assert 0 < cpus <= len(os.sched_getaffinity(0))
    assert 1 <= usable_cores() <= len(os.sched_getaffinity(0))


def test_service_sizing_follows_the_quota(
    affinity: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The settings' auto workers see the quota: 16 CPUs by affinity, 2 by quota -> 2."""
    from product_classifier.serving import settings as settings_mod

    root, proc = _v2(tmp_path, {".": "200000 100000"})
    # Default arguments are bound at definition: point the quota reader at the fake tree.
    real = cgroup_cpu_quota
    monkeypatch.setattr(resources, "cgroup_cpu_quota", lambda *_a: real(root, proc))
    for key in list(os.environ):
        if key.startswith(settings_mod.ENV_PREFIX):
            monkeypatch.delenv(key)
    settings = settings_mod.load_settings()
    assert settings.resolved_workers == 2
    assert settings.batch_concurrency == 1
