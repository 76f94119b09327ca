"""Where the released serving files are, and which of them a service loads.

The repository's ``artifacts/`` folder is their one source (``make train-release`` writes it).
The package reaches it as ``product_classifier/artifacts``: in a checkout a link to
``../../artifacts``, in a built wheel a copy (package data, ``pyproject.toml``). So the
defaults never depend on the working directory: ``pip install 'product-classifier[serve]'``
then ``product-classifier serve`` from any folder serves the released model.

Light on purpose (settings import it): the model-card helpers are imported where used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from product_classifier.serving.settings import ServeSettings

RELEASE_DIR = Path(__file__).with_name("artifacts")


def missing_model_message(path: Path) -> str:
    """Why ``path`` cannot be served, saying where the package looked for its released files."""
    if path.parent != RELEASE_DIR:
        return f"model file not found: {path}"
    return (
        f"model file not found: {path}. The released files are looked for in {RELEASE_DIR} "
        "(a link to the repository's artifacts/ in a source checkout, a copy of it in the "
        "wheel): reinstall the package, or set PRODUCT_CLASSIFIER_MODEL_PATH to a model file "
        "with its model_card.json beside it"
    )


def served_files(settings: ServeSettings) -> list[Path]:
    """The files a service with these settings loads: the model, its card, and the card's
    first stage when it serves a cascade, and its picture expert (the same rules as
    ``serving/app.py``)."""
    from product_classifier.inference.model_card import (
        cascade_spec,
        load_model_card,
        picture_expert_spec,
    )

    files = [settings.model_path, settings.card_path]
    card = load_model_card(settings.card_path)
    if settings.model_variant == "cascade":
        spec = cascade_spec(settings.model_path, card)
        if spec is not None:
            files.append(settings.model_path.with_name(str(spec["first"]["file"])))
    expert = picture_expert_spec(card)
    if expert is not None:
        files.append(settings.model_path.with_name(str(expert["file"])))
    return files
