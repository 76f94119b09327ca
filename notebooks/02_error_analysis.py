# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Error analysis of the released model
#
# `artifacts/model.onnx` through onnxruntime (exactly what the service runs) on the
# Fashion-MNIST test set: the most confused pairs, the hardest examples (highest loss)
# and calibration (reliability diagram, ECE). With `NOTEBOOK_FULL=1` in the environment
# it uses all 10k test images and saves `docs/img/errors-*.png`; otherwise it takes the
# first 100 test images of each class (fast, for CI) and writes nothing.
#
# Source of truth: this jupytext file (py:percent). `make test-notebooks` converts it to
# `build/notebooks/02_error_analysis.ipynb` and executes it with nbmake;
# `NOTEBOOK_FULL=1 make test-notebooks` regenerates the figures in `docs/img/`.

# %%
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no GUI: figures are shown inline as PNG
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, Markdown, display

from product_classifier.constants import CLASS_NAMES
from product_classifier.data.fashion_mnist import load_fashion_mnist
from product_classifier.reporting import markdown_table

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
    display(Markdown(markdown_table(header, rows)))


# %%
import json  # noqa: E402 (this cell's own imports)
import os  # noqa: E402

from product_classifier.inference.predictor import OnnxPredictor, PredictorOptions  # noqa: E402
from product_classifier.preprocessing import to_model_input  # noqa: E402

FULL = os.environ.get("NOTEBOOK_FULL") == "1"
REVIEW_THRESHOLD = 0.7  # the service's default needs_review threshold

images, labels = load_fashion_mnist("test")
if not FULL:
    keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:100] for c in range(N)]))
    images, labels = images[keep], labels[keep]
card = json.loads((ROOT / "artifacts" / "model_card.json").read_text())
predictor = OnnxPredictor(ROOT / "artifacts" / "model.onnx", PredictorOptions(intra_op_threads=0))
logits = np.concatenate(
    [
        predictor.predict_logits(to_model_input(images[i : i + 500]))
        for i in range(0, len(images), 500)
    ]
)
z = logits - logits.max(axis=1, keepdims=True)
log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
probs = np.exp(log_probs)
pred, conf = probs.argmax(axis=1), probs.max(axis=1)
correct = pred == labels
loss = -log_probs[np.arange(len(labels)), labels]
card_accuracy = card["metrics"]["test"]["accuracy"]
print(
    f"{predictor.model_version} on {len(labels)} test images: accuracy "
    f"{correct.mean():.4f} (model card, all 10k: {card_accuracy:.4f})"
)

# %% [markdown]
# ## Most confused pairs
#
# Off-diagonal cells of the confusion matrix, largest first. Upper-body garments (Shirt,
# T-shirt/top, Pullover, Coat) dominate: at 28x28 grayscale, the collar, buttons and
# sleeve length that tell them apart are a few pixels.

# %%
cm = np.zeros((N, N), dtype=int)
np.add.at(cm, (labels, pred), 1)
support = cm.sum(axis=1)
pairs = sorted(((cm[t, p], t, p) for t in range(N) for p in range(N) if t != p), reverse=True)[:10]
table(
    ["true", "predicted as", "images", "share of the true class"],
    [(CLASS_NAMES[t], CLASS_NAMES[p], k, f"{k / support[t]:.1%}") for k, t, p in pairs],
)

rates = cm / support[:, None]
fig, ax = plt.subplots(figsize=(6.5, 5.5))
im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
for t in range(N):
    for p in range(N):
        if cm[t, p]:
            ax.text(
                p,
                t,
                cm[t, p],
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rates[t, p] > 0.5 else "black",
            )
ax.set_xticks(range(N), CLASS_NAMES, rotation=45, ha="right")
ax.set_yticks(range(N), CLASS_NAMES)
ax.set_xlabel("predicted")
ax.set_ylabel("true")
ax.set_title(f"Confusion matrix ({len(labels)} test images)")
fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
show(fig, "errors-confusion", save=FULL)

# %% [markdown]
# ## Hardest examples
#
# The test images with the highest cross-entropy loss: the model was confident and
# wrong. Several look mislabelled or ambiguous even to a person, which bounds what any
# model can reach on this dataset.

# %%
hardest = np.argsort(-loss)[:18]
fig, axes = plt.subplots(3, 6, figsize=(10, 6.6))
for ax, i in zip(axes.ravel(), hardest, strict=True):
    ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
    ax.axis("off")
    ax.set_title(
        f"true {CLASS_NAMES[labels[i]]}\npred {CLASS_NAMES[pred[i]]} ({conf[i]:.0%})", fontsize=8
    )
fig.suptitle("Highest-loss test images")
fig.tight_layout()
show(fig, "errors-hardest", save=FULL)

# %% [markdown]
# ## Calibration
#
# A reliability diagram bins the predictions by confidence and compares each bin's
# accuracy with its mean confidence; the expected calibration error (ECE) is the
# support-weighted gap. Calibration is what makes the `needs_review` threshold
# meaningful: the right-hand plot shows what share of photos would be accepted without
# review, and how accurate those are, for each threshold.

# %%
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
print(
    f"needs_review at {REVIEW_THRESHOLD}: {flagged.mean():.1%} of photos flagged; "
    f"accuracy {correct[~flagged].mean():.2%} on the others, "
    f"{correct[flagged].mean():.1%} on the flagged ones"
)

fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
centers = (edges[:-1] + edges[1:]) / 2
ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
ax.bar(
    centers[used],
    bin_acc[used],
    width=1 / BINS,
    edgecolor="white",
    alpha=0.8,
    label="accuracy per bin",
)
ax.plot(bin_conf[used], bin_acc[used], "o-", color="#d98a00", label="(mean confidence, accuracy)")
ax.set_xlim(0, 1)
ax.set_ylim(0, 1)
ax.set_xlabel("confidence")
ax.set_ylabel("accuracy")
ax.set_title(f"Reliability diagram, ECE = {ece:.3f}")
ax.legend(loc="upper left")
thresholds = np.linspace(0.3, 0.99, 70)
ax2.plot(
    thresholds, [(conf >= t).mean() for t in thresholds], label="share accepted without review"
)
ax2.plot(
    thresholds, [correct[conf >= t].mean() for t in thresholds], label="accuracy of the accepted"
)
ax2.axvline(REVIEW_THRESHOLD, color="grey", ls=":", label=f"default threshold {REVIEW_THRESHOLD}")
ax2.set_ylim(0.8, 1.001)
ax2.set_xlabel("review threshold")
ax2.set_title("What a review threshold trades")
ax2.legend(loc="lower left")
fig.tight_layout()
show(fig, "errors-calibration", save=FULL)
