"""The review policy (inference/review.py) and how a release chooses it (evaluation/review.py)."""

from __future__ import annotations

import numpy as np
import pytest

from product_classifier.evaluation.review import (
    LabelledProbs,
    choose_bias,
    choose_picture_policy,
    choose_policy,
    expected_calibration_error,
    fit_temperature,
    review_metrics,
)
from product_classifier.inference.review import (
    ReviewPolicy,
    ReviewPolicyError,
    review_policy,
)


def test_reasons_follow_the_two_thresholds() -> None:
    policy = ReviewPolicy(threshold=0.8, out_of_scope_threshold=0.4)
    assert policy.reason(0.95) is None
    assert policy.reason(0.8) is None  # at the threshold: no review
    assert policy.reason(0.79) == "low_confidence"
    assert policy.reason(0.2) == "out_of_scope"
    assert policy.reasons(np.array([0.95, 0.6, 0.1])).tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": 0.5, "out_of_scope_threshold": 0.6}, "out_of_scope_threshold"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_impossible_policies_say_which_number(kwargs: dict, word: str) -> None:
    with pytest.raises(ReviewPolicyError, match=word):
        ReviewPolicy(**kwargs)


def test_temperature_softens_without_changing_the_answer() -> None:
    logits = np.array([[4.0, 1.0, 0.0], [0.0, 2.0, 1.9]], dtype=np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    soft = ReviewPolicy(temperature=2.0).calibrate(probs)
    expected = np.exp(logits / 2) / np.exp(logits / 2).sum(1, keepdims=True)
    assert np.allclose(soft, expected, atol=1e-6)
    assert (soft.argmax(1) == probs.argmax(1)).all() and (soft.max(1) < probs.max(1)).all()
    assert ReviewPolicy().calibrate(probs) is probs  # T = 1 costs nothing


def test_calibrate_floors_zero_probabilities_for_one_row_as_the_service_sends_it() -> None:
    policy = ReviewPolicy(temperature=1.5)
    row = np.array([0.9, 0.1, 0.0], dtype=np.float32)  # one 1-D row per answer, a hard zero
    out = policy.calibrate(row)
    assert out.dtype == np.float32 and out.shape == (3,) and 0.0 < out[2] < 1e-12
    assert np.allclose(out, policy.calibrate(row[None])[0])
    # Without the floor log(0) is -inf and an all-zero row would give NaNs; floored: uniform.
    assert np.allclose(policy.calibrate(np.zeros(4, dtype=np.float32)), 0.25)


def test_the_card_gives_the_policy_and_an_operator_may_override_its_threshold() -> None:
    card = {"review": {"threshold": 0.9, "out_of_scope_threshold": 0.5, "temperature": 1.3}}
    assert review_policy(card) == ReviewPolicy(0.9, 0.5, 1.3)
    assert review_policy(card, 0.4) == ReviewPolicy(0.4, 0.4, 1.3)  # band stays below
    assert review_policy({}) == ReviewPolicy(0.7, 0.0, 1.0)  # a card without a policy
    with pytest.raises(ReviewPolicyError, match="review section"):
        review_policy({"review": {"out_of_scope_threshold": 0.1}})


def _labelled(rng: np.random.Generator, n: int, sharp: float, oos: int = 0) -> LabelledProbs:
    labels = rng.integers(0, 10, n)
    logits = rng.normal(size=(n, 10))
    logits[np.arange(n), labels] += sharp
    # softmax(sharp * z) is the true posterior of this generative model: calibrated.
    logits *= sharp
    # Out-of-scope rows: flat logits, label -1.
    flat = rng.normal(scale=0.3, size=(oos, 10))
    probs = np.exp(np.r_[logits, flat])
    return LabelledProbs(
        (probs / probs.sum(1, keepdims=True)).astype(np.float32), np.r_[labels, -np.ones(oos)]
    )


def test_temperature_fit_undoes_overconfidence() -> None:
    rng = np.random.default_rng(0)
    data = _labelled(rng, 4000, sharp=1.5)
    # Make it overconfident: sharpen by 2.5x; the fit should find about that temperature.
    sharp = ReviewPolicy(temperature=0.4).calibrate(data.probs)
    temperature = fit_temperature(sharp, data.labels.astype(int))
    assert 2.0 < temperature < 3.0
    before, _ = expected_calibration_error(sharp, data.labels)
    after, bins = expected_calibration_error(
        ReviewPolicy(temperature=temperature).calibrate(sharp), data.labels
    )
    assert after < before / 3 and sum(b["count"] for b in bins) == 4000


def test_the_chosen_policy_keeps_clean_images_unflagged_and_catches_dev_mistakes() -> None:
    rng = np.random.default_rng(1)
    validation = _labelled(rng, 3000, sharp=2.5)
    dev = _labelled(rng, 300, sharp=1.0, oos=100)
    policy, evidence = choose_policy(validation, dev, max_clean_flag_rate=0.05)
    assert evidence["validation_flag_rate"] <= 0.05
    val = review_metrics(policy, validation)
    assert val["review_rate"] <= 0.05
    on_dev = review_metrics(policy, dev)
    # Dev's mistakes and its flat out-of-scope rows are flagged far more than clean images.
    assert on_dev["review_on_wrong"] > 3 * val["review_rate"]
    assert on_dev["out_of_scope_flagged"] > 0.9 and on_dev["out_of_scope_auroc"] > 0.8
    assert 0 < policy.out_of_scope_threshold <= policy.threshold


def test_real_pictures_get_their_own_policy_through_the_card_and_an_override() -> None:
    pictures = ReviewPolicy(0.8, 0.3, 2.0)
    card = {"review": {"threshold": 0.7, "temperature": 1.2, "pictures": pictures.to_dict()}}
    policy = review_policy(card)
    assert policy.pictures == pictures
    assert policy.for_upload(picture=True) is policy.pictures
    assert policy.for_upload(picture=False) is policy
    assert ReviewPolicy.from_card({"review": policy.to_dict()}) == policy  # the card round-trips
    assert "pictures" not in ReviewPolicy().to_dict()  # a card without one stays as it was
    assert ReviewPolicy().for_upload(picture=True) == ReviewPolicy()
    # An operator's threshold is the operator's for every upload; each band stays below it.
    assert review_policy(card, 0.25).pictures == ReviewPolicy(0.25, 0.25, 2.0)
    with pytest.raises(ReviewPolicyError, match="pictures"):
        ReviewPolicy(pictures=ReviewPolicy(pictures=ReviewPolicy()))
    with pytest.raises(ReviewPolicyError, match="review section"):
        review_policy({"review": {"threshold": 0.7, "pictures": {"temperature": 2.0}}})


def test_the_pictures_policy_is_chosen_on_dev_to_catch_its_mistakes() -> None:
    rng = np.random.default_rng(2)
    # An over-confident model on pictures: sharpened probabilities, many mistakes.
    dev = _labelled(rng, 400, sharp=0.8, oos=100)
    dev = LabelledProbs(ReviewPolicy(temperature=0.5).calibrate(dev.probs), dev.labels)
    policy, evidence = choose_picture_policy(dev, min_wrong_flagged=0.85)
    assert policy.temperature > 1.2  # the over-confidence is taken out
    on_dev = review_metrics(policy, dev)
    assert on_dev["review_on_wrong"] >= 0.85
    # ...and the lowest such threshold: one grid step lower catches fewer than 85%.
    lower = ReviewPolicy(round(policy.threshold - 0.005, 3), 0.0, policy.temperature)
    assert review_metrics(lower, dev)["review_on_wrong"] < 0.85
    assert "85%" in evidence["threshold_rule"]
    assert 0.0 <= policy.out_of_scope_threshold <= policy.threshold


def test_a_bias_reweighs_categories_and_travels_in_the_card() -> None:
    probs = np.array([[0.5, 0.3, 0.2]], dtype=np.float32)
    policy = ReviewPolicy(temperature=1.0, bias=(-1.0, 0.0, 0.0))
    out = policy.calibrate(probs)
    assert out.argmax() == 1  # the offset changes the answer, as intended
    expected = np.exp(np.log(probs) + np.array([-1.0, 0.0, 0.0]))
    assert np.allclose(out, expected / expected.sum(), atol=1e-6)
    card = {"review": ReviewPolicy(0.7, pictures=policy).to_dict()}
    assert ReviewPolicy.from_card(card).pictures == policy
    assert review_policy(card, 0.5).pictures.bias == policy.bias  # an override keeps it
    with pytest.raises(ReviewPolicyError, match="3 bias values for 10 categories"):
        ReviewPolicy.from_card({**card, "contract": {"class_names": [str(i) for i in range(10)]}})
    with pytest.raises(ReviewPolicyError, match="bias"):
        ReviewPolicy(bias=(float("nan"),))
    with pytest.raises(ReviewPolicyError, match="2 bias values for 3"):
        ReviewPolicy(bias=(0.0, 1.0)).calibrate(probs)


def _sink_dev(rng: np.random.Generator) -> tuple[LabelledProbs, LabelledProbs]:
    """Dev pictures from 6 design families, as a model that over-answers category 0 on pictures
    sees them (every row +2 on its logit), and the same pictures without the sink."""
    fair = _labelled(rng, 600, sharp=1.2)
    logits = np.log(fair.probs)
    logits[:, 0] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    groups = np.array([f"family{i % 6}" for i in range(600)], dtype=object)
    fair = LabelledProbs(fair.probs, fair.labels, groups)
    return LabelledProbs(probs.astype(np.float32), fair.labels, groups), fair


def test_a_bias_is_chosen_only_when_it_holds_up_on_held_out_families() -> None:
    dev, fair = _sink_dev(np.random.default_rng(3))
    bias, evidence = choose_bias(dev, temperature=1.0)
    assert bias and bias[0] < -1.0  # the sink is pushed back
    held = evidence["held_out_balanced_accuracy"]
    assert held[str(evidence["bias_penalty"])] >= held["none"] + 0.02
    assert evidence["families"] == 6
    # A model without a sink: no bias earns its place.
    assert choose_bias(fair, temperature=1.0)[0] == ()


def test_design_groups_come_from_the_manifest_or_the_icon_set_prefix(tmp_path) -> None:
    import json

    from product_classifier.export.review import design_groups

    dev = tmp_path / "dev"
    dev.mkdir()
    paths = ["Bag/fluent-emoji__purse.png", "Bag/lucide__backpack.png", "Coat/own.jpg"]
    assert design_groups(dev, paths).tolist() == ["fluent-emoji", "lucide", "own.jpg"]
    entries = [{"file": "dev/Bag/fluent-emoji__purse.png", "family": "microsoft-fluent"},
               {"file": "test/Bag/lucide__backpack.png", "family": "lucide"}]  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps({"pictures": entries}))
    assert design_groups(dev, paths).tolist() == ["microsoft-fluent", "lucide", "own.jpg"]


def test_a_bias_that_costs_shop_photos_accuracy_is_not_a_candidate() -> None:
    rng = np.random.default_rng(4)
    dev, _ = _sink_dev(rng)
    # Photos on which the model has no sink: pushing category 0 back costs them accuracy...
    photos = _labelled(rng, 2000, sharp=1.5)
    bias, evidence = choose_bias(dev, temperature=1.0, renders=photos)
    accuracy = evidence["render_accuracy"]
    assert evidence["renders"] == 2000 and "renders" in evidence["bias_rule"]
    if bias:  # ...so whatever is kept stays within the bar on them
        assert accuracy[str(evidence["bias_penalty"])] >= accuracy["none"] - 0.002 - 1e-12
    unconstrained, _ = choose_bias(dev, temperature=1.0)
    assert unconstrained != bias and unconstrained[0] < (bias[0] if bias else 0.0)


def test_a_doubting_expert_flags_a_picture_out_of_scope_whatever_the_confidence() -> None:
    policy = ReviewPolicy(threshold=0.8, out_of_scope_threshold=0.4, second_opinion=0.6)
    assert policy.reason(0.95) is None  # no opinion given: as without an expert
    assert policy.reason(0.95, opinion=0.9) is None
    assert policy.reason(0.95, opinion=0.59) == "out_of_scope"
    assert policy.reason(0.7, opinion=0.59) == "out_of_scope"
    assert policy.reason(0.7, opinion=0.6) == "low_confidence"  # at the threshold: no doubt
    confidence, opinion = np.array([0.95, 0.95, 0.7, 0.1]), np.array([0.9, 0.3, 0.9, 0.9])
    assert policy.reasons(confidence, opinion).tolist() == [0, 2, 1, 2]
    assert policy.reasons(confidence).tolist() == [0, 0, 1, 2]
    # It travels in the card, survives an operator's threshold, and is absent when unused.
    card = {"review": {"threshold": 0.7, "pictures": policy.to_dict()}}
    assert review_policy(card).pictures == policy
    assert review_policy(card, 0.5).pictures.second_opinion == 0.6
    assert "second_opinion" not in ReviewPolicy().to_dict()
    with pytest.raises(ReviewPolicyError, match="second_opinion"):
        ReviewPolicy(second_opinion=1.0)


def test_the_second_opinion_is_kept_only_when_it_catches_out_of_scope_pictures() -> None:
    from product_classifier.evaluation.review import choose_second_opinion

    rng = np.random.default_rng(3)
    dev = _labelled(rng, 300, 2.0, oos=100)
    inside = dev.in_scope
    # Out-of-scope pictures the served model is as sure of as of in-scope ones (real ones
    # are: a cake is a Bag at 0.9): its own confidence cannot flag them.
    probs = dev.probs.copy()
    probs[~inside] = dev.probs[rng.choice(np.flatnonzero(inside), int((~inside).sum()))]
    dev = LabelledProbs(probs, dev.labels)
    renders = _labelled(rng, 500, 2.0)
    policy, _ = choose_picture_policy(dev)
    # An expert that doubts the out-of-scope pictures (and hardly any other): worth it.
    sure = np.where(inside, rng.uniform(0.8, 1.0, len(inside)), rng.uniform(0.2, 0.5, len(inside)))
    good_dev = LabelledProbs(dev.probs, dev.labels, opinion=sure)
    good_renders = LabelledProbs(
        renders.probs, renders.labels, opinion=rng.uniform(0.8, 1.0, len(renders.labels))
    )
    chosen, evidence = choose_second_opinion(policy, good_dev, good_renders)
    assert 0.5 <= chosen <= 0.8
    flagged = review_metrics(replace_opinion(policy, chosen), good_dev)["out_of_scope_flagged"]
    assert flagged > evidence["second_opinion_without"]["out_of_scope_flagged"] + 0.2
    # One whose doubt says nothing about scope gains nothing: it stays silent.
    noise = LabelledProbs(dev.probs, dev.labels, opinion=rng.uniform(0.2, 1.0, len(inside)))
    assert choose_second_opinion(policy, noise, good_renders)[0] == 0.0
    # One that would flag shop photos is not a candidate, however well it does on dev.
    doubtful_renders = LabelledProbs(
        renders.probs, renders.labels, opinion=rng.uniform(0.2, 1.0, len(renders.labels))
    )
    assert choose_second_opinion(policy, good_dev, doubtful_renders)[0] == 0.0
    # And choose_picture_policy asks for it when both sets carry the expert's opinion.
    assert choose_picture_policy(good_dev, renders=good_renders)[0].second_opinion == chosen


def replace_opinion(policy: ReviewPolicy, value: float) -> ReviewPolicy:
    from dataclasses import replace

    return replace(policy, second_opinion=value)


def test_an_expert_adds_its_top_probability_to_each_row() -> None:
    from product_classifier.inference.expert import split_opinion, with_opinion

    class Fixed:
        def __init__(self, probs: np.ndarray) -> None:
            self.probs = probs

        def predict_proba(self, batch: np.ndarray) -> np.ndarray:
            return self.probs[: len(batch)]

    served = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    expert = np.array([[0.4, 0.3, 0.3], [0.05, 0.05, 0.9]], dtype=np.float32)
    rows = with_opinion(Fixed(served), Fixed(expert))(np.zeros((2, 1, 28, 28), np.float32))
    assert rows.shape == (2, 4) and rows.dtype == np.float32
    probs, opinion = split_opinion(rows[0], classes=3)
    assert probs.tolist() == served[0].tolist() and opinion == pytest.approx(0.4)
    assert split_opinion(served[1], classes=3) == (pytest.approx(served[1]), 1.0)
