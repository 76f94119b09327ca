"""data/folder_import.py and `data import-folder`: own photos, one folder per category -> IDX."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from product_classifier.cli import import_folder as cli_module
from product_classifier.constants import CLASS_NAMES
from product_classifier.data.folder_import import (
    FolderImportError,
    category_of,
    import_folder,
    write_import,
)
from product_classifier.data.idx import read_idx
from product_classifier.preprocessing import decode_image, preprocess_image


def catalog_photo(seed: int, fmt: str = "JPEG") -> bytes:
    """A dark item on a white page, bigger than 28x28, like a shop's product photo."""
    rng = np.random.default_rng(seed)
    img = np.full((160, 120, 3), 255, dtype=np.uint8)
    top, left = rng.integers(10, 50, size=2)
    img[top : top + 80, left : left + 50] = rng.integers(0, 90, size=(80, 50, 3))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    root = tmp_path / "catalog"
    files = {
        "Sneakers/a.jpg": catalog_photo(1),
        "Sneakers/nested/b.png": catalog_photo(2, "PNG"),
        "ankle boot/c.jpg": catalog_photo(3),
        "6-shirt/d.webp": catalog_photo(4, "WEBP"),
        "6-shirt/notes.txt": b"not a photo",
        "6-shirt/broken.jpg": b"\xff\xd8\xff broken",
        "6-shirt/.DS_Store": b"junk",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.mark.parametrize(
    ("name", "class_id"),
    [
        ("T-shirt top", 0),
        ("tshirt_top", 0),
        ("Trousers", 1),
        ("Dresses", 3),
        ("ankle-boots", 9),
        ("Ankle boot", 9),
        ("7", 7),
        ("6-shirt", 6),
        ("hats", None),
        ("shirtdress", None),
    ],
)
def test_category_of_folder_names(name: str, class_id: int | None) -> None:
    assert category_of(name) == class_id


def test_import_uses_the_service_preprocessing(catalog: Path) -> None:
    result = import_folder(catalog)
    assert result.sources == [
        "6-shirt/d.webp",
        "Sneakers/a.jpg",
        "Sneakers/nested/b.png",
        "ankle boot/c.jpg",
    ]
    assert [CLASS_NAMES[i] for i in result.labels] == ["Shirt", "Sneaker", "Sneaker", "Ankle boot"]
    assert result.images.shape == (4, 28, 28) and result.images.dtype == np.uint8
    for image, source in zip(result.images, result.sources, strict=True):
        expected = preprocess_image(decode_image((catalog / source).read_bytes()))
        np.testing.assert_array_equal(image, expected)
    # Light page inverted, item cropped and centred: dark side margins, bright item.
    assert result.images[:, :, 0].mean() < 10 and result.images.mean() > 20
    assert sorted(s["path"] for s in result.skipped) == ["6-shirt/broken.jpg", "6-shirt/notes.txt"]
    assert result.counts() == {"Shirt": 1, "Sneaker": 2, "Ankle boot": 1}


def test_written_idx_reads_back(catalog: Path, tmp_path: Path) -> None:
    result = import_folder(catalog)
    paths = write_import(result, tmp_path / "out")
    np.testing.assert_array_equal(read_idx(paths["images"], "images"), result.images)
    np.testing.assert_array_equal(read_idx(paths["labels"], "labels"), result.labels)
    manifest = json.loads(paths["manifest"].read_text())
    assert manifest["count"] == 4 and len(manifest["skipped"]) == 2
    assert manifest["images"][0] == {
        "index": 0,
        "source": "6-shirt/d.webp",
        "class_id": 6,
        "category": "Shirt",
    }
    first = paths["images"].read_bytes()
    write_import(result, tmp_path / "out")
    assert paths["images"].read_bytes() == first  # reproducible bytes


def test_an_unknown_folder_is_an_error_naming_it(catalog: Path) -> None:
    (catalog / "Hats").mkdir()
    with pytest.raises(FolderImportError, match="Hats"):
        import_folder(catalog)


def test_cli_command(catalog: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    cli_module.register(app)
    app.command("noop")(lambda: None)  # a second command keeps the sub-command name
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["import-folder", str(catalog), "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert "imported 4 images" in result.output and "skipped 2 files" in result.output
    assert (out / "catalog-images-idx3-ubyte.gz").is_file()
    (catalog / "Hats").mkdir()
    result = CliRunner().invoke(app, ["import-folder", str(catalog), "--out-dir", str(out)])
    assert result.exit_code == 2 and "Hats" in result.output
