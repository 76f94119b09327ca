"""CPU and memory of a server's whole process tree, sampled in a background thread.

uvicorn with several workers is a supervisor plus one process per worker, so every figure
sums over the root process and all its descendants (re-listed at each sample: workers can be
restarted). CPU is reported as a percentage of the whole machine (100% = every core this
process may use busy). Memory is summed over the processes twice: RSS (what was asked for; it
counts the shared pages of libraries once per process, so it over-states the total) and PSS
(shared pages split between the processes that map them: what the tree really costs the
machine, e.g. a container limit).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil

from product_classifier.resources import available_cpus


@dataclass(frozen=True)
class Sample:
    t: float  # time.time()
    cpu_s: float  # user + system seconds of the tree so far (dead processes keep their share)
    rss_bytes: int
    pss_bytes: int
    processes: int


@dataclass(frozen=True)
class WindowStats:
    seconds: float
    cpu_percent_machine: float
    peak_rss_mb: float
    peak_pss_mb: float
    mean_rss_mb: float
    start_rss_mb: float
    end_rss_mb: float
    processes: int


class TreeMonitor:
    """Samples ``pid`` and its descendants every ``interval_s`` until :meth:`stop`."""

    def __init__(self, pid: int, interval_s: float = 0.5) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._cpu_seen: dict[int, float] = {}  # last cpu seconds of each pid, alive or gone
        self._procs: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # "The machine" is what this process may use: its affinity capped by a cgroup quota. On a
        # container limited to 2 CPUs of a 64-core host, 100% means both allowed CPUs are busy,
        # not 2/64 of a host the server could never have used (psutil counts the host's CPUs).
        self.cpu_count = available_cpus()

    def start(self) -> TreeMonitor:
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="tree-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def _tree(self) -> list[psutil.Process]:
        try:
            root = self._procs.get(self.pid) or psutil.Process(self.pid)
            found = [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
        # Keep Process objects across samples: psutil identifies a process by pid + start time.
        tree = []
        for proc in found:
            tree.append(self._procs.setdefault(proc.pid, proc))
        return tree

    def sample(self) -> Sample | None:
        rss = pss = 0
        alive = 0
        with self._lock:
            for proc in self._tree():
                try:
                    with proc.oneshot():
                        cpu = proc.cpu_times()
                        mem = proc.memory_full_info()
                except psutil.Error:
                    continue
                self._cpu_seen[proc.pid] = cpu.user + cpu.system
                rss += mem.rss
                pss += getattr(mem, "pss", mem.rss)  # PSS is Linux-only
                alive += 1
            sample = Sample(time.time(), sum(self._cpu_seen.values()), rss, pss, alive)
            if alive:
                self.samples.append(sample)
            return sample if alive else None

    def window(self, t0: float, t1: float) -> WindowStats:
        """Figures between two ``time.time()`` stamps (nearest samples inside the window)."""
        with self._lock:
            inside = [s for s in self.samples if t0 <= s.t <= t1]
            if len(inside) < 2:
                # A very short window: take the samples around it.
                before = [s for s in self.samples if s.t <= t0][-1:]
                after = [s for s in self.samples if s.t >= t1][:1]
                inside = before + inside + after
        if len(inside) < 2:
            return WindowStats(t1 - t0, float("nan"), 0.0, 0.0, 0.0, 0.0, 0.0, 0)
        first, last = inside[0], inside[-1]
        span = max(last.t - first.t, 1e-9)
        cpu = 100.0 * (last.cpu_s - first.cpu_s) / (span * self.cpu_count)
        rss = [s.rss_bytes / 2**20 for s in inside]
        return WindowStats(
            seconds=span,
            cpu_percent_machine=cpu,
            peak_rss_mb=max(rss),
            peak_pss_mb=max(s.pss_bytes for s in inside) / 2**20,
            mean_rss_mb=sum(rss) / len(rss),
            start_rss_mb=rss[0],
            end_rss_mb=rss[-1],
            processes=max(s.processes for s in inside),
        )

    def series(self, t0: float, t1: float) -> list[tuple[float, float]]:
        """(seconds since t0, RSS MB) for every sample in the window."""
        with self._lock:
            return [(s.t - t0, s.rss_bytes / 2**20) for s in self.samples if t0 <= s.t <= t1]
