"""One validation split for every held-out choice: training, the cascade, the review policy,
WiSE-FT and the preprocessing/TTA/INT8 sweeps all read it through ``fashion_mnist_split``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from product_classifier.config import DataConfig
from product_classifier.data.dataset import load_dataset
from product_classifier.data.split import fashion_mnist_split
from product_classifier.export.review import validation_split
from product_classifier.preprocessing import FASHION_MNIST_SPEC, to_model_input

CARD = Path(__file__).resolve().parents[2] / "artifacts/model_card.json"


def test_the_choices_see_the_images_training_held_out(fashion_mnist) -> None:
    data = {"val_fraction": 0.1, "split_seed": 42}
    split = fashion_mnist_split(data, fashion_mnist.directory)
    assert len(np.intersect1d(split.train_idx, split.val_idx)) == 0
    assert len(split.train_idx) + len(split.val_idx) == len(split.labels) == 60_000
    trained = load_dataset(
        DataConfig(data_dir=fashion_mnist.directory, **data),
        FASHION_MNIST_SPEC,
        splits=("train", "val"),
    )
    assert np.array_equal(trained.images["val"], split.val_images)
    assert np.array_equal(trained.labels["val"], split.val_labels)
    assert np.array_equal(trained.images["train"], split.images[split.train_idx])
    # Another seed is another split: the card's values are read, not assumed.
    other = fashion_mnist_split({"val_fraction": 0.1, "split_seed": 7}, fashion_mnist.directory)
    assert not np.array_equal(other.val_idx, split.val_idx)
    # No data config (a card without one) means DataConfig's defaults.
    assert np.array_equal(fashion_mnist_split(None, fashion_mnist.directory).val_idx, split.val_idx)


def test_the_review_policy_reads_the_cards_split(fashion_mnist) -> None:
    card = json.loads(CARD.read_text()) if CARD.is_file() else {}
    split = fashion_mnist_split(card.get("config", {}).get("data"), fashion_mnist.directory)
    images, labels = validation_split(card, fashion_mnist.directory)
    assert np.array_equal(labels, split.val_labels)
    assert np.array_equal(images, to_model_input(split.val_images))
