"""The release step that chooses the review policy and records it in the model card.

``product-classifier review --dev DIR`` scores the served default (what ``serve`` loads: the
cascade when the card has one) on the Fashion-MNIST validation split and on a labelled dev
folder of real pictures (one sub-folder per category, plus ``out-of-scope``), chooses the
temperature and the two thresholds (``evaluation/review.py``) and writes them to the card's
``review`` section, which the service and the bulk CLI read (``inference/review.py``). No test
image is read here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from product_classifier.evaluation.review import (
    MAX_CLEAN_FLAG_RATE,
    LabelledProbs,
    choose_policy,
    review_metrics,
)
from product_classifier.inference.expert import opinion_of
from product_classifier.inference.review import ReviewPolicy

OUT_OF_SCOPE_FOLDER = "out-of-scope"


class ReviewChoiceError(ValueError):
    """The policy cannot be chosen (no dev folder, categories the model lacks...)."""


def labelled_folder(predictor: Any, folder: Path, expert: Any = None) -> LabelledProbs:
    """The predictor's probabilities on a folder of real pictures; ``out-of-scope`` is -1.

    Folder names are matched to the model's categories as catalog folders are ("T-shirt-top"
    is T-shirt/top); a folder that names none of them is an error, not a silent skip. Every
    file must be a picture in the review policy's sense (not a 28x28 image, which the service
    scores with the dataset's policy), since these are scored with the pictures' policy.
    """
    from product_classifier.data.folder import load_folder
    from product_classifier.data.folder_import import category_of
    from product_classifier.preprocessing import to_model_input

    if not folder.is_dir():
        raise ReviewChoiceError(f"not a folder of pictures: {folder}")
    data = load_folder(folder, predictor.spec, min_images_per_class=1, progress=False)
    from product_classifier.preprocessing import is_dataset_form

    labels = []
    for picture in data.pictures:
        if is_dataset_form((folder / picture.path).read_bytes()):
            raise ReviewChoiceError(
                f"{folder / picture.path}: a 28x28 image is in the dataset's form, not a real "
                "picture"
            )
        if picture.category == OUT_OF_SCOPE_FOLDER:
            labels.append(-1)
            continue
        label = category_of(picture.category)
        if label is None or label >= len(predictor.class_names):
            raise ReviewChoiceError(
                f"{folder}: sub-folder {picture.category!r} is none of the model's categories "
                f"({', '.join(predictor.class_names)}) nor {OUT_OF_SCOPE_FOLDER!r}"
            )
        labels.append(label)
    images = to_model_input(data.images, predictor.spec)
    probs = predictor.predict_proba(images)
    groups = design_groups(folder, [picture.path for picture in data.pictures])
    # The picture expert's top probability: the pictures' second opinion (inference/expert.py).
    opinion = None if expert is None else opinion_of(expert, images)
    return LabelledProbs(probs, np.array(labels), groups, opinion)


def design_groups(folder: Path, paths: list[str]) -> np.ndarray:
    """Which design family each picture comes from, for cross-validation that never has one
    style on both sides: the benchmark's manifest beside the folder names the family of each
    file; otherwise the file name's prefix before ``__`` (the source icon set), or the file
    itself."""
    import json

    families: dict[str, str] = {}
    manifest = folder.parent / "manifest.json"
    if manifest.is_file():
        prefix = f"{folder.name}/"
        try:
            for entry in json.loads(manifest.read_text()).get("pictures", []):
                if entry["file"].startswith(prefix):
                    families[entry["file"][len(prefix) :]] = entry["family"]
        except (ValueError, KeyError, TypeError, AttributeError):
            families = {}  # not the benchmark's manifest: name prefixes instead
    return np.array(
        [families.get(path) or Path(path).name.split("__")[0] for path in paths], dtype=object
    )


def real_picture_metrics(
    predictor: Any, policy: ReviewPolicy, folder: Path, expert: Any = None
) -> dict[str, Any]:
    """A labelled folder as the service answers it (``policy``'s pictures' policy included,
    with the picture ``expert``'s second opinion when there is one): accuracy, balanced and
    per category, the review flag's rates, out-of-scope detection, calibration."""
    return labelled_metrics(
        labelled_folder(predictor, folder, expert), policy, predictor.class_names
    )


def labelled_metrics(
    data: LabelledProbs, policy: ReviewPolicy, names: tuple[str, ...]
) -> dict[str, Any]:
    """:func:`real_picture_metrics` for probabilities already computed."""
    from product_classifier.evaluation.review import expected_calibration_error

    policy = policy.for_upload(picture=True)
    pred = policy.calibrate(data.probs).argmax(1)  # a bias can change the answer
    per_class = {
        names[k]: float((pred[data.labels == k] == k).mean())
        for k in range(len(names))
        if (data.labels == k).any()
    }
    out = review_metrics(policy, data)
    inside = data.in_scope
    raw_ece, _ = expected_calibration_error(data.probs[inside], data.labels[inside])
    out.update(
        balanced_accuracy=float(np.mean(list(per_class.values()))),
        per_class=per_class,
        ece_before_temperature=raw_ece,
    )
    return out


def validation_split(
    card: dict[str, Any], data_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The released model's validation images (Fashion-MNIST train, the card's split), as
    model input, and their labels."""
    from product_classifier.data.split import fashion_mnist_split
    from product_classifier.preprocessing import to_model_input

    split = fashion_mnist_split(card.get("config", {}).get("data"), data_dir)
    return to_model_input(split.val_images), split.val_labels


# Validation images rendered as shop photos for the pictures' policy's check (the same
# renders, seed and count as scripts/preprocessing_sweep.py).
RENDERS, RENDER_SEED = 2000, 0


def validation_renders(
    predictor: Any, card: dict[str, Any], data_dir: Path | None = None, expert: Any = None
) -> LabelledProbs:
    """The predictor on Fashion-MNIST validation images rendered as shop photos and put
    through the service's preprocessing: what the pictures' policy must not make worse
    (with the picture ``expert``'s opinion on them when there is one)."""
    from product_classifier.data.split import fashion_mnist_split
    from product_classifier.evaluation.photos import build_photo_set, service_images
    from product_classifier.preprocessing import to_model_input

    split = fashion_mnist_split(card.get("config", {}).get("data"), data_dir)
    photos = build_photo_set(
        split.val_images, split.val_labels, n=RENDERS, seed=RENDER_SEED, split="val"
    )
    images, ok = service_images([photo.data for photo in photos])
    if len(ok) != len(photos):  # renders are made to decode: anything else is a bug
        raise ReviewChoiceError(f"{len(photos) - len(ok)} validation renders did not decode")
    inputs = to_model_input(np.stack(images))
    probs = predictor.predict_proba(inputs)
    opinion = None if expert is None else opinion_of(expert, inputs)
    return LabelledProbs(probs, np.array([photo.label for photo in photos]), opinion=opinion)


def choose_review(
    model_path: Path,
    dev: Path,
    *,
    cascade: bool = True,
    data_dir: Path | None = None,
    max_clean_flag_rate: float = MAX_CLEAN_FLAG_RATE,
    write: bool = True,
) -> dict[str, Any]:
    """Choose the policy for ``model_path`` (as served) and record it; returns the entry."""
    from product_classifier.export.quantize import record_section
    from product_classifier.inference.model_card import default_card_path, load_verified_model
    from product_classifier.provenance import utc_now

    model = load_verified_model(model_path, cascade=cascade)
    predictor = model.predictor
    images, labels = validation_split(model.card, data_dir)
    validation = LabelledProbs(predictor.predict_proba(images), labels)
    dev_data = labelled_folder(predictor, dev, model.expert)
    if dev_data.in_scope.all() or not dev_data.in_scope.any():
        raise ReviewChoiceError(
            f"{dev}: needs pictures of the categories and an {OUT_OF_SCOPE_FOLDER!r} folder"
        )
    renders = validation_renders(predictor, model.card, data_dir, model.expert)
    policy, evidence = choose_policy(
        validation, dev_data, max_clean_flag_rate=max_clean_flag_rate, renders=renders
    )
    entry: dict[str, Any] = {
        **policy.to_dict(),
        "served_as": "cascade"
        if cascade and predictor.model_version.endswith("+cascade")
        else model_path.name,
        "chosen_on": {
            "validation": f"{len(labels)} Fashion-MNIST validation images (the card's split)",
            "dev": f"{int(dev_data.in_scope.sum())} real pictures and "
            f"{int((~dev_data.in_scope).sum())} out-of-scope pictures (dev part)",
        },
        **evidence,
        "validation": review_metrics(policy, validation),
        "dev": review_metrics(policy.for_upload(picture=True), dev_data),
        "created_at": utc_now(),
    }
    if write:
        record_section(default_card_path(model_path), "review", entry)
    return entry
