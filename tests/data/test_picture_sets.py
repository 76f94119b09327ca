"""The two real-picture sets, rebuilt from pinned packages as CI rebuilds them.

- the labelled real-picture benchmark (the ten Fashion-MNIST categories + out-of-scope), whose
  ``dev`` part is for choices and whose ``test`` part is only reported;
- the six-category catalog folder of the end-to-end test.

Both must keep the split rule (no design family or package on two sides), list every picture
with its source, licence, label and SHA-256, and have the size the docs promise.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from product_classifier.constants import CLASS_NAMES

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "scripts" / "picture_sets"))

pytestmark = pytest.mark.slow
FIELDS = {"file", "label", "split", "sha256", "source_package", "package_version", "licence"}


def _check_manifest(root: Path, parts: tuple[str, str]) -> list[dict]:
    manifest = json.loads((root / "manifest.json").read_text())
    pictures = manifest["pictures"]
    assert pictures and manifest["count"] == len(pictures)
    on_disk = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.*"))
    assert sorted(p["file"] for p in pictures) == sorted(set(on_disk) - {"manifest.json"})
    for picture in pictures:
        assert set(picture) >= FIELDS, picture
        data = (root / picture["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == picture["sha256"], picture["file"]
        assert picture["split"] in parts
    for key in ("family", "source_package"):
        sides = {p["split"]: set() for p in pictures}
        for p in pictures:
            # Generated blanks and noise have no package; their kinds (families) are split.
            if p["source_package"] != "generated" or key == "family":
                sides[p["split"]].add(p[key])
        first, second = (sides[part] for part in parts)
        assert not first & second, f"{key} on both sides: {sorted(first & second)}"
    assert len({p["sha256"] for p in pictures}) == len(pictures)  # no picture twice
    return pictures


def test_the_real_picture_benchmark_is_big_enough_and_split_by_design_family(
    real_pictures: Path,
) -> None:
    pictures = _check_manifest(real_pictures, ("dev", "test"))
    labels = Counter(p["label"] for p in pictures)
    in_scope = sum(n for label, n in labels.items() if label != "out-of-scope")
    assert in_scope >= 300
    assert labels["out-of-scope"] >= 100
    for name in CLASS_NAMES:
        assert labels[name] >= 15, f"{name}: {labels[name]}"
        for part in ("dev", "test"):
            n = sum(1 for p in pictures if p["label"] == name and p["split"] == part)
            assert n >= 7, f"{name} has {n} pictures in {part}"
    # Folders are named after the labels, so `evaluate --data` and load_folder read them.
    for p in pictures:
        assert Path(p["file"]).parts[1] == p["label"].replace("/", "-")


def test_the_catalog_folder_holds_out_other_sources(tmp_path: Path) -> None:
    from build_catalog import CATEGORIES, build_catalog

    build_catalog(tmp_path, quiet=True)
    pictures = _check_manifest(tmp_path, ("train", "test"))
    for category in CATEGORIES:
        assert sum(1 for p in pictures if p["category"] == category and p["split"] == "test") >= 15
        assert sum(1 for p in pictures if p["category"] == category and p["split"] == "train") >= 60
