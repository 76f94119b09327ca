"""Load ``model_card.json`` and check that the ONNX file is the one the card describes.

The card is written by the export step next to the model; its ``sha256`` pins the exact file.
Serving refuses to start when the hash does not match (a half-copied or swapped model), unless
verification is switched off for development.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from product_classifier.inference.errors import ModelLoadError
from product_classifier.provenance import sha256_file  # the one sha256 (stdlib imports only)
from product_classifier.released import missing_model_message

if TYPE_CHECKING:  # the predictors import onnxruntime and numpy; keep this one light
    from product_classifier.inference.cascade import CascadePredictor
    from product_classifier.inference.predictor import OnnxPredictor, PredictorOptions

logger = logging.getLogger(__name__)

MODEL_CARD_NAME = "model_card.json"
# What the files beside the model are called in errors (check_beside).
FIRST_STAGE = "cascade first-stage model"
PICTURE_EXPERT = "picture expert model"


def default_card_path(model_path: str | Path) -> Path:
    """``artifacts/model.onnx`` -> ``artifacts/model_card.json``: the card sits beside the model."""
    return Path(model_path).with_name(MODEL_CARD_NAME)


def load_model_card(card_path: str | Path) -> dict[str, Any]:
    path = Path(card_path)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"model card not found: {path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"model card {path} is not readable JSON: {exc}") from exc
    if not isinstance(card, dict):
        raise ModelLoadError(f"model card {path} must contain a JSON object")
    return card


def card_entry(model_path: str | Path, card: dict[str, Any]) -> dict[str, Any]:
    """The part of the card that describes ``model_path``: a ``variants`` entry whose ``file``
    is this file's name (e.g. the INT8 model), else the card itself (the FP32 model)."""
    variants = card.get("variants")
    if isinstance(variants, dict):
        for entry in variants.values():
            if isinstance(entry, dict) and entry.get("file") == Path(model_path).name:
                return entry
    return card


def verify_sha256(model_path: str | Path, card: dict[str, Any], card_path: str | Path) -> str:
    """Return the model's sha256; raise ModelLoadError when it differs from the card's."""
    model_path = Path(model_path)
    expected = card_entry(model_path, card).get("sha256")
    if not isinstance(expected, str) or len(expected) != 64:
        raise ModelLoadError(
            f"model card {card_path} has no valid 'sha256' (64 hex digits) to verify "
            f"{model_path} against"
        )
    if not model_path.is_file():
        raise ModelLoadError(missing_model_message(model_path))
    actual = sha256_file(model_path)
    if actual != expected.lower():
        raise ModelLoadError(
            f"refusing to serve {model_path}: its sha256 is {actual} but {card_path} expects "
            f"{expected.lower()} (the file was modified, truncated or swapped)"
        )
    return actual


def cascade_spec(model_path: str | Path, card: dict[str, Any]) -> dict[str, Any] | None:
    """The card's ``cascade`` section if ``model_path`` is its second stage, else None."""
    spec = card.get("cascade")
    if not isinstance(spec, dict) or spec.get("second") != Path(model_path).name:
        return None
    first = spec.get("first")
    if not isinstance(first, dict) or not isinstance(first.get("file"), str):
        raise ModelLoadError("the model card's cascade has no first-stage 'file'")
    threshold = spec.get("threshold")
    if not isinstance(threshold, int | float) or not 0.0 < threshold <= 1.0:
        raise ModelLoadError(f"the model card's cascade threshold {threshold!r} is not in (0, 1]")
    return spec


def picture_expert_spec(card: dict[str, Any]) -> dict[str, Any] | None:
    """The card's ``picture_expert`` section (the pictures' second opinion), else None."""
    spec = card.get("picture_expert")
    if spec is None:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("file"), str):
        raise ModelLoadError("the model card's picture_expert has no 'file'")
    return spec


def check_beside(
    model_path: str | Path, entry: dict[str, Any], card_file: Path, *, verify: bool, what: str
) -> tuple[Path, str | None]:
    """A file the card names beside the model (the cascade's first stage, the picture
    expert), checked as the model is: its sha256 against ``entry``'s when ``verify``, else only
    that it exists. Returns (its path, its sha256 or None when unverified)."""
    path = Path(model_path).with_name(str(entry["file"]))
    if verify:
        return path, verify_sha256(path, entry, card_file)
    if not path.is_file():
        raise ModelLoadError(f"{what} not found: {path}")
    return path, None


@dataclass(frozen=True)
class VerifiedModel:
    """A loaded predictor plus the card it was checked against."""

    predictor: OnnxPredictor | CascadePredictor
    card: dict[str, Any] = field(default_factory=dict)
    card_path: Path | None = None
    sha256: str | None = None
    sha256_verified: bool = False
    # The card's picture expert (review policy's second opinion on real pictures); None: none.
    expert: OnnxPredictor | None = None


def check_model_files(
    model_path: str | Path, card_path: str | Path | None = None, *, verify: bool = True
) -> tuple[dict[str, Any], Path, str | None]:
    """The checks that need no onnxruntime: the files exist, the card reads, the hash matches.

    Returns (card, card path, sha256 or None when unverified).
    """
    model_path = Path(model_path)
    card_file = Path(card_path) if card_path is not None else default_card_path(model_path)
    if not model_path.is_file():
        raise ModelLoadError(missing_model_message(model_path))
    if verify:
        card = load_model_card(card_file)
        return card, card_file, verify_sha256(model_path, card, card_file)
    if card_file.is_file():
        card = load_model_card(card_file)
        logger.warning("sha256 verification is OFF: serving %s unchecked", model_path)
    else:
        card = {}
        logger.warning("sha256 verification is OFF and %s is missing", card_file)
    return card, card_file, None


def load_verified_model(
    model_path: str | Path,
    card_path: str | Path | None = None,
    *,
    verify: bool = True,
    options: PredictorOptions | None = None,
    cascade: bool = False,
    cascade_threshold: float | None = None,
    picture_expert: bool = True,
) -> VerifiedModel:
    """Check the card's hash (unless ``verify`` is False), then load and validate the model.

    With ``verify=False`` a missing card is tolerated (development); a present but unreadable
    card is still an error, because it means the artifacts are broken. ``cascade=True`` puts
    the card's first-stage model in front (inference/cascade.py) when the card has a cascade
    for this file; its hash is checked the same way. ``cascade_threshold`` overrides the card's.
    ``picture_expert`` loads the card's picture expert too, when it has one (checked the same way).
    """
    from product_classifier.inference.cascade import CascadePredictor
    from product_classifier.inference.predictor import OnnxPredictor

    model_path = Path(model_path)
    card, card_file, sha = check_model_files(model_path, card_path, verify=verify)
    loaded = OnnxPredictor(model_path, options)
    card_version = card_entry(model_path, card).get("model_version")
    if card_version is not None and str(card_version) != loaded.model_version:
        logger.warning(
            "model card says model_version=%s but the ONNX metadata says %s",
            card_version,
            loaded.model_version,
        )
    predictor: OnnxPredictor | CascadePredictor = loaded
    spec = cascade_spec(model_path, card) if cascade else None
    if spec is not None:
        first_path, first_sha = check_beside(
            model_path, spec["first"], card_file, verify=verify, what=FIRST_STAGE
        )
        first = OnnxPredictor(first_path, options)
        threshold = cascade_threshold or float(spec["threshold"])
        # Unverified, the hashes are still what is served (~2 ms for both files).
        hashes = (first_sha, sha) if verify else (sha256_file(first_path), sha256_file(model_path))
        predictor = CascadePredictor(first, loaded, threshold, sha256=hashes)
    expert = None
    expert_spec = picture_expert_spec(card) if picture_expert else None
    if expert_spec is not None:
        expert_path, _ = check_beside(
            model_path, expert_spec, card_file, verify=verify, what=PICTURE_EXPERT
        )
        expert = OnnxPredictor(expert_path, options)
    return VerifiedModel(
        predictor=predictor,
        card=card,
        card_path=card_file if card else None,
        sha256=sha,
        sha256_verified=verify,
        expert=expert,
    )
