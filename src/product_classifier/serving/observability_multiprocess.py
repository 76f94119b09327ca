"""prometheus_client's multiprocess mode for ``product-classifier serve --workers N``.

Each uvicorn worker is its own process with its own counters; a scrape reaches one worker at
random. In multiprocess mode every worker writes its metrics to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` (in whichever worker) adds them all up.
prometheus_client picks the mode when it is first imported, so the directory must be in the
environment before the workers start: :func:`prepare_multiprocess_dir` runs in the CLI process,
before uvicorn spawns them. This module is standard library only, so that calling it cannot
import prometheus_client too early.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LEGACY_ENV = "prometheus_multiproc_dir"
# prometheus_client names its files <type>[_<mode>]_<pid>.db
_PID_IN_NAME = re.compile(r"_(\d+)\.db$")


def multiprocess_dir(environ: MutableMapping[str, str] | None = None) -> Path | None:
    env = os.environ if environ is None else environ
    value = env.get(MULTIPROC_ENV) or env.get(_LEGACY_ENV)
    return Path(value) if value else None


def clean_multiprocess_dir(path: Path) -> int:
    """Delete the metric files of a previous run (stale counters would be added to ours)."""
    removed = 0
    for db_file in path.glob("*.db"):
        db_file.unlink(missing_ok=True)
        removed += 1
    return removed


def prepare_multiprocess_dir(
    workers: int, *, enabled: bool = True, environ: MutableMapping[str, str] | None = None
) -> Path | None:
    """Make metrics add up across workers; call once in the parent, before the workers start.

    * the operator set ``PROMETHEUS_MULTIPROC_DIR`` (e.g. a tmpfs in a container): it is
      created if needed and emptied of old ``*.db`` files;
    * several workers and no directory: a fresh temporary one, removed when this process exits;
    * one worker: nothing to do, metrics stay in memory (a little cheaper).

    Returns the directory in use, or None for single-process mode.
    """
    env = os.environ if environ is None else environ
    path = multiprocess_dir(env)
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        removed = clean_multiprocess_dir(path)
        logger.debug("metrics: multiprocess dir %s (removed %d stale files)", path, removed)
        return path
    if not enabled or workers <= 1:
        return None
    path = Path(tempfile.mkdtemp(prefix="product-classifier-metrics-"))
    env[MULTIPROC_ENV] = str(path)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def pids_with_files(path: Path) -> set[int]:
    """Every process that has written metrics to ``path`` (dead ones included)."""
    pids = set()
    for name in os.listdir(path):
        match = _PID_IN_NAME.search(name)
        if match:
            pids.add(int(match.group(1)))
    return pids


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def mark_process_dead(pid: int, path: Path) -> None:
    """Drop a finished worker's live gauges (ready, in-flight); its counters must stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(path))


def reap_dead_workers(path: Path) -> list[int]:
    """``mark_process_dead`` for workers that died without saying so (killed, crashed).

    uvicorn's supervisor restarts a dead worker but has no hook to tell us, so the scrape does
    this bookkeeping: a listdir and a signal-0 per pid, microseconds.
    """
    dead = [pid for pid in pids_with_files(path) if not pid_alive(pid)]
    for pid in dead:
        mark_process_dead(pid, path)
    return dead
