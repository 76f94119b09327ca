"""How well does a catalog model do, and how many pictures does it need? -> docs/catalog-report.md

    python scripts/catalog_report.py            # make catalog-report (about 10 min on 2 cores)

Builds the six-category picture folder from pinned public packages
(``scripts/picture_sets/build_catalog.py``: icons and emoji of hats, watches, glasses, mugs,
umbrellas and socks; its test part comes from OTHER packages than its train part), then, for
several numbers of training pictures per category, runs exactly what a user runs:
``train --data DIR/train`` with the shipped ``configs/catalog.yaml`` defaults, ``export``, and
``evaluate --data DIR/test``. Every figure in the generated page comes from this run; the raw
numbers go to ``docs/evidence/catalog-report.json``.

The in-folder test split holds other renders of the training icons (same drawing, other
colour, size or angle), so it is optimistic; the held-out pictures are the honest figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from product_classifier.reporting import markdown_table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "picture_sets"))

DOC = ROOT / "docs" / "catalog-report.md"
PLOT = ROOT / "docs" / "img" / "catalog-learning-curve.png"
RAW = ROOT / "docs" / "evidence" / "catalog-report.json"
SIZES = (15, 30, 60, None)  # training pictures per category; None: the whole folder


def run_one(folder: Path, work: Path) -> dict[str, Any]:
    """train -> export -> evaluate on the held-out sources, with the shipped defaults."""
    from product_classifier.config import load_experiment_config
    from product_classifier.evaluation.evaluate import evaluate_model
    from product_classifier.export.release import release_checkpoint
    from product_classifier.training.trainer import train

    cfg = load_experiment_config(ROOT / "configs" / "catalog.yaml")
    cfg.data.folder = folder / "train"
    started = time.perf_counter()
    result = train(cfg, run_dir=work / "run", progress=False)
    train_seconds = time.perf_counter() - started
    card = release_checkpoint(result.best_checkpoint, work / "out", reports_dir=None)
    held_out, _, _ = evaluate_model(work / "out" / "model.onnx", folder=folder / "test")
    counts = json.loads((work / "run" / "data_manifest.json").read_text())["counts"]
    return {
        "train_pictures_per_category": counts["train"],
        "train_seconds": train_seconds,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "val_accuracy": result.best_val_accuracy,
        "in_folder_test": card["metrics"]["test"],
        "held_out": held_out.to_dict(),
        "parameters": result.parameters,
        "size_bytes": card["size_bytes"],
    }


def _size(row: dict[str, Any], folder: dict[str, Any]) -> int:
    """Training pictures per category before the split: the cap, or the folder's most."""
    return row["per_category"] or max(folder["train_per_category"].values())


def plot(rows: list[dict[str, Any]], folder: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = [_size(r, folder) for r in rows]
    ax.plot(x, [r["held_out"]["accuracy"] for r in rows], "o-", label="held-out sources")
    ax.plot(x, [r["in_folder_test"]["accuracy"] for r in rows], "s--", label="in-folder test")
    ax.axhline(1 / 6, color="grey", lw=0.8, ls=":", label="chance (6 categories)")
    ax.set_xlabel("training pictures per category (before the val/test split)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("configs/catalog.yaml on the six-category picture folder")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def render(report: dict[str, Any]) -> str:
    rows = report["runs"]
    counts = report["folder"]["train_per_category"]
    whole = f"all ({min(counts.values())}-{max(counts.values())})"
    curve = markdown_table(
        [
            "pictures per category",
            "trained on (after val/test split)",
            "train min",
            "epochs",
            "val acc",
            "in-folder test acc",
            "held-out acc",
            "held-out macro-F1",
        ],
        [
            [
                r["per_category"] or whole,
                sum(r["train_pictures_per_category"].values()),
                f"{r['train_seconds'] / 60:.1f}",
                r["epochs_run"],
                f"{r['val_accuracy']:.1%}",
                f"{r['in_folder_test']['accuracy']:.1%}",
                f"{r['held_out']['accuracy']:.1%}",
                f"{r['held_out']['macro_f1']:.3f}",
            ]
            for r in rows
        ],
    )
    full = rows[-1]
    per_class = markdown_table(
        ["category", "precision", "recall", "F1", "pictures"],
        [
            [
                c["name"],
                f"{c['precision']:.3f}",
                f"{c['recall']:.3f}",
                f"{c['f1']:.3f}",
                c["support"],
            ]
            for c in full["held_out"]["per_class"]
        ],
    )
    m = report["machine"]
    return f"""# Catalog models: accuracy and pictures needed

Generated by `python scripts/catalog_report.py` (`make catalog-report`) on {report["date"]};
do not edit by hand, rerun instead. Raw numbers: `docs/evidence/catalog-report.json`.
Machine: {m["cpus"]} CPU cores, {m["platform"]}, torch {m["torch"]}.

**Data.** `scripts/picture_sets/build_catalog.py` builds a folder of six categories that
Fashion-MNIST never saw (glasses, hat, mug, socks, umbrella, watch) from pinned icon and emoji
packages: {report["folder"]["train"]} training pictures (several renders of each icon: colour,
size, angle, page, format) and {report["folder"]["test"]} **held-out** pictures drawn by other
designers (other packages, no design family on both sides). Each run trains on `train/` only,
capped at the number of pictures per category in the first column, with the shipped
`configs/catalog.yaml` defaults (64x64 RGB letterbox, ResNet-14 width 16, {full["parameters"]:,}
parameters, {full["size_bytes"] / 1e6:.2f} MB ONNX), and is scored on the held-out pictures.

The in-folder test split holds other renders of training icons, so it flatters the model; the
held-out column is what to expect on pictures from a new source.

{curve}

![Accuracy against training pictures per category](img/catalog-learning-curve.png)

## The whole folder, per category (held-out sources)

Accuracy {full["held_out"]["accuracy"]:.1%}, macro-F1 {full["held_out"]["macro_f1"]:.3f} on
{full["held_out"]["n"]} pictures; trained in {full["train_seconds"] / 60:.1f} min.

{per_class}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", help="pictures per category to try")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the page and plot from the last run's raw JSON (no training)",
    )
    args = parser.parse_args()
    if args.render_only:
        report = json.loads(RAW.read_text())
        plot(report["runs"], report["folder"], PLOT)
        DOC.write_text(render(report))
        return
    sizes: tuple[int | None, ...] = (*args.sizes, None) if args.sizes else SIZES

    import torch
    from build_catalog import build_catalog

    runs = []
    with tempfile.TemporaryDirectory(prefix="catalog-report-") as tmp:
        for size in sizes:
            folder = Path(tmp) / f"folder-{size or 'all'}"
            build_catalog(folder, per_category=size, quiet=True)
            print(f"== {size or 'all'} pictures per category", flush=True)
            row = run_one(folder, Path(tmp) / f"work-{size or 'all'}")
            row["per_category"] = size  # None: the whole folder
            runs.append(row)
            print(
                f"   held-out accuracy {row['held_out']['accuracy']:.3f}, "
                f"{row['train_seconds'] / 60:.1f} min",
                flush=True,
            )
        manifest = json.loads((Path(tmp) / "folder-all" / "manifest.json").read_text())
    pictures = manifest["pictures"]
    per_category: dict[str, int] = {}
    for p in pictures:
        if p["split"] == "train":
            per_category[p["category"]] = per_category.get(p["category"], 0) + 1
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpus": torch.get_num_threads(),
            "platform": f"{platform.system()} {platform.machine()}",
            "torch": torch.__version__,
        },
        "folder": {
            "train": sum(1 for p in pictures if p["split"] == "train"),
            "test": sum(1 for p in pictures if p["split"] == "test"),
            "train_per_category": per_category,
        },
        "runs": runs,
    }
    RAW.parent.mkdir(parents=True, exist_ok=True)
    RAW.write_text(json.dumps(report, indent=1) + "\n")
    plot(runs, report["folder"], PLOT)
    DOC.write_text(render(report))
    print(f"wrote {DOC}, {PLOT}, {RAW}")


if __name__ == "__main__":
    main()
