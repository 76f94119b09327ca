"""Metrics add up across worker processes (prometheus_client multiprocess mode).

prometheus_client picks its mode at import, so each "worker" is a real subprocess started with
PROMETHEUS_MULTIPROC_DIR, driven line by line over stdin like a tiny RPC.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from product_classifier.serving.observability_multiprocess import MULTIPROC_ENV

_WORKER = r"""
import os, sys
from product_classifier.serving.metrics import ServiceMetrics
m = ServiceMetrics()
assert m.multiprocess
m.set_ready(False)
print(os.getpid(), flush=True)
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "requests":
        for _ in range(int(args[0])):
            m.observe_request("POST", "/v1/predict", 200, 0.05)
    elif cmd == "predict":
        m.set_model("v1", "f" * 64, ["Bag", "Coat"])
        m.observe_prediction(args[0], 0.9, False)
        m.observe_batch(4, 0.003)
    elif cmd == "ready":
        m.set_ready(True)
    elif cmd == "render":
        sys.stdout.write(m.render().decode() + "END\n")
    elif cmd == "exit":
        m.worker_exit()
        break
    print("ok", flush=True)
"""


class Worker:
    def __init__(self, directory: Path) -> None:
        env = {**os.environ, MULTIPROC_ENV: str(directory)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        self.pid = int(self.proc.stdout.readline())

    def send(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        if command == "exit":
            self.proc.wait(timeout=30)
            return ""
        if command == "render":
            lines = []
            while (line := self.proc.stdout.readline()) != "END\n":
                assert line, "worker died"
                lines.append(line)
            self.proc.stdout.readline()  # "ok"
            return "".join(lines)
        assert self.proc.stdout.readline() == "ok\n"
        return ""

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.proc.poll() is None:
            worker.kill()


def test_counters_sum_over_workers_and_dead_workers_leave_the_gauges(
    tmp_path: Path, workers: list[Worker]
) -> None:
    a, b, c = (Worker(tmp_path) for _ in range(3))
    workers.extend([a, b, c])
    a.send("requests 3")
    a.send("predict Bag")
    a.send("ready")
    b.send("requests 2")
    b.send("predict Coat")
    b.send("ready")
    # c is still starting: ready=0, so the service is not fully ready.
    s = parse(b.send("render"))
    route = (("method", "POST"), ("route", "/v1/predict"), ("status", "200"))
    assert s[("http_requests_total", route)] == 5
    assert s[("predictions_total", (("category", "Bag"),))] == 1
    assert s[("predictions_total", (("category", "Coat"),))] == 1
    assert s[("inference_batch_size_count", ())] == 2
    assert s[("service_ready", ())] == 0
    assert s[("model_info", (("model_version", "v1"), ("sha256", "f" * 64)))] == 1
    pids = {dict(labels)["pid"] for name, labels in s if name == "process_cpu_seconds_total"}
    assert pids == {str(a.pid), str(b.pid), str(c.pid)}

    # a exits cleanly, c is killed while still "starting" (no chance to say goodbye).
    a.send("exit")
    c.kill()
    s = parse(b.send("render"))
    assert s[("http_requests_total", route)] == 5  # a's requests still count
    assert s[("service_ready", ())] == 1  # only b is left, and it is ready
    pids = {dict(labels)["pid"] for name, labels in s if name == "process_cpu_seconds_total"}
    assert pids == {str(b.pid)}

    # A restarted worker (new pid) adds to the totals instead of resetting them.
    d = Worker(tmp_path)
    workers.append(d)
    d.send("requests 1")
    d.send("ready")
    s = parse(d.send("render"))
    assert s[("http_requests_total", route)] == 6
    assert s[("service_ready", ())] == 1
