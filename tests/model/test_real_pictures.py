"""The committed served default on real product pictures, recomputed: the card's figures
(written by scripts/real_pictures_report.py) must be what the committed files do.

The benchmark is rebuilt from its pinned packages (tests/conftest.py ``real_pictures``); the
model is loaded as the service loads it (the cascade, with the card's review policy).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from product_classifier.export.review import real_picture_metrics
from product_classifier.inference.model_card import load_verified_model
from product_classifier.inference.review import ReviewPolicy, review_policy
from product_classifier.serving.settings import load_settings

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CARD = ROOT / "artifacts" / "model_card.json"
FIGURES = (
    "accuracy",
    "balanced_accuracy",
    "review_on_wrong",
    "review_on_right",
    "out_of_scope_flagged",
    "out_of_scope_auroc",
    "ece",
)


@pytest.fixture(scope="module")
def served() -> tuple:
    settings = load_settings()
    model = load_verified_model(
        ROOT / settings.model_path, cascade=settings.model_variant == "cascade"
    )
    return model, review_policy(model.card, settings.review_threshold)


def test_the_card_holds_the_policy_the_service_applies(served) -> None:
    _model, policy = served
    card = json.loads(CARD.read_text())
    assert card["review"]["served_as"] == "cascade"
    assert policy == ReviewPolicy.from_card(card)
    assert card["real_pictures"]["review"] == policy.to_dict()


def test_an_unsure_first_stage_answer_is_never_served(served, real_pictures) -> None:
    """The two thresholds work together. Under the main policy (28x28 uploads) every image the
    first stage is unsure of goes to the released model (whose answer the flag then judges),
    so no flag-worthy answer comes from the smaller, less accurate model; and the images the
    first stage answers alone are ones it is confident about even after calibration. Under
    the pictures' stricter policy the flag can fire on a first-stage answer too: the cascade's
    threshold never hides a picture from review."""
    from product_classifier.export.review import labelled_folder

    model, policy = served
    cascade = model.predictor
    data = labelled_folder(cascade.first, real_pictures / "dev")
    calibrated = policy.calibrate(data.probs).max(1)
    answered_alone = data.probs.max(1) >= cascade.threshold
    assert answered_alone.any() and (~answered_alone).any()
    assert (calibrated[answered_alone] >= policy.threshold).all()
    # ...and the flag does fire on what the cascade escalates.
    served_probs = labelled_folder(cascade, real_pictures / "dev").probs
    assert (policy.calibrate(served_probs).max(1)[~answered_alone] < policy.threshold).any()
    pictures = policy.for_upload(picture=True)
    assert pictures is not policy
    assert (pictures.calibrate(served_probs).max(1)[answered_alone] < pictures.threshold).any()


@pytest.mark.parametrize("part", ["dev", "test"])
def test_real_picture_figures_are_what_the_committed_model_does(
    served, real_pictures: Path, part: str
) -> None:
    model, policy = served
    measured = real_picture_metrics(model.predictor, policy, real_pictures / part, model.expert)
    claimed = json.loads(CARD.read_text())["real_pictures"][part]
    for key in FIGURES:
        assert measured[key] == pytest.approx(claimed[key], abs=1e-6), key
    assert measured["per_class"] == pytest.approx(claimed["per_class"], abs=1e-6)
    assert measured["out_of_scope"] == claimed["out_of_scope"] >= 30
