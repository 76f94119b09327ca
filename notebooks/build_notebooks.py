"""Write (and optionally execute) the notebooks in this folder from the cell sources below.

The .ipynb files are generated so that their code is reviewable here as plain Python, and
executed once so that the committed notebooks show their outputs::

    .venv/bin/python notebooks/build_notebooks.py              # write the .ipynb files only
    NOTEBOOK_FULL=1 .venv/bin/python notebooks/build_notebooks.py --execute

``NOTEBOOK_FULL=1`` makes 02_error_analysis use the whole 10k test set and write its figures
to docs/img/; without it (as under ``pytest --nbmake notebooks/``) it takes a stratified 1,000
image subset so that it runs in seconds, and leaves docs/img/ alone. 01_eda is fast and always
writes its figures (the same bytes on every run).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str) -> nbformat.NotebookNode:
    return new_code_cell(textwrap.dedent(text).strip())


SETUP = code(
    '''
    import io
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")  # no GUI: figures are shown inline as PNG
    import matplotlib.pyplot as plt
    import numpy as np
    from IPython.display import Image, Markdown, display

    from product_classifier.constants import CLASS_NAMES
    from product_classifier.data.fashion_mnist import load_fashion_mnist

    ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "pyproject.toml").is_file())
    IMG_DIR = ROOT / "docs" / "img"
    plt.rcParams.update({"savefig.dpi": 100, "font.size": 10})
    N = len(CLASS_NAMES)


    def show(fig, name, save=True):
        """Show the figure inline and, when asked, save the same PNG as docs/img/NAME.png."""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        plt.close(fig)
        if save:
            IMG_DIR.mkdir(parents=True, exist_ok=True)
            (IMG_DIR / f"{name}.png").write_bytes(buf.getvalue())
        display(Image(data=buf.getvalue(), width=640))


    def table(header, rows):
        """A small Markdown table (renders on GitHub and in Jupyter)."""
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
        display(Markdown("\\n".join(lines)))
    '''
)

EDA = [
    md(
        """
        # Fashion-MNIST: what the model learns from

        Class balance, samples per class, pixel statistics and the mean image per class, on
        the official 60k training and 10k test images. Figures are saved to `docs/img/eda-*.png`.
        """
    ),
    SETUP,
    code(
        """
        train_x, train_y = load_fashion_mnist("train")
        test_x, test_y = load_fashion_mnist("test")
        print(f"train {train_x.shape} {train_x.dtype}, test {test_x.shape}, {N} classes")
        """
    ),
    md(
        """
        ## Class balance

        Both splits are exactly balanced, so plain accuracy is a fair summary and no class
        weighting is needed.
        """
    ),
    code(
        """
        train_counts = np.bincount(train_y, minlength=N)
        test_counts = np.bincount(test_y, minlength=N)
        fig, ax = plt.subplots(figsize=(9, 3.2))
        pos = np.arange(N)
        ax.bar(pos - 0.2, train_counts, 0.4, label="train")
        ax.bar(pos + 0.2, test_counts, 0.4, label="test")
        ax.set_xticks(pos, CLASS_NAMES, rotation=30, ha="right")
        ax.set_ylabel("images")
        ax.set_title("Images per class")
        ax.set_ylim(0, 7500)
        ax.legend(loc="upper center", ncol=2)
        show(fig, "eda-class-balance")
        table(["class", "train", "test"], zip(CLASS_NAMES, train_counts, test_counts))
        """
    ),
    md(
        """
        ## Samples

        Ten random training images per class (seeded): centred items, bright on a dark
        background, 28x28 grayscale.
        """
    ),
    code(
        """
        rng = np.random.default_rng(0)
        fig, axes = plt.subplots(N, 10, figsize=(7, 7.4))
        for c in range(N):
            picks = rng.choice(np.flatnonzero(train_y == c), 10, replace=False)
            for ax, i in zip(axes[c], picks):
                ax.imshow(train_x[i], cmap="gray", vmin=0, vmax=255)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[c, 0].set_ylabel(CLASS_NAMES[c], rotation=0, ha="right", va="center")
        fig.subplots_adjust(wspace=0.05, hspace=0.05)
        show(fig, "eda-samples")
        """
    ),
    md(
        """
        ## Pixel statistics

        The model's input is raw bytes / 255 (the ONNX contract); normalisation happens inside
        the graph. Most pixels are background, and classes differ a lot in how much of the
        frame the item covers: sandals are sparse, pullovers and coats fill the frame.
        """
    ),
    code(
        """
        # Everything from per-class histograms of the 256 byte values: fast, and exact.
        hist = np.stack([np.bincount(train_x[train_y == c].ravel(), minlength=256)
                         for c in range(N)])
        values = np.arange(256) / 255.0


        def stats(h):
            mean = (h * values).sum() / h.sum()
            std = np.sqrt((h * (values - mean) ** 2).sum() / h.sum())
            return mean, std, h[26:].sum() / h.sum()  # share of pixels > 0.1


        mean, std, _ = stats(hist.sum(axis=0))
        print(f"train pixels in [0, 1]: mean {mean:.4f}, std {std:.4f}; "
              f"{hist[:, 0].sum() / hist.sum():.1%} are exactly 0")
        rows = []
        for c in range(N):
            m, s, cover = stats(hist[c])
            rows.append((CLASS_NAMES[c], f"{m:.3f}", f"{s:.3f}", f"{cover:.1%}"))
        table(["class", "mean", "std", "pixels > 0.1 (item coverage)"], rows)
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.bar(np.arange(1, 256), hist.sum(axis=0)[1:], width=1.0, color="#2457c5")
        ax.set_yscale("log")
        ax.set_xlabel("pixel value (non-zero pixels only)")
        ax.set_ylabel("count (log scale)")
        ax.set_title("Pixel intensities, training set")
        show(fig, "eda-pixel-histogram")
        """
    ),
    md(
        """
        ## Mean image per class

        The average silhouette of each class. Shirt, T-shirt/top, Pullover and Coat share
        almost the same outline, which is where the model's errors concentrate (see
        `02_error_analysis.ipynb`).
        """
    ),
    code(
        """
        fig, axes = plt.subplots(1, N, figsize=(12, 1.8))
        for c, ax in enumerate(axes):
            ax.imshow(train_x[train_y == c].mean(axis=0), cmap="magma")
            ax.set_title(CLASS_NAMES[c], fontsize=9)
            ax.axis("off")
        show(fig, "eda-mean-images")
        """
    ),
]

ERRORS = [
    md(
        """
        # Error analysis of the released model

        `artifacts/model.onnx` through onnxruntime (exactly what the service runs) on the
        Fashion-MNIST test set: the most confused pairs, the hardest examples (highest loss)
        and calibration (reliability diagram, ECE). With `NOTEBOOK_FULL=1` in the environment
        it uses all 10k test images and saves `docs/img/errors-*.png`; otherwise it takes the
        first 100 test images of each class (fast, for CI) and writes nothing.
        """
    ),
    SETUP,
    code(
        """
        import json
        import os

        from product_classifier.inference.predictor import OnnxPredictor, PredictorOptions
        from product_classifier.preprocessing import to_model_input

        FULL = os.environ.get("NOTEBOOK_FULL") == "1"
        REVIEW_THRESHOLD = 0.7  # the service's default needs_review threshold

        images, labels = load_fashion_mnist("test")
        if not FULL:
            keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:100] for c in range(N)]))
            images, labels = images[keep], labels[keep]
        card = json.loads((ROOT / "artifacts" / "model_card.json").read_text())
        predictor = OnnxPredictor(ROOT / "artifacts" / "model.onnx",
                                  PredictorOptions(intra_op_threads=0))
        logits = np.concatenate([predictor.predict_logits(to_model_input(images[i : i + 500]))
                                 for i in range(0, len(images), 500)])
        z = logits - logits.max(axis=1, keepdims=True)
        log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        probs = np.exp(log_probs)
        pred, conf = probs.argmax(axis=1), probs.max(axis=1)
        correct = pred == labels
        loss = -log_probs[np.arange(len(labels)), labels]
        card_accuracy = card["metrics"]["test"]["accuracy"]
        print(f"{predictor.model_version} on {len(labels)} test images: accuracy "
              f"{correct.mean():.4f} (model card, all 10k: {card_accuracy:.4f})")
        """
    ),
    md(
        """
        ## Most confused pairs

        Off-diagonal cells of the confusion matrix, largest first. Upper-body garments (Shirt,
        T-shirt/top, Pullover, Coat) dominate: at 28x28 grayscale, the collar, buttons and
        sleeve length that tell them apart are a few pixels.
        """
    ),
    code(
        """
        cm = np.zeros((N, N), dtype=int)
        np.add.at(cm, (labels, pred), 1)
        support = cm.sum(axis=1)
        pairs = sorted(((cm[t, p], t, p) for t in range(N) for p in range(N) if t != p),
                       reverse=True)[:10]
        table(["true", "predicted as", "images", "share of the true class"],
              [(CLASS_NAMES[t], CLASS_NAMES[p], k, f"{k / support[t]:.1%}") for k, t, p in pairs])

        rates = cm / support[:, None]
        fig, ax = plt.subplots(figsize=(6.5, 5.5))
        im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for t in range(N):
            for p in range(N):
                if cm[t, p]:
                    ax.text(p, t, cm[t, p], ha="center", va="center", fontsize=7,
                            color="white" if rates[t, p] > 0.5 else "black")
        ax.set_xticks(range(N), CLASS_NAMES, rotation=45, ha="right")
        ax.set_yticks(range(N), CLASS_NAMES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"Confusion matrix ({len(labels)} test images)")
        fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
        show(fig, "errors-confusion", save=FULL)
        """
    ),
    md(
        """
        ## Hardest examples

        The test images with the highest cross-entropy loss: the model was confident and
        wrong. Several look mislabelled or ambiguous even to a person, which bounds what any
        model can reach on this dataset.
        """
    ),
    code(
        """
        hardest = np.argsort(-loss)[:18]
        fig, axes = plt.subplots(3, 6, figsize=(10, 6.6))
        for ax, i in zip(axes.ravel(), hardest):
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
            ax.axis("off")
            ax.set_title(f"true {CLASS_NAMES[labels[i]]}\\n"
                         f"pred {CLASS_NAMES[pred[i]]} ({conf[i]:.0%})", fontsize=8)
        fig.suptitle("Highest-loss test images")
        fig.tight_layout()
        show(fig, "errors-hardest", save=FULL)
        """
    ),
    md(
        """
        ## Calibration

        A reliability diagram bins the predictions by confidence and compares each bin's
        accuracy with its mean confidence; the expected calibration error (ECE) is the
        support-weighted gap. Calibration is what makes the `needs_review` threshold
        meaningful: the right-hand plot shows what share of photos would be accepted without
        review, and how accurate those are, for each threshold.
        """
    ),
    code(
        """
        BINS = 15
        edges = np.linspace(0.0, 1.0, BINS + 1)
        which = np.clip(np.digitize(conf, edges[1:-1]), 0, BINS - 1)
        bin_n = np.bincount(which, minlength=BINS)
        used = bin_n > 0
        bin_acc = np.array([correct[which == b].mean() if used[b] else 0.0 for b in range(BINS)])
        bin_conf = np.array([conf[which == b].mean() if used[b] else 0.0 for b in range(BINS)])
        ece = float(np.sum(bin_n / len(conf) * np.abs(bin_acc - bin_conf)))
        flagged = conf < REVIEW_THRESHOLD
        print(f"ECE ({BINS} equal-width bins): {ece:.4f}")
        print(f"needs_review at {REVIEW_THRESHOLD}: {flagged.mean():.1%} of photos flagged; "
              f"accuracy {correct[~flagged].mean():.2%} on the others, "
              f"{correct[flagged].mean():.1%} on the flagged ones")

        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        centers = (edges[:-1] + edges[1:]) / 2
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.bar(centers[used], bin_acc[used], width=1 / BINS, edgecolor="white", alpha=0.8,
               label="accuracy per bin")
        ax.plot(bin_conf[used], bin_acc[used], "o-", color="#d98a00",
                label="(mean confidence, accuracy)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"Reliability diagram, ECE = {ece:.3f}")
        ax.legend(loc="upper left")
        thresholds = np.linspace(0.3, 0.99, 70)
        ax2.plot(thresholds, [(conf >= t).mean() for t in thresholds],
                 label="share accepted without review")
        ax2.plot(thresholds, [correct[conf >= t].mean() for t in thresholds],
                 label="accuracy of the accepted")
        ax2.axvline(REVIEW_THRESHOLD, color="grey", ls=":",
                    label=f"default threshold {REVIEW_THRESHOLD}")
        ax2.set_ylim(0.8, 1.001)
        ax2.set_xlabel("review threshold")
        ax2.set_title("What a review threshold trades")
        ax2.legend(loc="lower left")
        fig.tight_layout()
        show(fig, "errors-calibration", save=FULL)
        """
    ),
]

NOTEBOOKS = {"01_eda.ipynb": EDA, "02_error_analysis.ipynb": ERRORS}


def build(name: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=NOTEBOOKS[name])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write (and run) the notebooks.")
    parser.add_argument("--execute", action="store_true", help="run them and keep the outputs")
    parser.add_argument("names", nargs="*", default=sorted(NOTEBOOKS))
    args = parser.parse_args(argv)
    for name in args.names:
        nb = build(name)
        if args.execute:
            from nbclient import NotebookClient

            NotebookClient(nb, timeout=900, resources={"metadata": {"path": str(HERE)}}).execute()
        path = HERE / name
        nbformat.write(nb, path)
        print(f"{path} ({path.stat().st_size / 1024:.0f} KiB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
