"""prometheus_client's multiprocess mode for ``product-classifier serve --workers N``.

Each uvicorn worker is its own process with its own counters; a scrape reaches one worker at
random. In multiprocess mode every worker writes its metrics to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` (in whichever worker) adds them all up.
prometheus_client picks the mode when it is first imported, so the directory must be in the
environment before the workers start: :func:`prepare_multiprocess_dir` runs in the CLI process,
before uvicorn spawns them. This module is standard library only, so that calling it cannot
import prometheus_client too early.

The directory the workers write to is always the service's own, created fresh for this run:
an operator's ``PROMETHEUS_MULTIPROC_DIR`` is only the parent of it, and nothing in there that
the service did not create is ever deleted (it could be another service's live metrics).
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
# A run's own directory inside an operator's: product-classifier-<supervisor pid>-<random>,
# with OWNER_FILE inside holding that pid (so a later run can tell a dead run's leftovers).
RUN_DIR_PREFIX = "product-classifier-"
OWNER_FILE = ".product-classifier-owner"


def multiprocess_dir(environ: MutableMapping[str, str] | None = None) -> Path | None:
    env = os.environ if environ is None else environ
    value = env.get(MULTIPROC_ENV) or env.get(_LEGACY_ENV)
    return Path(value) if value else None


def _owner_pid(directory: Path) -> int | None:
    try:
        text = (directory / OWNER_FILE).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def remove_dead_run_dirs(parent: Path) -> int:
    """Delete the run directories this service left in ``parent`` when a run was killed
    before it could clean up: only ours (prefix and owner file), only of dead processes."""
    removed = 0
    for directory in parent.glob(f"{RUN_DIR_PREFIX}*"):
        pid = _owner_pid(directory) if directory.is_dir() else None
        if pid is not None and not pid_alive(pid):
            shutil.rmtree(directory, ignore_errors=True)
            removed += 1
    return removed


def _new_run_dir(parent: Path | None) -> Path:
    """A fresh, private (0700) directory, removed when this process exits."""
    path = Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-", dir=parent))
    if parent is not None:  # in the system's temp dir, nobody looks for leftovers
        (path / OWNER_FILE).write_text(f"{os.getpid()}\n")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def prepare_multiprocess_dir(
    workers: int, *, enabled: bool = True, environ: MutableMapping[str, str] | None = None
) -> Path | None:
    """Make metrics add up across workers; call once in the parent, before the workers start.

    * the operator set ``PROMETHEUS_MULTIPROC_DIR`` (e.g. a tmpfs in a container): it is
      created if needed, and this run gets a fresh subdirectory of it (the variable is
      pointed there for the workers); leftovers of killed runs of this service are removed,
      anything else in it is left alone;
    * several workers and no directory: a fresh temporary one;
    * one worker: nothing to do, metrics stay in memory (a little cheaper).

    A directory made here is removed when this process exits. Returns the directory in use,
    or None for single-process mode.
    """
    env = os.environ if environ is None else environ
    parent = multiprocess_dir(env)
    if parent is not None:
        try:
            parent.mkdir(parents=True, exist_ok=True)
            removed = remove_dead_run_dirs(parent)
            path = _new_run_dir(parent)
        except OSError as exc:
            raise OSError(
                f"{MULTIPROC_ENV}={parent}: cannot make this run's metrics directory in it "
                f"({exc.strerror or exc}); point it at a writable directory, e.g. a tmpfs"
            ) from exc
        logger.debug("metrics: multiprocess dir %s (%d dead runs' dirs removed)", path, removed)
    elif not enabled or workers <= 1:
        return None
    else:
        path = _new_run_dir(None)
    env[MULTIPROC_ENV] = str(path)
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
