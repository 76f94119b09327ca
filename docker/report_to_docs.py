"""Copy the figures of reports/containers.json into the marked block of docs/containers.md.

Usage: python docker/report_to_docs.py reports/containers.json docs/containers.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from product_classifier.reporting import markdown_table

BEGIN, END = "<!-- docker-test:begin -->", "<!-- docker-test:end -->"


def render(report: dict[str, Any]) -> str:
    cold = ", ".join(f"{s:.2f}" for s in report["cold_start_s"])
    cpu = ", ".join("n/a" if s is None else f"{s:.2f}" for s in report["cold_start_cpu_s"])
    pred = report["predictions"]
    rows = [
        ("Image", f"`{report['image']}` on `{report['base_image']}`"),
        ("Image size", f"{report['image_size_mb']} MB ({report['image_size_bytes']:,} bytes)"),
        (
            "Cold start, `docker run` -> `/ready` 200",
            f"median {report['cold_start_median_s']:.2f} s (runs: {cold}; load average "
            f"{report['load_average_1m']} at the start, {report['cpus']} CPUs)",
        ),
        ("Container CPU time until ready", f"{cpu} s"),
        ("Image build (warm wheelhouse)", f"{report['image_build_s']} s"),
        ("SIGTERM", f"exit {report['sigterm_exit_code']} after {report['sigterm_stop_s']} s"),
        (
            "Predictions",
            f"`{pred.get('model', '?')}`: {pred['images']} test images, accuracy "
            f"{pred['accuracy']:.3f}, "
            f"{pred['host_parity_mismatches']} differences from the host",
        ),
        ("Logs", f"{report['logs']['log_lines']} lines, all JSON"),
        (
            "Prometheus",
            f"target up, {report['prometheus']['rule_groups']} rule groups, "
            f"{report['prometheus']['alertmanagers']} Alertmanager",
        ),
        ("Grafana", report["grafana"]),
        ("Whole `make docker-test`", f"{report['total_s']} s"),
    ]
    if report.get("train"):
        tr = report["train"]
        rows.insert(
            4,
            (
                "`train` target",
                f"torch {tr['torch']}, {tr['image_size_mb']} MB, built in {tr['build_s']} s, "
                f"1 epoch on 2% of the data in {tr['one_epoch_2pct_s']} s",
            ),
        )
    return "\n".join([BEGIN, markdown_table(["What", "Measured"], rows), END])


def main() -> int:
    report = json.loads(Path(sys.argv[1]).read_text())
    doc = Path(sys.argv[2])
    text = doc.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    doc.write_text(text[:start] + render(report) + text[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
