"""When a person should look at a prediction, and why: the review policy.

A prediction is flagged ``needs_review`` when its top-1 probability, after temperature scaling,
is below ``threshold``. Below the lower ``out_of_scope_threshold`` the model recognises none of
its categories well enough to name one with any trust: the reason is then ``out_of_scope``
(likely none of the catalog's categories), otherwise ``low_confidence`` (one of them, unsure
which). The numbers are chosen per release on held-out data, never on a test set
(``evaluation/review.py``), and travel in the model card's ``review`` section; a model whose
card has none gets the service's fixed default (``review_threshold``, no out-of-scope band).

Real pictures get their own numbers (``pictures``). On uploads that ``canonicalize`` reshapes
(anything but a 28x28 image, see ``preprocessing.is_dataset_form``) a Fashion-MNIST model is
both less accurate and over-confident, so one temperature and threshold cannot serve both:
a threshold strict enough for pictures would flag far too many clean catalog images. The
pictures' temperature and thresholds are chosen on the real-picture dev part.

Pictures can also get a **second opinion** (``second_opinion``): a picture expert, a model
fine-tuned longer than the release on synthetic pictures of no category
(``inference/model_card.py`` loads it from the card's ``picture_expert`` section). When its
top probability is below ``second_opinion`` the picture is flagged ``out_of_scope`` whatever
the release's confidence: it knows better than the release what is none of the categories
(``evaluation/review.choose_second_opinion``, ``docs/evidence/icons-cpu-2026-12-07/``).

Numpy only: the service has no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

ReviewReason = Literal["low_confidence", "out_of_scope"]
LOW_CONFIDENCE: ReviewReason = "low_confidence"
OUT_OF_SCOPE: ReviewReason = "out_of_scope"
DEFAULT_REVIEW_THRESHOLD = 0.7


class ReviewPolicyError(ValueError):
    """A review section that no model can have (the message says which number and why)."""


@dataclass(frozen=True)
class ReviewPolicy:
    threshold: float = DEFAULT_REVIEW_THRESHOLD
    out_of_scope_threshold: float = 0.0
    temperature: float = 1.0
    # Per-category offsets added to the scaled log-probabilities (the pictures' policy): on
    # real pictures the model over-answers some categories (most of all Bag), and one offset
    # per category, fitted on the dev part, re-weighs them. Empty: none.
    bias: tuple[float, ...] = ()
    # The policy for real pictures (uploads canonicalize reshapes); None: this one.
    pictures: ReviewPolicy | None = None
    # Flag as out of scope when the picture expert's top probability is below this (the
    # pictures' policy; 0: no second opinion).
    second_opinion: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ReviewPolicyError(f"review threshold must be in [0, 1], got {self.threshold}")
        if not 0.0 <= self.out_of_scope_threshold <= self.threshold:
            raise ReviewPolicyError(
                f"out_of_scope_threshold must be in [0, threshold={self.threshold}], "
                f"got {self.out_of_scope_threshold}"
            )
        if not 0.05 <= self.temperature <= 20.0:
            raise ReviewPolicyError(f"temperature must be in [0.05, 20], got {self.temperature}")
        if not all(np.isfinite(b) and abs(b) <= 20.0 for b in self.bias):
            raise ReviewPolicyError(f"bias must be finite numbers in [-20, 20], got {self.bias}")
        if self.pictures is not None and self.pictures.pictures is not None:
            raise ReviewPolicyError("the pictures' policy cannot have a pictures' policy")
        if not 0.0 <= self.second_opinion < 1.0:
            raise ReviewPolicyError(f"second_opinion must be in [0, 1), got {self.second_opinion}")

    def for_upload(self, picture: bool) -> ReviewPolicy:
        """The policy for one upload: ``picture`` means canonicalize reshaped it."""
        return self.pictures if picture and self.pictures is not None else self

    def calibrate(self, probs: np.ndarray) -> np.ndarray:
        """Temperature-scaled probabilities: softmax(log p / T) == softmax(logits / T); with a
        ``bias``, softmax(logits / T + bias), which can change the answer."""
        if self.temperature == 1.0 and not self.bias:
            return probs
        # np.maximum, not np.clip: the same values, without clip's Python wrapper (the service
        # calibrates every answer on the event loop; ~12 -> ~9 us per 10-class row).
        logp = np.log(np.maximum(probs, 1e-30)) / np.float32(self.temperature)
        if self.bias:
            if len(self.bias) != probs.shape[-1]:
                raise ReviewPolicyError(
                    f"{len(self.bias)} bias values for {probs.shape[-1]} categories"
                )
            logp += np.asarray(self.bias, dtype=np.float32)
        logp -= logp.max(axis=-1, keepdims=True)
        out = np.exp(logp)
        out /= out.sum(axis=-1, keepdims=True)
        return out.astype(np.float32, copy=False)

    def reason(self, confidence: float, opinion: float = 1.0) -> ReviewReason | None:
        """The review reason for a (calibrated) top-1 probability and the picture expert's top
        probability (``opinion``; 1.0 when there is none); None: no review."""
        if confidence < self.out_of_scope_threshold or opinion < self.second_opinion:
            return OUT_OF_SCOPE
        return LOW_CONFIDENCE if confidence < self.threshold else None

    def reasons(self, confidence: np.ndarray, opinion: np.ndarray | None = None) -> np.ndarray:
        """Vectorised :meth:`reason`: 0 none, 1 low_confidence, 2 out_of_scope."""
        out = (confidence < self.threshold).astype(np.int8)
        out[confidence < self.out_of_scope_threshold] = 2
        if opinion is not None:
            out[opinion < self.second_opinion] = 2
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self)
        out["bias"] = list(self.bias)
        if not self.bias:
            del out["bias"]
        if not self.second_opinion:
            del out["second_opinion"]
        if self.pictures is None:
            del out["pictures"]
        else:
            out["pictures"] = self.pictures.to_dict()
        return out

    @classmethod
    def from_dict(cls, section: Mapping[str, Any]) -> ReviewPolicy:
        pictures = section.get("pictures")
        return cls(
            threshold=float(section["threshold"]),
            out_of_scope_threshold=float(section.get("out_of_scope_threshold", 0.0)),
            temperature=float(section.get("temperature", 1.0)),
            bias=tuple(float(b) for b in section.get("bias", ())),
            pictures=None if pictures is None else cls.from_dict(pictures),
            second_opinion=float(section.get("second_opinion", 0.0)),
        )

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> ReviewPolicy:
        """The card's ``review`` section; without one, the fixed default and nothing else."""
        section = card.get("review")
        if not isinstance(section, Mapping):
            return cls()
        try:
            policy = cls.from_dict(section)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReviewPolicyError(f"the model card's review section is invalid: {exc}") from exc
        names = card.get("contract", {}).get("class_names")
        for part in (policy, policy.pictures):
            if part is not None and part.bias and names and len(part.bias) != len(names):
                raise ReviewPolicyError(
                    f"the model card's review section has {len(part.bias)} bias values for "
                    f"{len(names)} categories"
                )
        return policy


def review_policy(card: Mapping[str, Any], review_threshold: float | None = None) -> ReviewPolicy:
    """The card's review policy (chosen on held-out data at release); an operator's
    ``review_threshold`` replaces its thresholds, the pictures' too (the out-of-scope bands
    stay below it)."""
    policy = ReviewPolicy.from_card(card)
    if review_threshold is None:
        return policy
    return _with_threshold(policy, review_threshold)


def _with_threshold(policy: ReviewPolicy, threshold: float) -> ReviewPolicy:
    return ReviewPolicy(
        threshold=threshold,
        out_of_scope_threshold=min(policy.out_of_scope_threshold, threshold),
        temperature=policy.temperature,
        bias=policy.bias,
        pictures=None if policy.pictures is None else _with_threshold(policy.pictures, threshold),
        second_opinion=policy.second_opinion,
    )
