"""Catalog folders as datasets: checks (skipped, duplicates, minimum), splits and the manifest.

The folders are real image files written here, decoded by the same code that training and the
service use.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from product_classifier.config import DataConfig
from product_classifier.data.dataset import load_dataset, load_eval_folder
from product_classifier.data.folder import FolderDataError, load_folder
from product_classifier.preprocessing import InputSpec

SPEC = InputSpec(size=32, channels=3, canonicalization="letterbox")
COLOURS = {"hat": (200, 30, 30), "mug": (30, 160, 40), "watch": (30, 30, 200)}


def picture(colour: tuple[int, int, int], seed: int, fmt: str = "PNG") -> bytes:
    """A coloured blob of a seed-dependent size on a white page: every file is distinct."""
    rng = np.random.default_rng(seed)
    w, h = (int(v) for v in rng.integers(40, 120, size=2))
    image = Image.new("RGB", (w, h), "white")
    box = (5 + seed % 7, 5, w - 5, h - 5 - seed % 5)
    image.paste(colour, box)
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def make_folder(root: Path, per_category: int = 12, parts: tuple[str, ...] = ()) -> Path:
    for p_index, part in enumerate(parts or ("",)):
        for c_index, (name, colour) in enumerate(COLOURS.items()):
            folder = root / part / name if part else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_category):
                seed = 1000 * p_index + 100 * c_index + i
                fmt = ("PNG", "JPEG", "WEBP")[i % 3]
                (folder / f"{i}.{fmt.lower()}").write_bytes(picture(colour, seed, fmt))
    return root


def test_a_folder_is_checked_and_decoded_with_the_spec(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "cat")
    (root / "hat" / "readme.txt").write_text("not a picture")
    (root / "mug" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    (root / "mug" / "again.png").write_bytes((root / "mug" / "0.png").read_bytes())
    data = load_folder(root, SPEC, progress=False)
    assert data.categories == ("hat", "mug", "watch")
    assert data.images.shape == (36, 32, 32, 3) and data.images.dtype == np.uint8
    assert {s["path"]: s["code"] for s in data.skipped} == {
        "hat/readme.txt": "not_an_image",
        "mug/broken.png": "corrupt_image",
    }
    assert data.repeats == [{"path": "mug/again.png", "same_as": "mug/0.png"}]


def test_the_same_file_under_two_categories_is_refused(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "cat")
    (root / "watch" / "stray.png").write_bytes((root / "hat" / "3.png").read_bytes())
    with pytest.raises(FolderDataError, match=r"hat/3.png and watch/stray.png .* two categories"):
        load_folder(root, SPEC, progress=False)


def test_the_same_file_in_two_of_your_splits_is_refused(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "cat", parts=("train", "test"))
    (root / "test" / "hat" / "leak.png").write_bytes(
        (root / "train" / "hat" / "3.png").read_bytes()
    )
    with pytest.raises(
        FolderDataError, match=r"test/hat/leak.png and train/hat/3.png .* two splits"
    ):
        load_folder(root, SPEC, progress=False)


def test_a_category_with_too_few_pictures_stops_with_its_name_and_count(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "cat")
    for extra in sorted((root / "mug").iterdir())[4:]:
        extra.unlink()
    with pytest.raises(FolderDataError, match=r"'mug': 4"):
        load_folder(root, SPEC, min_images_per_class=10, progress=False)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"hat": 3}, "at least 2"),
        ({"train/hat": 3, "mug": 3}, "mixes split folders"),
        ({"test/hat": 3, "test/mug": 3}, "no train/ folder"),
        ({}, "no category folders"),
    ],
)
def test_bad_layouts_say_what_to_fix(tmp_path: Path, layout: dict, message: str) -> None:
    root = tmp_path / "cat"
    root.mkdir()
    for folder, n in layout.items():
        (root / folder).mkdir(parents=True)
        for i in range(n):
            (root / folder / f"{i}.png").write_bytes(picture((9, 9, 9), hash(folder) % 50 + i))
    with pytest.raises(FolderDataError, match=message):
        load_folder(root, SPEC, min_images_per_class=2, progress=False)


def test_the_split_is_stratified_seeded_and_in_the_manifest(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "cat", per_category=20)
    cfg = DataConfig(folder=root, val_fraction=0.2, test_fraction=0.2, split_seed=7)
    first = load_dataset(cfg, SPEC, progress=False)
    again = load_dataset(cfg, SPEC, progress=False)
    assert first.class_names == ("hat", "mug", "watch")
    assert first.counts()["test"] == {"hat": 4, "mug": 4, "watch": 4}
    assert first.counts()["val"] == {"hat": 4, "mug": 4, "watch": 4}
    assert first.counts()["train"] == {"hat": 12, "mug": 12, "watch": 12}
    assert first.manifest == again.manifest  # same folder, config and seed: same split
    (source,) = first.manifest["sources"]
    files = source["files"]
    assert len(files) == 60 and {f["split"] for f in files} == {"train", "val", "test"}
    assert set(files[0]) == {"file", "category", "label", "split", "sha256"}
    other = load_dataset(cfg.model_copy(update={"split_seed": 8}), SPEC, progress=False)
    assert other.manifest["sources"][0]["files"] != files
    path = tmp_path / "manifest.json"
    digest = first.write_manifest(path)
    assert len(digest) == 64 and json.loads(path.read_text())["class_names"] == [
        "hat",
        "mug",
        "watch",
    ]


def test_your_own_split_is_kept_and_a_missing_val_is_carved_from_train(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "cat", per_category=10, parts=("train", "test"))
    dataset = load_dataset(DataConfig(folder=root, val_fraction=0.2), SPEC, progress=False)
    counts = dataset.counts()
    assert counts["test"] == {"hat": 10, "mug": 10, "watch": 10}  # exactly test/
    assert sum(counts["val"].values()) > 0
    assert sum(counts["train"].values()) + sum(counts["val"].values()) == 30
    files = dataset.manifest["sources"][0]["files"]
    assert all(f["split"] == "test" for f in files if f["file"].startswith("test/"))


def test_merging_with_fashion_mnist_keeps_its_ten_and_adds_new_categories(
    tmp_path: Path,
) -> None:
    root = make_folder(tmp_path / "cat", per_category=10)
    (root / "sneakers").mkdir()
    for i in range(10):
        (root / "sneakers" / f"{i}.png").write_bytes(picture((1, 2, 3), 500 + i))
    cfg = DataConfig(folder=root, fashion_mnist=True, subset_fraction=0.01)
    dataset = load_dataset(cfg, SPEC, splits=("val",), progress=False)
    names = dataset.class_names
    assert names[:10][7] == "Sneaker" and names[10:] == ("hat", "mug", "watch")
    assert dataset.images["val"].shape[1:] == (32, 32, 3)
    # 'sneakers' merged into Fashion-MNIST's Sneaker instead of becoming a new class.
    files = dataset.manifest["sources"][1]["files"]
    assert {f["label"] for f in files if f["category"] == "sneakers"} == {7}


def test_evaluating_another_folder_maps_categories_by_name(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "held-out", per_category=3)
    images, labels, report = load_eval_folder(root, SPEC, ("mug", "hat", "watch"), progress=False)
    assert images.shape == (9, 32, 32, 3)
    assert sorted(set(labels.tolist())) == [0, 1, 2] and report["pictures"] == 9
    with pytest.raises(FolderDataError, match="none of the model's categories"):
        load_eval_folder(root, SPEC, ("mug", "hat"), progress=False)
