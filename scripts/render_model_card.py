#!/usr/bin/env python3
"""Render artifacts/model_card.json (written by the export) as docs/model_card.md.

    .venv/bin/python scripts/render_model_card.py            # rewrite docs/model_card.md
    .venv/bin/python scripts/render_model_card.py --check    # exit 1 if it is out of date

The card is plain JSON and the output plain Markdown; tables go through the package's
`product_classifier.reporting.markdown_table`, like every other generated doc.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from product_classifier.reporting import markdown_table

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CARD = ROOT / "artifacts" / "model_card.json"
DEFAULT_OUT = ROOT / "docs" / "model_card.md"
QUALITY_BAR = 0.85  # the per-class precision/recall bar the release is checked against


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "l") -> list[str]:
    """The project's table writer, as lines to splice into the card's list of lines."""
    return markdown_table(header, rows, align).splitlines()


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if v is not None) or "defaults"


def _shape(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _weakest(per_class: Sequence[dict[str, Any]]) -> str:
    worst = min(per_class, key=lambda c: min(c["precision"], c["recall"]))
    return f"{worst['name']}: precision {worst['precision']:.3f}, recall {worst['recall']:.3f}"


def _variants(card: dict[str, Any]) -> list[str]:
    """Other released files of the same model (e.g. INT8), each with its own test metrics."""
    variants = card.get("variants") or {}
    if not variants:
        return []
    test = card["metrics"]["test"]
    rows = [
        (
            "reference (FP32)",
            f"`{card['file']}`",
            f"{card['size_bytes'] / 1e6:.2f} MB",
            _pct(test["accuracy"]),
            f"{test['macro_f1']:.4f}",
            "",
        )
    ]
    notes = []
    for name, v in variants.items():
        m = v.get("metrics", {}).get("test", {})
        q = v.get("quantization", {})
        rows.append(
            (
                name,
                f"`{v['file']}`",
                f"{v['size_bytes'] / 1e6:.2f} MB",
                _pct(m["accuracy"]) if m else "n/a",
                f"{m['macro_f1']:.4f}" if m else "n/a",
                ", ".join(f"{k} {q[k]}" for k in ("format", "weights", "activations") if k in q),
            )
        )
        notes.append(
            f"- `{v['file']}`: version `{v.get('model_version')}`, sha256 `{v['sha256']}`"
            + (f"; calibration: {q['calibration_data']}" if "calibration_data" in q else "")
        )
    return [
        "## Released files",
        "",
        "The service serves one of these (`PRODUCT_CLASSIFIER_MODEL_VARIANT` or "
        "`PRODUCT_CLASSIFIER_MODEL_PATH`); all are evaluated on the same "
        f"{test['n']:,} test images.",
        "",
        *_table(
            ["variant", "file", "size", "accuracy", "macro-F1", "quantization"],
            rows,
            align="llrrrl",
        ),
        "",
        *notes,
        "",
    ]


def _cascade(card: dict[str, Any]) -> list[str]:
    """The serving cascade: the distilled first stage, its threshold and what it costs."""
    c = card.get("cascade")
    if not c:
        return []
    first, test = c["first"], c["metrics"]["test"]
    alone, released = first["test_metrics_alone"], c["second_stage_test"]
    rows = [
        (
            f"first stage alone (`{first['file']}`)",
            f"{first['parameters']:,}",
            _pct(alone["accuracy"]),
            f"{alone['macro_f1']:.4f}",
            f"{alone['min_precision']:.3f}",
            f"{alone['min_recall']:.3f}",
        ),
        (
            f"released model alone (`{c['second']}`)",
            f"{card['parameters']:,}",
            _pct(released["accuracy"]),
            f"{released['macro_f1']:.4f}",
            f"{released['min_precision']:.3f}",
            f"{released['min_recall']:.3f}",
        ),
        (
            f"**cascade, threshold {c['threshold']} (served by default)**",
            "",
            _pct(test["accuracy"]),
            f"{test['macro_f1']:.4f}",
            f"{test['min_precision']:.3f}",
            f"{test['min_recall']:.3f}",
        ),
    ]
    grid = [
        (
            f"{r['threshold']:g}",
            f"{100 * r['escalated']:.1f}%",
            _pct(r["accuracy"]),
            f"{r['min_precision']:.3f}",
            f"{r['min_recall']:.3f}",
        )
        for r in c["validation"]["grid"]
    ]
    arch = first["architecture"]
    return [
        "## Serving cascade",
        "",
        f"`product-classifier serve` puts a distilled {arch['name']} "
        f"({_params(arch['params'])}, {first['parameters']:,} parameters, teacher "
        f"`{first.get('teacher')}`) in front of the INT8 model: it classifies every image, and "
        f"only images whose top probability is below **{c['threshold']}** go to the released "
        f"model ({100 * c['escalated_fraction']['test']:.1f}% of the test images, "
        f"{100 * c['escalated_fraction']['validation']:.1f}% of the validation images). "
        "Test-set figures:",
        "",
        *_table(
            ["model", "parameters", "accuracy", "macro-F1", "min precision", "min recall"],
            rows,
            align="lrrrrr",
        ),
        "",
        f"The threshold was chosen on the {c['validation']['images']:,} validation images "
        f"(rule: {c['rule']}); on the test set it only has to pass the release gate:",
        "",
        *_table(
            ["threshold", "escalated", "accuracy", "min precision", "min recall"],
            grid,
            align="rrrrr",
        ),
        "",
        f"- `{first['file']}`: version `{first['model_version']}`, sha256 `{first['sha256']}`, "
        f"{first['size_bytes'] / 1e6:.2f} MB",
        "",
    ]


def _review_text(card: dict[str, Any]) -> list[str]:
    review = card.get("review")
    if not review:
        return [
            "The service adds a `needs_review` flag when the top-1 confidence is below its "
            "review threshold (0.7 by default), so that a person checks the uncertain photos."
        ]
    return [
        "The service adds `needs_review` so that a person checks the answers it should not be "
        f"trusted with: probabilities are scaled by a temperature of {review['temperature']:g}, "
        f"and an answer below a confidence of {review['threshold']:g} is flagged, with "
        f'`review_reason: "out_of_scope"` below {review["out_of_scope_threshold"]:g} '
        '(probably none of the categories), else `"low_confidence"`. Chosen by '
        f"`product-classifier review`: {review['temperature_rule']}; {review['threshold_rule']}; "
        f"the out-of-scope band is the {review['out_of_scope_rule']}.",
    ]


def _real_pictures(card: dict[str, Any]) -> list[str]:
    """The served default on the real-picture benchmark (scripts/real_pictures_report.py)."""
    real = card.get("real_pictures")
    if not real:
        return []
    fm = real["fashion_mnist_test"]
    rows = []
    for part in ("dev", "test"):
        m = real[part]
        rows.append(
            (
                part,
                m["images"],
                _pct(m["accuracy"]),
                _pct(m["balanced_accuracy"]),
                min(m["per_class"].items(), key=lambda kv: kv[1])[0]
                + f" {_pct(min(m['per_class'].values()))}",
                _pct(m["review_on_wrong"]),
                _pct(m["review_on_right"]),
                f"{_pct(m['out_of_scope_flagged'])} of {m['out_of_scope']}",
                f"{m['out_of_scope_auroc']:.3f}",
                f"{_pct(m['ece_before_temperature'])} -> {_pct(m['ece'])}",
            )
        )
    return [
        "## Real product pictures",
        "",
        f"The served default ({real['served_as']}) on {real['benchmark']}, measured "
        f"{real['measured_at']} by `make real-pictures-report` (details: "
        "[real-pictures.md](real-pictures.md)). These pictures are never training data.",
        "",
        *_table(
            [
                "part",
                "pictures",
                "accuracy",
                "balanced",
                "weakest category",
                "needs_review on wrong",
                "on right",
                "out-of-scope flagged",
                "out-of-scope AUROC",
                "ECE (raw -> calibrated)",
            ],
            rows,
            align="lrrrlrrrrl",
        ),
        "",
        f"On the Fashion-MNIST test set the served default flags {_pct(fm['review_rate'])} of "
        f"the images ({_pct(fm['review_on_wrong'])} of its mistakes); its calibration error "
        f"is {_pct(fm['ece_before_temperature'])} raw, {_pct(fm['ece'])} calibrated.",
        "",
        "![Reliability diagrams](img/reliability.png)",
        "",
        *_picture_expert(card),
    ]


def _picture_expert(card: dict[str, Any]) -> list[str]:
    """The pictures' second opinion (export/picture_expert.py) and the threshold review chose."""
    expert = card.get("picture_expert")
    if not expert:
        return []
    pictures = card.get("review", {}).get("pictures", {})
    rules = card.get("review", {}).get("pictures_rules", {})
    without = rules.get("second_opinion_without")
    chosen = pictures.get("second_opinion", 0.0)
    row = next(
        (r for r in rules.get("second_opinion_grid", []) if r["second_opinion"] == chosen), None
    )
    effect = (
        f" On the dev part it raises the out-of-scope pictures flagged from "
        f"{_pct(without['out_of_scope_flagged'])} to {_pct(row['out_of_scope_flagged'])}, the "
        f"right answers flagged from {_pct(without['review_on_right'])} to "
        f"{_pct(row['review_on_right'])}, and the validation renders flagged from "
        f"{_pct(without['renders_flagged'])} to {_pct(row['renders_flagged'])}."
        if without and row
        else ""
    )
    return [
        "### Second opinion on pictures",
        "",
        f"`{expert['file']}` ({expert['model_version']}, {_arch(expert['architecture'])}, "
        f"{expert['parameters']:,} parameters, Fashion-MNIST validation accuracy "
        f"{_pct(expert['validation_accuracy'])}) answers nothing: when its top probability "
        f"on a real picture is below **{chosen:g}**, the picture is flagged `out_of_scope`."
        f"{effect} Rule: {rules.get('second_opinion_rule', 'none recorded')}.",
        "",
    ]


README = ROOT / "README.md"


def _arch(arch: dict[str, Any]) -> str:
    params = arch.get("params", {})
    if arch["name"] == "resnet" and "depth" in params:
        return f"ResNet-{params['depth']} (width {params.get('width', 16)})"
    return str(arch["name"])


def _lowest(metrics: dict[str, Any], key: str) -> str:
    worst = min(metrics["per_class"], key=lambda c: c[key])
    return f"{worst[key]:.3f} ({worst['name']})"


def _mb(size_bytes: int) -> str:
    return f"{size_bytes / 1e6:.1f} MB"


def readme_results(card: dict[str, Any]) -> str:
    """The README's results table: every served variant on the Fashion-MNIST test set."""

    def row(name: str, params: str, size: str, m: dict[str, Any]) -> tuple[str, ...]:
        return (
            name,
            params,
            size,
            _pct(m["accuracy"]),
            f"{m['macro_f1']:.4f}",
            _lowest(m, "precision"),
            _lowest(m, "recall"),
        )

    arch = _arch(card["architecture"])
    rows = [
        row(
            f"{arch}, FP32 ONNX",
            f"{card['parameters']:,}",
            _mb(card["size_bytes"]),
            card["metrics"]["test"],
        )
    ]
    int8 = card.get("variants", {}).get("int8")
    if int8:
        rows.append(
            row(
                "same, INT8 (QDQ)",
                f"{card['parameters']:,}",
                _mb(int8["size_bytes"]),
                int8["metrics"]["test"],
            )
        )
    cascade = card.get("cascade")
    if cascade and int8:
        first = cascade["first"]
        escalated = 100 * cascade["escalated_fraction"]["test"]
        name = (
            f"cascade: distilled {_arch(first['architecture'])} in INT8 first, the INT8 "
            f"model for the {escalated:.1f}% it is unsure of (served by default)"
        )
        rows.append(
            row(
                name,
                f"{first['parameters']:,} + {card['parameters']:,}",
                f"{first['size_bytes'] / 1e6:.1f} + {int8['size_bytes'] / 1e6:.1f} MB",
                cascade["metrics"]["test"],
            )
        )
    header = [
        "model",
        "parameters",
        "size",
        "test accuracy",
        "macro-F1",
        "min class precision",
        "min class recall",
    ]
    return "\n" + "\n".join(_table(header, rows, align="lrrrrrr")) + "\n"


def readme_per_class(card: dict[str, Any]) -> str:
    """The README's per-class table: the FP32 model on the Fashion-MNIST test set."""
    rows = [
        (c["name"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}")
        for c in card["metrics"]["test"]["per_class"]
    ]
    return "\n" + "\n".join(_table(["class", "precision", "recall", "F1"], rows, "lrrr")) + "\n"


def readme_real_pictures(card: dict[str, Any]) -> str:
    """The README's real-picture table (between its markers), from the card's figures."""
    real = card.get("real_pictures")
    if not real:
        return "\n_No real-picture figures in the model card._\n"
    fm = real["fashion_mnist_test"]
    rows = [
        (
            "Fashion-MNIST test",
            f"{fm['images']:,}",
            _pct(fm["accuracy"]),
            "",
            _pct(fm["review_on_wrong"]),
            _pct(fm["review_on_right"]),
            "",
            "",
            _pct(fm["ece"]),
        )
    ]
    for part in ("dev", "test"):
        m = real[part]
        rows.append(
            (
                f"real pictures, {part}",
                m["images"],
                _pct(m["accuracy"]),
                _pct(m["balanced_accuracy"]),
                _pct(m["review_on_wrong"]),
                _pct(m["review_on_right"]),
                f"{_pct(m['out_of_scope_flagged'])} of {m['out_of_scope']}",
                f"{m['out_of_scope_auroc']:.3f}",
                _pct(m["ece"]),
            )
        )
    header = [
        "images",
        "count",
        "accuracy",
        "balanced",
        "needs_review on wrong",
        "needs_review on right",
        "out-of-scope flagged",
        "out-of-scope AUROC",
        "ECE",
    ]
    return "\n" + "\n".join(_table(header, rows, align="lrrrrrrrr")) + "\n"


# The README's generated sections: <!-- NAME:start --> ... <!-- NAME:end -->.
README_SECTIONS = {
    "results-table": readme_results,
    "per-class-table": readme_per_class,
    "real-pictures-table": readme_real_pictures,
}


def update_readme(card: dict[str, Any], readme: Path = README) -> bool:
    """Rewrite the README's generated tables from the card; True when one changed."""
    text = original = readme.read_text(encoding="utf-8")
    for name, build in README_SECTIONS.items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        if start not in text or end not in text:
            raise SystemExit(f"{readme} lacks the markers {start} ... {end}")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + start + build(card) + end + tail
    if text != original:
        readme.write_text(text, encoding="utf-8")
    return text != original


def render(card: dict[str, Any], source: str = "artifacts/model_card.json") -> str:
    """The card as Markdown; every number comes from ``card``."""
    test = card["metrics"]["test"]
    arch = card["architecture"]
    classes = card["contract"]["class_names"]
    training = card.get("training", {})
    contract = card["contract"]
    config = card.get("config", {})
    out: list[str] = [
        f"# Model card: {card.get('name', 'product-classifier')} {card['model_version']}",
        "",
        f"<!-- Generated by scripts/render_model_card.py from {source}; do not edit by hand. -->",
        "",
        "## Summary",
        "",
        *_table(
            ["", ""],
            [
                ("Model version", f"`{card['model_version']}`"),
                ("Created", card.get("created_at", "unknown")),
                ("Architecture", f"{arch['name']} ({_params(arch.get('params', {}))})"),
                ("Parameters", f"{card.get('parameters', 0):,}"),
                ("File", f"`artifacts/{card['file']}`, {card['size_bytes'] / 1e6:.2f} MB"),
                ("SHA-256", f"`{card['sha256']}`"),
                ("Test accuracy", f"**{_pct(test['accuracy'])}** on {test['n']:,} images"),
                ("Macro-F1", f"{test['macro_f1']:.4f}"),
                ("Weakest class", _weakest(test["per_class"])),
            ],
        ),
        "",
        "## Intended use",
        "",
        card.get("intended_use", "Not stated."),
        "",
        *_review_text(card),
        "",
        "## Limitations",
        "",
        *(f"- {item}" for item in card.get("limitations", [])),
        "",
        "## Evaluation",
        "",
        f"On the official Fashion-MNIST test set ({test['n']:,} images: never training "
        "data; read to report and gate each release, whose choices are made on validation "
        f"data). Bar: precision and recall ≥ {QUALITY_BAR} per class.",
        "",
        *_table(
            ["id", "class", "precision", "recall", "F1", "support", f"≥ {QUALITY_BAR}"],
            [
                (
                    c["class_id"],
                    c["name"],
                    f"{c['precision']:.4f}",
                    f"{c['recall']:.4f}",
                    f"{c['f1']:.4f}",
                    c["support"],
                    "yes" if min(c["precision"], c["recall"]) >= QUALITY_BAR else "**no**",
                )
                for c in test["per_class"]
            ],
            align="rlrrrrc",
        ),
        "",
        "Confusion matrix (rows: true class; columns: predicted class id):",
        "",
        *_table(
            ["true \\ predicted", *(str(i) for i in range(len(classes)))],
            [(f"{i} {classes[i]}", *row) for i, row in enumerate(test["confusion_matrix"])],
            align="l" + "r" * len(classes),
        ),
        "",
        "![Confusion matrix](img/errors-confusion.png)",
        "",
    ]
    out += _variants(card)
    out += _cascade(card)
    out += _real_pictures(card)
    if training:
        opt = config.get("optimizer", {})
        sched = config.get("scheduler", {})
        train_cfg = config.get("train", {})
        augment = config.get("augment", {})
        out += [
            "## Training",
            "",
            *_table(
                ["", ""],
                [
                    (
                        "Epochs",
                        f"{training.get('epochs_run')} (best: {training.get('best_epoch')})",
                    ),
                    ("Best validation accuracy", _pct(training.get("best_val_accuracy", 0.0))),
                    (
                        "Hardware",
                        f"{training.get('world_size', 1)} x {training.get('device')}, "
                        f"{training.get('wall_seconds', 0) / 60:.1f} min",
                    ),
                    ("Optimizer", f"{opt.get('name')} ({_params({**opt, 'name': None})})"),
                    ("Schedule", _params(sched)),
                    ("Augmentation", _params(augment)),
                    ("Batch size", train_cfg.get("batch_size")),
                    ("EMA decay", train_cfg.get("ema_decay")),
                    ("Flip TTA in the exported graph", contract.get("tta_flip_in_graph")),
                ],
            ),
            "",
        ]
    data = card.get("data", {})
    if data:
        split = data.get("split", {})
        out += [
            "## Data",
            "",
            f"{data.get('dataset', 'Fashion-MNIST')}. Training/validation: "
            f"{split.get('train_validation', 'n/a')}. Test: {split.get('test', 'n/a')}.",
            "",
            *_table(["file", "sha256"], data.get("payload_sha256", {}).items()),
            "",
        ]
    inp, outp = contract["input"], contract["output"]
    out += [
        "## Interface (ONNX contract)",
        "",
        f"- Input `{inp['name']}`: {inp['dtype']} {_shape(inp['shape'])} in {inp['range']}, "
        f"{inp['orientation']}.",
        f"- Output `{outp['name']}`: {outp['dtype']} {_shape(outp['shape'])}, class order: "
        + ", ".join(f"{i} {name}" for i, name in enumerate(classes))
        + ".",
        "- Metadata: `class_names` (JSON list) and `model_version`.",
        "",
    ]
    versions = card.get("versions", {})
    if versions:
        out += ["## Software", ""]
        for stage, libs in versions.items():
            out.append(f"- {stage}: " + ", ".join(f"{k} {v}" for k, v in libs.items()))
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the model card as Markdown.")
    parser.add_argument("--card", type=Path, default=DEFAULT_CARD)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="fail if --out is out of date")
    args = parser.parse_args(argv)
    try:
        source = args.card.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        source = str(args.card)
    text = render(json.loads(args.card.read_text(encoding="utf-8")), source)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run scripts/render_model_card.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    if args.card == DEFAULT_CARD and update_readme(json.loads(args.card.read_text("utf-8"))):
        print(f"updated the generated tables in {README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
