"""Runs Locust scenarios headless, in its own process, and writes raw-accurate results.

Locust patches the standard library with gevent when it is imported, so it lives in this
subprocess and never in the runner (whose threads sample the server). Usage::

    python -m benchmarks.load.driver SPEC.json OUT.json

SPEC: ``{"host", "batch_files", "scenarios": [{"name", "weights": {"png": 1, ...},
"steps": [{"users", "seconds", "rate_per_user", "warmup_s"}], "bucket_s"}]}``. Every request is
recorded (end time, latency, status) through Locust's request event, so percentiles are exact,
not Locust's rounded ones. Only requests that *start* after a step's warm-up count.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # before anything else imports ssl/socket: Locust expects it

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from locust.env import Environment  # noqa: E402

from benchmarks.load.locustfile import make_user, pool  # noqa: E402
from benchmarks.load.stats import Record, buckets, summarize  # noqa: E402


class Recorder:
    def __init__(self, batch_files: int) -> None:
        self.batch_files = batch_files
        self.records: list[Record] = []

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        response: Any = None,
        exception: BaseException | None = None,
        **_: Any,
    ) -> None:
        status = int(getattr(response, "status_code", 0) or 0)
        self.records.append(
            Record(
                end=time.time(),
                latency_ms=float(response_time),
                status=status,
                kind=name,
                ok=exception is None and 200 <= status < 300,
                images=self.batch_files if name == "batch" else 1,
            )
        )

    def between(self, t0: float, t1: float) -> list[Record]:
        return [r for r in self.records if r.end - r.latency_ms / 1000.0 >= t0 and r.end <= t1]


def run_scenario(host: str, scenario: dict[str, Any], recorder: Recorder) -> dict[str, Any]:
    steps_out: list[dict[str, Any]] = []
    t_start = time.time()
    for step in scenario["steps"]:
        users = int(step["users"])
        rate = float(step.get("rate_per_user", 0.0))
        user_class = make_user(scenario["weights"], rate)
        env = Environment(user_classes=[user_class], host=host)
        env.events.request.add_listener(recorder.on_request)
        runner = env.create_local_runner()
        # Rate-limited users are spread over ~1 s so that their requests interleave evenly;
        # closed-loop users start within a second.
        spawn_rate = users if rate > 0 else min(users * 10, 100)
        t_begin = time.time()
        runner.start(users, spawn_rate=spawn_rate)
        warmup = float(step.get("warmup_s", 0.0))
        gevent.sleep(warmup + float(step["seconds"]))
        t0, t1 = t_begin + warmup, time.time()
        runner.quit()
        records = recorder.between(t0, t1)
        summary = summarize(records, t1 - t0)
        steps_out.append(
            {"users": users, "rate_per_user": rate, "t0": t0, "t1": t1, "stats": summary}
        )
        env.events.request.remove_listener(recorder.on_request)
    t_end = time.time()
    main = steps_out[-1]
    t0, t1 = main["t0"], main["t1"]
    result: dict[str, Any] = {
        "name": scenario["name"],
        "t_start": t_start,
        "t_end": t_end,
        "t0": t0,
        "t1": t1,
        "steps": steps_out,
        "stats": main["stats"],
    }
    bucket_s = scenario.get("bucket_s")
    if bucket_s:
        records = recorder.between(t0, t1)
        result["buckets"] = buckets(records, t0, t1, float(bucket_s))
    return result


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    batch_files = int(spec.get("batch_files", 64))
    os.environ["LOADTEST_BATCH_FILES"] = str(batch_files)
    pool()  # encode the payloads before any clock starts
    recorder = Recorder(batch_files)
    results = []
    for scenario in spec["scenarios"]:
        results.append(run_scenario(spec["host"], scenario, recorder))
        recorder.records.clear()
        print(f"driver: {scenario['name']} done", file=sys.stderr, flush=True)
    Path(argv[1]).write_text(json.dumps({"scenarios": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
