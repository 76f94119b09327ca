"""The released models on real product pictures -> docs/real-pictures.md and the model card

    python scripts/real_pictures_report.py          # make real-pictures-report (a few minutes)

Builds the labelled real-picture benchmark from pinned public icon and emoji packages
(``scripts/picture_sets/build_real_pictures.py``: the ten Fashion-MNIST categories plus
out-of-scope pictures, split once by design family into ``dev`` and ``test``) and scores the
served default (the cascade), the INT8 and the FP32 model on both parts, through the service's
own loader, preprocessing and review policy (the card's ``review`` section, chosen on the
validation split and the dev part by ``product-classifier review``).

``dev`` is for every choice about the model; ``test`` is only reported, once per release, as is
the Fashion-MNIST test set here. None of these pictures is training data for the models they
measure. Every figure in the generated page comes from this run; the raw numbers go to
``docs/evidence/real-pictures.json``, the served default's to the card's ``real_pictures``
section (``tests/model/test_real_pictures.py`` recomputes them from the committed files).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from product_classifier.constants import CLASS_NAMES
from product_classifier.reporting import markdown_table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "picture_sets"))

DOC = ROOT / "docs" / "real-pictures.md"
RAW = ROOT / "docs" / "evidence" / "real-pictures.json"
PLOT = ROOT / "docs" / "img" / "reliability.png"
CARD = ROOT / "artifacts" / "model_card.json"
DEFAULT = "cascade (served default)"
VARIANTS = {  # name -> (model file, cascade): what MODEL_VARIANT serves
    DEFAULT: ("artifacts/model.int8.onnx", True),
    "INT8": ("artifacts/model.int8.onnx", False),
    "FP32": ("artifacts/model.onnx", False),
}


def fashion_mnist_test(predictor: Any, policy: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The 10k test set, once per release: accuracy, the flag rate, calibration."""
    from product_classifier.data.fashion_mnist import load_fashion_mnist
    from product_classifier.evaluation.review import LabelledProbs, review_metrics
    from product_classifier.preprocessing import to_model_input

    images, labels = load_fashion_mnist("test")
    data = LabelledProbs(predictor.predict_proba(to_model_input(images)), labels)
    metrics = review_metrics(policy, data)
    bins = diagram(data, policy)
    metrics["ece_before_temperature"] = bins["ece"][0]
    return metrics, bins


def plot_reliability(diagrams: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(diagrams), figsize=(5 * len(diagrams), 4.4))
    for ax, (title, d) in zip(np.atleast_1d(axes), diagrams.items(), strict=True):
        ax.plot([0, 1], [0, 1], ls=":", c="grey", label="perfect calibration")
        for key, style, label in (
            ("before", "o-", f"raw softmax (ECE {d['ece'][0]:.1%})"),
            ("after", "s-", f"temperature {d['temperature']:g} (ECE {d['ece'][1]:.1%})"),
        ):
            bins = [b for b in d[key] if b["count"] >= 5]
            ax.plot(
                [b["confidence"] for b in bins], [b["accuracy"] for b in bins], style, label=label
            )
        ax.set(title=title, xlabel="confidence (top-1 probability)", ylabel="accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("Reliability of the served default (bins with at least 5 images)")
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def diagram(data: Any, policy: Any) -> dict[str, Any]:
    """Reliability bins of the in-scope pictures, before and after the temperature."""
    from product_classifier.evaluation.review import expected_calibration_error

    inside = data.in_scope
    probs, labels = data.probs[inside], data.labels[inside]
    before, bins_before = expected_calibration_error(probs, labels)
    after, bins_after = expected_calibration_error(policy.calibrate(probs), labels)
    return {
        "before": bins_before,
        "after": bins_after,
        "ece": [before, after],
        "temperature": policy.temperature,
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def render(report: dict[str, Any]) -> str:
    policy = report["review"]
    rows = []
    for variant, parts in report["variants"].items():
        for part in ("dev", "test"):
            m = parts[part]
            rows.append(
                [
                    variant,
                    part,
                    m["images"],
                    _pct(m["accuracy"]),
                    _pct(m["balanced_accuracy"]),
                    _pct(m["review_on_wrong"]),
                    _pct(m["review_on_right"]),
                    f"{_pct(m['out_of_scope_flagged'])} of {m['out_of_scope']}",
                    f"{m['out_of_scope_auroc']:.3f}",
                ]
            )
    table = markdown_table(
        ["model", "part", "pictures", "accuracy", "balanced", "needs_review on wrong",
         "needs_review on right", "out-of-scope flagged", "out-of-scope AUROC"],
        rows,
    )  # fmt: skip
    default = report["variants"][DEFAULT]
    per_class = markdown_table(
        ["category", "dev", "test"],
        [
            [c, _pct(default["dev"]["per_class"][c]), _pct(default["test"]["per_class"][c])]
            for c in default["dev"]["per_class"]
        ],
    )
    fm = report["fashion_mnist_test"]
    d, t = default["dev"], default["test"]
    pictures = policy.get("pictures") or policy
    bias = pictures.get("bias")
    bias_text = (
        "no per-category bias"
        if not bias
        else "a per-category bias on the scaled log-probabilities ("
        + ", ".join(f"{c} {b:+.2f}" for c, b in zip(CLASS_NAMES, bias, strict=True))
        + "), fitted on the dev part and kept because it held up with each design family "
        "held out in turn, so a picture's category can differ from the model's own top-1"
    )
    opinion = pictures.get("second_opinion", 0.0)
    opinion_text = (
        ""
        if not opinion
        else f", or when the picture expert (the card's `picture_expert`, "
        f"`{report.get('picture_expert', '?')}`, fine-tuned longer on synthetic pictures of no "
        f"category) is less than {opinion:g} sure of its own answer: a second opinion, chosen "
        "on the dev part for the out-of-scope pictures it catches net of the right answers it "
        "flags (`evaluation/review.choose_second_opinion`)"
    )
    calibration = markdown_table(
        ["images", "temperature", "ECE, raw softmax", "ECE, after the temperature"],
        [
            ["Fashion-MNIST test", f"{policy['temperature']:g}",
             _pct(fm["ece_before_temperature"]), _pct(fm["ece"])],
            ["real pictures, dev", f"{pictures['temperature']:g}",
             _pct(d["ece_before_temperature"]), _pct(d["ece"])],
            ["real pictures, test", f"{pictures['temperature']:g}",
             _pct(t["ece_before_temperature"]), _pct(t["ece"])],
        ],
    )  # fmt: skip
    return f"""# Real product pictures

Generated by `python scripts/real_pictures_report.py` (`make real-pictures-report`) on
{report["date"]}; do not edit by hand, rerun instead. Raw numbers:
`docs/evidence/real-pictures.json`; the served default's are also in the model card
(`real_pictures`), and `tests/model/test_real_pictures.py` recomputes them.

**Data.** `scripts/picture_sets/build_real_pictures.py` rebuilds, byte for byte, a labelled
set of real product pictures from pinned public icon and emoji packages (colour emoji, filled
and outline icons; PNG and JPEG, 256-800 px, on white, off-white or transparent pages): the
ten Fashion-MNIST categories, and out-of-scope pictures that are none of them (other products,
animals, food, vehicles, scenes, text, blank and noise images). It is split once by design
family: **dev** for every choice about the model, **test** only reported. These pictures are
never training data for the models measured here: they learned from Fashion-MNIST and
transformations of it.

**How.** Through the service's own model loader, preprocessing (outline drawings are filled
into silhouettes, `scripts/outline_fill_sweep.py`) and review policy: the model card's
`review` section, chosen by `product-classifier review`. Real pictures (every upload but a
28x28 image) have their own, chosen on the dev part alone: temperature
{pictures["temperature"]:g} (the model is over-confident on pictures);
{bias_text}; `needs_review` below a calibrated confidence of
{pictures["threshold"]:g}, the lowest threshold that flags 85% of the dev part's wrong
answers; `review_reason: "out_of_scope"` below
{pictures["out_of_scope_threshold"]:g}{opinion_text}. 28x28 images, Fashion-MNIST's own form,
keep the main policy: temperature {policy["temperature"]:g} from the validation split, review below
{policy["threshold"]:g}. Balanced accuracy is the mean of the per-category accuracies; the
out-of-scope AUROC says how well a low confidence separates out-of-scope pictures from
in-scope ones (0.5: not at all).

{table}

## The served default

On the Fashion-MNIST test set (10,000 images, read once for this release): accuracy
**{_pct(fm["accuracy"])}**, `needs_review` on **{_pct(fm["review_rate"])}** of the images
({_pct(fm["review_on_wrong"])} of the wrong answers, {_pct(fm["review_on_right"])} of the
right ones).

Per category, on real pictures:

{per_class}

## Calibration

Expected calibration error (15 equal-width bins) of the served default's confidence, before
and after the temperature (the main one fitted on the validation split, the pictures' on the
dev part):

{calibration}

![Reliability diagrams](img/reliability.png)
"""


def main() -> None:
    from build_real_pictures import build_real_pictures

    from product_classifier.export.quantize import record_section
    from product_classifier.export.review import labelled_folder, labelled_metrics
    from product_classifier.inference.model_card import load_verified_model
    from product_classifier.inference.review import review_policy

    variants: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="real-pictures-") as tmp:
        folder = Path(tmp) / "real-pictures"
        build_real_pictures(folder, quiet=True)
        manifest = json.loads((folder / "manifest.json").read_text())
        for name, (path, cascade) in VARIANTS.items():
            model = load_verified_model(ROOT / path, cascade=cascade)
            policy = review_policy(model.card)
            scored = {
                part: labelled_folder(model.predictor, folder / part, model.expert)
                for part in ("dev", "test")
            }
            variants[name] = {
                part: labelled_metrics(data, policy, model.predictor.class_names)
                for part, data in scored.items()
            }
            print(name, {p: round(m["balanced_accuracy"], 3) for p, m in variants[name].items()})
            if name == DEFAULT:
                default_model, default_policy, default_test = model, policy, scored["test"]
        fm_metrics, fm_diagram = fashion_mnist_test(default_model.predictor, default_policy)
        diagrams = {
            "Fashion-MNIST test": fm_diagram,
            "real pictures, test part": diagram(
                default_test, default_policy.for_upload(picture=True)
            ),
        }
    plot_reliability(diagrams)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "model_version": default_model.predictor.model_version,
        "picture_expert": None
        if default_model.expert is None
        else default_model.expert.model_version,
        "review": default_policy.to_dict(),
        "pictures": manifest["count"],
        "fashion_mnist_test": fm_metrics,
        "variants": variants,
    }
    RAW.parent.mkdir(parents=True, exist_ok=True)
    RAW.write_text(json.dumps(report, indent=1) + "\n")
    DOC.write_text(render(report))
    record_section(
        CARD,
        "real_pictures",
        {
            "benchmark": f"scripts/picture_sets/build_real_pictures.py ({manifest['count']} "
            "pictures; dev for choices, test only reported)",
            "served_as": DEFAULT,
            "review": default_policy.to_dict(),
            "dev": variants[DEFAULT]["dev"],
            "test": variants[DEFAULT]["test"],
            "fashion_mnist_test": fm_metrics,
            "measured_at": report["date"],
        },
    )
    print(f"wrote {DOC}, {RAW}, {PLOT} and the card's real_pictures section")


if __name__ == "__main__":
    main()
