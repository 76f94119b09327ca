"""Latency and throughput summaries shared by the Locust driver and the ``hey`` wrapper."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Record:
    """One finished request."""

    end: float  # time.time() when the response (or error) arrived
    latency_ms: float
    status: int  # 0: no HTTP response (connection error, timeout)
    kind: str
    ok: bool
    images: int  # images in the request (1, or the batch's file count)


def summarize(records: Sequence[Record], seconds: float) -> dict[str, Any]:
    """req/s, images/s, latency mean/p50/p95/p99/max (ms), error rate, status counts."""
    n = len(records)
    seconds = max(seconds, 1e-9)
    out: dict[str, Any] = {
        "requests": n,
        "seconds": seconds,
        "rps": n / seconds,
        "images_per_s": sum(r.images for r in records if r.ok) / seconds,
        "errors": sum(not r.ok for r in records),
        "error_rate": (sum(not r.ok for r in records) / n) if n else 0.0,
        "status_counts": {str(k): v for k, v in sorted(Counter(r.status for r in records).items())},
    }
    if n:
        lat = np.fromiter((r.latency_ms for r in records), dtype=np.float64, count=n)
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        out.update(
            mean_ms=float(lat.mean()),
            p50_ms=float(p50),
            p95_ms=float(p95),
            p99_ms=float(p99),
            max_ms=float(lat.max()),
        )
    else:
        out.update(mean_ms=None, p50_ms=None, p95_ms=None, p99_ms=None, max_ms=None)
    kinds = sorted({r.kind for r in records})
    if len(kinds) > 1:
        out["by_kind"] = {
            kind: summarize([r for r in records if r.kind == kind], seconds) for kind in kinds
        }
    return out


def buckets(
    records: Sequence[Record], t0: float, t1: float, width_s: float
) -> list[dict[str, Any]]:
    """Per-interval summaries (for the soak: is latency drifting?)."""
    out: list[dict[str, Any]] = []
    start = t0
    while start < t1 - 1e-9:
        end = min(start + width_s, t1)
        if out and end - start < width_s / 2:
            break  # a sliver at the end (timer jitter) would be a noisy extra row
        inside = [r for r in records if start <= r.end < end]
        summary = summarize(inside, end - start)
        summary.pop("status_counts", None)
        summary.pop("by_kind", None)
        out.append({"t_s": start - t0, **summary})
        start = end
    return out
