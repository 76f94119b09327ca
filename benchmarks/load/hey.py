"""The ``hey`` load generator (Go; ``apt-get install -y hey``), run as the acceptance check runs it.

``hey -z 20s -c 64 -m POST -D body.bin -T 'multipart/form-data; boundary=...' URL``. Its text
summary is parsed (rather than ``-o csv``, which silently drops requests that got no response,
so errors would be invisible): req/s, mean, p50/p95/p99, status codes and transport errors.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

_SUMMARY = {
    "total_s": re.compile(r"^\s*Total:\s+([\d.]+) secs", re.M),
    "mean_s": re.compile(r"^\s*Average:\s+([\d.]+) secs", re.M),
    "max_s": re.compile(r"^\s*Slowest:\s+([\d.]+) secs", re.M),
    "rps": re.compile(r"^\s*Requests/sec:\s+([\d.]+)", re.M),
}
_PERCENTILE = re.compile(r"^\s*(\d+)% in ([\d.]+) secs", re.M)
_STATUS = re.compile(r"^\s*\[(\d{3})\]\s+(\d+) responses", re.M)
_ERROR = re.compile(r"^\s*\[(\d+)\]\s+(.*)$", re.M)


def hey_path() -> str | None:
    return shutil.which("hey")


def hey_command(
    url: str,
    body: Path,
    content_type: str,
    seconds: float,
    connections: int,
    rate_per_connection: float = 0.0,
) -> list[str]:
    """``rate_per_connection`` > 0: hey's ``-q`` (each connection waits so as to send at most
    that many requests per second), so ``connections`` x ``rate`` is a steady total rate."""
    hey = hey_path() or "hey"
    duration = f"{max(seconds, 0.1):g}s"
    args = ["-z", duration, "-c", str(connections), "-m", "POST", "-D", str(body)]
    if rate_per_connection > 0:
        args += ["-q", f"{rate_per_connection:g}"]
    return [hey, *args, "-T", content_type, url]


def parse_summary(text: str, images: int = 1) -> dict[str, Any]:
    """hey's text report -> the same keys as ``stats.summarize``."""
    values = {}
    for key, pattern in _SUMMARY.items():
        match = pattern.search(text)
        values[key] = float(match.group(1)) if match else None
    percentiles = {int(p): float(v) * 1000.0 for p, v in _PERCENTILE.findall(text)}
    statuses = {code: int(n) for code, n in _STATUS.findall(text)}
    errors_part = text.split("Error distribution:", 1)[1] if "Error distribution:" in text else ""
    transport = [(int(n), msg.strip()) for n, msg in _ERROR.findall(errors_part)]
    transport_errors = sum(n for n, _ in transport)
    ok = sum(n for code, n in statuses.items() if code.startswith("2"))
    requests = sum(statuses.values()) + transport_errors
    errors = requests - ok
    seconds = values["total_s"] or 0.0
    if transport_errors:
        statuses["0"] = transport_errors

    def ms(key: str) -> float | None:
        value = values[key]
        return value * 1000.0 if value is not None else None

    return {
        "requests": requests,
        "seconds": seconds,
        "rps": values["rps"] or 0.0,
        "images_per_s": ok * images / seconds if seconds else 0.0,
        "errors": errors,
        "error_rate": errors / requests if requests else 0.0,
        "status_counts": statuses,
        "mean_ms": ms("mean_s"),
        "p50_ms": percentiles.get(50),
        "p95_ms": percentiles.get(95),
        "p99_ms": percentiles.get(99),
        "max_ms": ms("max_s"),
        "transport_errors": [msg for _, msg in transport][:5],
    }


def run_hey(
    url: str,
    body: Path,
    content_type: str,
    *,
    seconds: float,
    connections: int,
    rate_per_connection: float = 0.0,
    images: int = 1,
) -> dict[str, Any]:
    cmd = hey_command(url, body, content_type, seconds, connections, rate_per_connection)
    t0 = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=False)
    t1 = time.time()
    if done.returncode != 0 or "Requests/sec" not in done.stdout:
        raise RuntimeError(
            f"hey failed ({done.returncode}): {(done.stderr or done.stdout)[-2000:]}"
        )
    return {
        "command": shlex.join(cmd),
        "t0": t0,
        "t1": t1,
        "stats": parse_summary(done.stdout, images),
        "raw": done.stdout,
    }
