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
# # Fashion-MNIST: what the model learns from
#
# Class balance, samples per class, pixel statistics and the mean image per class, on
# the official 60k training and 10k test images. Figures are saved to `docs/img/eda-*.png`.
#
# Source of truth: this jupytext file (py:percent). `make test-notebooks` converts it to
# `build/notebooks/01_eda.ipynb` and executes it with nbmake.

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
train_x, train_y = load_fashion_mnist("train")
test_x, test_y = load_fashion_mnist("test")
print(f"train {train_x.shape} {train_x.dtype}, test {test_x.shape}, {N} classes")

# %% [markdown]
# ## Class balance
#
# Both splits are exactly balanced, so plain accuracy is a fair summary and no class
# weighting is needed.

# %%
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
table(["class", "train", "test"], zip(CLASS_NAMES, train_counts, test_counts, strict=True))

# %% [markdown]
# ## Samples
#
# Ten random training images per class (seeded): centred items, bright on a dark
# background, 28x28 grayscale.

# %%
rng = np.random.default_rng(0)
fig, axes = plt.subplots(N, 10, figsize=(7, 7.4))
for c in range(N):
    picks = rng.choice(np.flatnonzero(train_y == c), 10, replace=False)
    for ax, i in zip(axes[c], picks, strict=True):
        ax.imshow(train_x[i], cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[c, 0].set_ylabel(CLASS_NAMES[c], rotation=0, ha="right", va="center")
fig.subplots_adjust(wspace=0.05, hspace=0.05)
show(fig, "eda-samples")

# %% [markdown]
# ## Pixel statistics
#
# The model's input is raw bytes / 255 (the ONNX contract); normalisation happens inside
# the graph. Most pixels are background, and classes differ a lot in how much of the
# frame the item covers: sandals are sparse, pullovers and coats fill the frame.

# %%
# Everything from per-class histograms of the 256 byte values: fast, and exact.
hist = np.stack([np.bincount(train_x[train_y == c].ravel(), minlength=256) for c in range(N)])
values = np.arange(256) / 255.0


def stats(h):
    mean = (h * values).sum() / h.sum()
    std = np.sqrt((h * (values - mean) ** 2).sum() / h.sum())
    return mean, std, h[26:].sum() / h.sum()  # share of pixels > 0.1


mean, std, _ = stats(hist.sum(axis=0))
print(
    f"train pixels in [0, 1]: mean {mean:.4f}, std {std:.4f}; "
    f"{hist[:, 0].sum() / hist.sum():.1%} are exactly 0"
)
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

# %% [markdown]
# ## Mean image per class
#
# The average silhouette of each class. Shirt, T-shirt/top, Pullover and Coat share
# almost the same outline, which is where the model's errors concentrate (see
# `02_error_analysis.py`).

# %%
fig, axes = plt.subplots(1, N, figsize=(12, 1.8))
for c, ax in enumerate(axes):
    ax.imshow(train_x[train_y == c].mean(axis=0), cmap="magma")
    ax.set_title(CLASS_NAMES[c], fontsize=9)
    ax.axis("off")
show(fig, "eda-mean-images")
