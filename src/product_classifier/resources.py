"""How much CPU this process may really use: its affinity, capped by a cgroup CPU quota.

``os.cpu_count()`` is the host's CPUs and ``os.sched_getaffinity`` the CPUs the process may be
scheduled on; neither sees a CFS quota (``docker run --cpus=2``, Compose's ``cpus:``, a
Kubernetes CPU limit), which caps the CPU *time* per period. A 2-CPU quota on a 64-core host
would otherwise size 4 workers with several model threads each, all throttled.

:func:`available_cpus` is the one answer, used to size the service's workers and model
threads (``serving/settings.py``), by the ``service_cpu_cores`` metric and in training logs.
It reads cgroup v2 (``cpu.max`` of the process's cgroup and every parent) or v1
(``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) under ``root`` (a parameter, for tests).
No library covers this in the service's dependencies: psutil and ``os`` see no quotas.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def affinity_cpus() -> int:
    """CPUs this process may be scheduled on (a container's cpuset), else the host's CPUs."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _own_cgroups(proc_cgroup: Path) -> tuple[str | None, str | None]:
    """(v2 path, v1 ``cpu`` controller path) of this process, from /proc/self/cgroup."""
    v2 = v1 = None
    for line in (_read(proc_cgroup) or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _candidates(mount: Path, own: str | None) -> list[Path]:
    """The process's cgroup directory and its parents up to ``mount``, then ``mount`` itself.

    In a container with its own cgroup namespace the mount *is* its cgroup (own path "/"); a
    host process sees the full hierarchy, and a limit set on a parent (a systemd slice) binds
    too. A path that does not exist under the mount (v1 without a cgroup namespace mounts the
    container's cgroup as the root) leaves the mount alone.
    """
    dirs: list[Path] = []
    if own:
        current = mount / own.strip("/")
        while current != mount and mount in current.parents:
            dirs.append(current)
            current = current.parent
    dirs.append(mount)
    return dirs


def _v2_quota(path: Path) -> float | None:
    text = _read(path / "cpu.max")
    if text is None:
        return None
    limit, _, period = text.partition(" ")
    try:
        return float(limit) / float(period or 100_000) if limit != "max" else None
    except (ValueError, ZeroDivisionError):
        return None


def _v1_quota(path: Path) -> float | None:
    quota, period = _read(path / "cpu.cfs_quota_us"), _read(path / "cpu.cfs_period_us")
    try:
        limit, length = int(quota or "-1"), int(period or "0")
    except ValueError:
        return None
    return limit / length if limit > 0 and length > 0 else None


def cgroup_cpu_quota(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP
) -> float | None:
    """The tightest CPU quota (in CPUs, e.g. 1.5) on this process's cgroup, or None: no limit.

    cgroup v2 when ``root`` is a unified hierarchy (it has ``cgroup.controllers``), else v1's
    ``cpu`` (or ``cpu,cpuacct``) controller.
    """
    v2_path, v1_path = _own_cgroups(proc_cgroup)
    if (root / "cgroup.controllers").exists():
        quotas = [_v2_quota(d) for d in _candidates(root, v2_path)]
    else:
        quotas = []
        for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
            if (root / name).is_dir():
                quotas = [_v1_quota(d) for d in _candidates(root / name, v1_path)]
                break
    found = [q for q in quotas if q is not None]
    return min(found) if found else None


def available_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> float:
    """CPUs this process may use: its affinity, capped by its cgroup's quota (may be 1.5)."""
    cpus = float(affinity_cpus())
    quota = cgroup_cpu_quota(root, proc_cgroup)
    return cpus if quota is None else max(0.01, min(cpus, quota))


def usable_cores(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> int:
    """:func:`available_cpus` as a whole number of cores for sizing workers and threads.

    Rounded down (at least 1): a 1.5-CPU quota gets one worker. CFS throttling stalls every
    thread of a cgroup that overruns its quota until the next period (100 ms by default), a
    far worse tail latency than half a core left idle (Go's automaxprocs rounds down too).
    """
    return max(1, math.floor(available_cpus(root, proc_cgroup) + 1e-9))
