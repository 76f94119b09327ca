"""Writing an evaluation to disk: JSON for machines, a PNG and a Markdown summary for people."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from product_classifier.evaluation.metrics import QUALITY_BAR, ClassificationMetrics
from product_classifier.reporting import markdown_table


def _write_json(path: Path, data: Any) -> None:
    # default=str: extras such as paths or datetimes should not break the report.
    path.write_text(
        json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )


def _mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def render_summary(
    metrics: ClassificationMetrics,
    title: str,
    extra: dict[str, Any] | None = None,
    bar: float = QUALITY_BAR,
    image: str | None = "confusion_matrix.png",
) -> str:
    """Markdown: headline numbers, the extras, and a per-class table checked against ``bar``."""
    failing = metrics.failing_classes(bar)
    lines = [
        f"# {title}",
        "",
        f"- Samples: {metrics.n}",
        f"- Accuracy: **{metrics.accuracy:.4f}**",
        f"- Macro-F1: **{metrics.macro_f1:.4f}**",
        f"- Lowest precision: {metrics.min_precision:.4f}; lowest recall: {metrics.min_recall:.4f}",
        f"- Per-class bar (precision and recall ≥ {bar:.2f}): "
        + (
            f"{_mark(True)} all classes pass"
            if not failing
            else f"{_mark(False)} {len(failing)} below: " + ", ".join(c.name for c in failing)
        ),
    ]
    for key, value in (extra or {}).items():
        lines.append(f"- {key}: {value}")
    rows = [
        (
            c.class_id,
            c.name,
            f"{c.precision:.4f}",
            f"{c.recall:.4f}",
            f"{c.f1:.4f}",
            c.support,
            _mark(c.precision >= bar and c.recall >= bar),
        )
        for c in metrics.per_class
    ]
    header = ["id", "class", "precision", "recall", "F1", "support", f"≥ {bar:.2f}"]
    lines += ["", markdown_table(header, rows, align="rlrrrrc")]
    if image:
        lines += ["", f"![Confusion matrix]({image})"]
    return "\n".join(lines) + "\n"


def plot_confusion_matrix(metrics: ClassificationMetrics, path: Path, title: str) -> None:
    """Counts annotated in each cell; colour is the row-normalised rate (recall per true class),
    so classes of different sizes are comparable and off-diagonal confusions stand out."""
    # Imported lazily and without pyplot: no global figure state, no GUI backend, and callers
    # that only need the JSON do not pay for matplotlib.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(metrics.confusion_matrix, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    names = metrics.class_names
    k = len(names)
    size = max(6.0, 0.75 * k + 2)
    fig = Figure(figsize=(size + 1.5, size), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xticks(range(k), labels=names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(k), labels=names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title}\naccuracy {metrics.accuracy:.4f}, macro-F1 {metrics.macro_f1:.4f}")
    font = 8 if k > 6 else 10
    for t in range(k):
        for p in range(k):
            if counts[t, p]:
                colour = "white" if rates[t, p] > 0.5 else "black"
                ax.text(p, t, str(counts[t, p]), ha="center", va="center", color=colour, size=font)
    fig.tight_layout()
    fig.savefig(path)


def write_evaluation_report(
    metrics: ClassificationMetrics,
    out_dir: str | Path,
    title: str,
    extra: dict[str, Any] | None = None,
    bar: float = QUALITY_BAR,
) -> dict[str, Path]:
    """Write metrics.json, confusion_matrix.json, confusion_matrix.png and summary.md.

    ``extra`` (model version, checkpoint, dataset checksums...) is stored under ``"extra"`` in
    metrics.json and listed in the summary. Returns the written paths by kind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out / "metrics.json",
        "confusion_matrix": out / "confusion_matrix.json",
        "confusion_matrix_png": out / "confusion_matrix.png",
        "summary": out / "summary.md",
    }
    _write_json(
        paths["metrics"],
        {
            "title": title,
            "quality_bar": bar,
            "passes_bar": not metrics.failing_classes(bar),
            **metrics.to_dict(),
            "extra": extra or {},
        },
    )
    _write_json(
        paths["confusion_matrix"],
        {
            "rows": "true class",
            "columns": "predicted class",
            "class_names": metrics.class_names,
            "matrix": metrics.confusion_matrix,
        },
    )
    plot_confusion_matrix(metrics, paths["confusion_matrix_png"], title)
    paths["summary"].write_text(
        render_summary(metrics, title, extra, bar, paths["confusion_matrix_png"].name),
        encoding="utf-8",
    )
    return paths
