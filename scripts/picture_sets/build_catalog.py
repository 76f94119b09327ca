"""Build a 6-category product catalog folder from real icon/emoji pictures (not Fashion-MNIST).

    python scripts/picture_sets/build_catalog.py --out DIR [--per-category N]
        [--contact-sheet PATH] [--cache DIR]

Why: the folder-import / new-catalog path needs a real multi-category picture folder whose
categories Fashion-MNIST never saw (hat, watch, glasses, mug, umbrella, socks), with a test
split that is a genuine generalisation test: its pictures come from OTHER packages, drawn by
other designers (design families never seen in training), not just other renders.

Layout: DIR/train/<category>/<package>__<icon>__<k>.<ext>, DIR/test/<category>/...,
DIR/manifest.json. Training icons get several renders each (size 64-512 px, colour of
monochrome icons, page or transparency, padding, rotation, offset, PNG/JPEG/WebP); test icons
get one or two. Every picture is seeded by its own name, so builds are byte-identical and a
capped build (--per-category N: at most N training pictures per category; the held-out test
split is always complete, so accuracy at different training sizes is measured on the same
pictures) is an exact subset of the full one.

Importable: `build_catalog(out_dir, per_category=None) -> Path` (the manifest's path).
"""

# ruff: noqa: E501  (the reviewed tables keep one entry per line, however long)

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, also when imported

from iconsets import load_iconset
from manifest import (
    Source,
    add_picture,
    check_disjoint,
    check_icons_exist,
    finish,
    prepare_out_dir,
    run_build,
    sources_from,
)
from packages import DEFAULT_CACHE, PACKAGES, fetch
from render import random_variation, render_svg

BUILDER = "catalog/1"  # bump when a change alters any output byte
SEED = "product-catalog-v1"
CATEGORIES = ("hat", "watch", "glasses", "mug", "umbrella", "socks")
TRAIN_TARGET = 90  # pictures per category in train (renders per icon = ceil(target / icons))
TEST_TARGET = 24  # 2 renders per test icon while that stays under ~target, else 1

# Training sources. Every icon here was looked at on a contact sheet; ambiguous ones (chef and
# wizard hats, trophies, sippy cups, Christmas stockings, umbrellas with a tick) were left out.
# fmt: off
TRAIN: dict[str, dict[str, list[str]]] = {
    "hat": {
        "ph": ["cowboy-hat", "baseball-cap", "baseball-cap-fill", "beanie", "beanie-fill"],
        "game-icons": ["top-hat", "fedora", "western-hat", "winter-hat", "billed-cap", "skimmer-hat", "flower-hat", "outback-hat"],
        "icon-park": ["baseball-cap", "woolen-hat", "straw-hat", "sun-hat"],
        "icon-park-outline": ["baseball-cap", "woolen-hat", "magic-hat"],
        "icon-park-solid": ["woolen-hat", "sun-hat"],
        "mingcute": ["hat-fill", "hat-line", "hat-2-fill"],
        "hugeicons": ["cowboy-hat", "cap"],
        "mdi": ["hat-fedora"],
        "fluent-emoji-flat": ["top-hat", "billed-cap"],
        "fluent-emoji": ["top-hat", "billed-cap"],
        "emojione": ["top-hat"],
        "emojione-v1": ["top-hat"],
    },
    "watch": {
        "ph": ["watch", "watch-fill", "watch-duotone"],
        "game-icons": ["watch"],
        "icon-park": ["watch", "watch-one"],
        "icon-park-outline": ["watch-one"],
        "icon-park-solid": ["watch"],
        "icon-park-twotone": ["watch-one"],
        "mingcute": ["watch-fill", "watch-line", "watch-2-line"],
        "hugeicons": ["watch-01", "watch-02", "smart-watch-01"],
        "mdi": ["watch", "watch-variant"],
        "solar": ["watch-round-outline", "watch-square-outline"],
        "material-symbols": ["watch", "watch-outline"],
        "fluent-emoji-flat": ["watch"],
        "fluent-emoji": ["watch"],
        "fluent-emoji-high-contrast": ["watch"],
        "emojione": ["watch"],
        "emojione-monotone": ["watch"],
        "emojione-v1": ["watch"],
        "fxemoji": ["watch"],
    },
    "glasses": {
        "ph": ["eyeglasses", "eyeglasses-fill", "sunglasses", "sunglasses-fill"],
        "game-icons": ["spectacles", "sunglasses"],
        "icon-park": ["glasses", "glasses-three"],
        "icon-park-outline": ["glasses-one"],
        "icon-park-solid": ["glasses"],
        "hugeicons": ["glasses"],
        "mdi": ["glasses", "sunglasses"],
        "material-symbols": ["eyeglasses", "eyeglasses-2"],
        "solar": ["glasses-outline"],
        "fluent-emoji-flat": ["glasses", "sunglasses"],
        "fluent-emoji": ["glasses", "sunglasses"],
        "fluent-emoji-high-contrast": ["glasses"],
        "emojione": ["glasses", "sunglasses"],
        "emojione-monotone": ["sunglasses"],
        "emojione-v1": ["glasses", "sunglasses"],
        "fxemoji": ["glasses", "darksunglasses"],
    },
    "mug": {
        "ph": ["coffee", "coffee-fill"],
        "game-icons": ["coffee-cup", "coffee-mug"],
        "icon-park": ["cup"],
        "icon-park-outline": ["cup"],
        "icon-park-solid": ["cup"],
        "mingcute": ["teacup-fill", "teacup-line"],
        "hugeicons": ["coffee-02", "coffee-03", "coffee-04"],
        "mdi": ["coffee", "coffee-outline"],
        "material-symbols": ["coffee", "coffee-outline"],
        "solar": ["cup-hot-outline", "mug-outline", "tea-cup-outline"],
        "fluent-emoji-flat": ["hot-beverage"],
        "fluent-emoji": ["hot-beverage"],
        "emojione": ["hot-beverage"],
        "emojione-monotone": ["hot-beverage"],
        "emojione-v1": ["hot-beverage"],
    },
    "umbrella": {
        "ph": ["umbrella", "umbrella-fill", "umbrella-simple"],
        "game-icons": ["umbrella"],
        "icon-park": ["umbrella", "umbrella-one"],
        "icon-park-outline": ["umbrella"],
        "icon-park-solid": ["umbrella-one"],
        "icon-park-twotone": ["umbrella"],
        "mingcute": ["umbrella-fill", "umbrella-line"],
        "hugeicons": ["umbrella"],
        "mdi": ["umbrella", "umbrella-outline", "umbrella-closed"],
        "material-symbols": ["umbrella"],
        "solar": ["umbrella-outline"],
        "fluent-emoji-flat": ["umbrella", "closed-umbrella"],
        "fluent-emoji": ["umbrella", "closed-umbrella"],
        "fluent-emoji-high-contrast": ["umbrella"],
        "emojione": ["umbrella", "closed-umbrella"],
        "emojione-monotone": ["umbrella"],
        "emojione-v1": ["closed-umbrella"],
        "fxemoji": ["umbrella"],
    },
    "socks": {
        "ph": ["sock", "sock-fill", "sock-duotone", "sock-bold"],
        "game-icons": ["socks"],
        "icon-park": ["socks"],
        "icon-park-outline": ["socks"],
        "mingcute": ["sock-fill", "sock-line"],
        "hugeicons": ["socks"],
        "fluent-emoji-flat": ["socks"],
        "fluent-emoji": ["socks"],
        "fluent-emoji-high-contrast": ["socks"],
    },
}

# Held-out sources: other design families only (checked by check_disjoint at build time).
TEST: dict[str, dict[str, list[str]]] = {
    "hat": {
        "noto": ["top-hat", "billed-cap", "womans-hat"],
        "noto-v1": ["top-hat", "womans-hat"],
        "twemoji": ["top-hat", "billed-cap", "womans-hat"],
        "openmoji": ["top-hat", "billed-cap", "womans-hat"],
        "streamline-emojis": ["womans-hat"],
        "la": ["hat-cowboy"],
        "fa6-solid": ["hat-cowboy", "hat-cowboy-side"],
        "iconoir": ["hat"],
        "lucide-lab": ["hat-beanie", "hat-baseball", "hat-bowler", "hat-top"],
        "streamline": ["beanie-solid", "beanie"],
    },
    "watch": {
        "noto": ["watch"],
        "noto-v1": ["watch"],
        "twemoji": ["watch"],
        "openmoji": ["watch"],
        "streamline-emojis": ["watch"],
        "tabler": ["device-watch", "device-watch-filled"],
        "lucide": ["watch"],
        "iconoir": ["wristwatch"],
        "bi": ["watch", "smartwatch"],
        "streamline": ["watch-1", "watch-2"],
    },
    "glasses": {
        "noto": ["glasses", "sunglasses"],
        "noto-v1": ["glasses", "sunglasses"],
        "twemoji": ["glasses", "sunglasses"],
        "openmoji": ["glasses", "sunglasses"],
        "streamline-emojis": ["glasses-1", "sunglasses"],
        "tabler": ["sunglasses"],
        "la": ["glasses"],
        "fa6-solid": ["glasses"],
        "lucide": ["glasses"],
        "lucide-lab": ["glasses-square", "glasses-sun"],
        "ri": ["glasses-line", "glasses-2-fill"],
        "bi": ["eyeglasses", "sunglasses"],
        "streamline": ["glasses-solid"],
    },
    "mug": {
        "noto": ["hot-beverage"],
        "noto-v1": ["hot-beverage"],
        "twemoji": ["hot-beverage"],
        "openmoji": ["hot-beverage"],
        "streamline-emojis": ["hot-beverage-2"],
        "tabler": ["mug", "coffee"],
        "lucide": ["coffee"],
        "lucide-lab": ["mug"],
        "la": ["mug-hot"],
        "fa6-solid": ["mug-saucer"],
        "iconoir": ["coffee-cup"],
        "ri": ["cup-line"],
        "bi": ["cup-hot"],
        "streamline": ["coffee-mug"],
    },
    "umbrella": {
        "noto": ["umbrella", "closed-umbrella"],
        "noto-v1": ["umbrella", "closed-umbrella"],
        "twemoji": ["umbrella", "closed-umbrella"],
        "openmoji": ["umbrella", "closed-umbrella"],
        "streamline-emojis": ["umbrella", "closed-umbrella"],
        "tabler": ["umbrella", "umbrella-closed", "umbrella-filled"],
        "lucide": ["umbrella"],
        "la": ["umbrella"],
        "fa6-solid": ["umbrella"],
        "iconoir": ["umbrella"],
        "ri": ["umbrella-line"],
        "bi": ["umbrella-fill"],
        "streamline": ["open-umbrella", "open-umbrella-solid"],
    },
    "socks": {
        "noto": ["socks"],
        "twemoji": ["socks"],
        "openmoji": ["socks"],
        "tabler": ["sock"],
        "lucide-lab": ["socks"],
        "la": ["socks"],
        "fa-solid": ["socks"],
        "fa6-solid": ["socks"],
        "fa7-solid": ["socks"],
    },
}
# fmt: on


def _renders_per_icon(split: str, n_icons: int) -> int:
    if split == "train":
        return max(3, math.ceil(TRAIN_TARGET / n_icons))
    return 2 if n_icons * 2 <= TEST_TARGET + 6 else 1


def plan(per_category: int | None = None) -> list[tuple[str, Source, int]]:
    """(split, source, render index) for every picture; `per_category` caps train only.

    Ordered render-index-major, so a cap keeps as many different icons as possible. The test
    split is never capped: it is the fixed yardstick for any training size.
    """
    jobs: list[tuple[str, Source, int]] = []
    for split, table in (("train", TRAIN), ("test", TEST)):
        for category in CATEGORIES:
            sources = sources_from({category: table[category]})
            renders = _renders_per_icon(split, len(sources))
            ordered = [(split, s, k) for k in range(renders) for s in sources]
            capped = split == "train" and per_category is not None
            jobs.extend(ordered[:per_category] if capped else ordered)
    return jobs


def build_catalog(
    out_dir: Path,
    per_category: int | None = None,
    *,
    cache_dir: Path = DEFAULT_CACHE,
    contact_sheet_path: Path | None = None,
    quiet: bool = False,
) -> Path:
    """Build the catalog into `out_dir` (emptied first); returns the manifest's path."""
    out_dir = Path(out_dir)
    check_disjoint({"train": sources_from(TRAIN), "test": sources_from(TEST)})
    jobs = plan(per_category)
    dirs = {key: fetch(key, cache_dir) for key in sorted({s.package for _, s, _ in jobs})}
    check_icons_exist({s for _, s, _ in jobs}, dirs)
    prepare_out_dir(out_dir, ("train", "test"))

    pictures, sheet_items = [], []
    for split, source, k in jobs:
        iconset = load_iconset(dirs[source.package])
        name = f"{source.package}__{source.icon}__{k}"
        rng = random.Random(f"{SEED}:{split}:{source.label}:{name}")
        variation = random_variation(rng, sizes=(64, 512), max_rotation=15.0, max_shift=0.6)
        data = render_svg(iconset.svg(source.icon, variation.color), variation)
        relative = f"{split}/{source.label}/{name}{variation.extension}"
        package = PACKAGES[source.package]
        path = add_picture(
            out_dir,
            pictures,
            relative,
            data,
            variation,
            category=source.label,
            label=source.label,
            split=split,
            source_package=package.name,
            package_version=package.version,
            family=package.family,
            original_file=f"package/icons.json#{source.icon}",
            licence=package.licence,
        )
        sheet_items.append((path, f"{split}/{source.label}\n{source.package}\n{source.icon}#{k}"))

    header = {
        "name": "product-catalog",
        "builder": BUILDER,
        "seed": SEED,
        "categories": list(CATEGORIES),
    }
    manifest = finish(
        out_dir, header, pictures, sheet_items, contact_sheet_path, ("train", "test"),
        quiet=quiet, key="category",
    )  # fmt: skip
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (emptied first)")
    parser.add_argument(
        "--per-category", type=int, default=None, help="training pictures per category (test: all)"
    )
    parser.add_argument(
        "--contact-sheet", type=Path, default=None, help="also write a PNG grid of all pictures"
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="package cache folder")
    args = parser.parse_args(argv)
    return run_build(
        lambda: build_catalog(
            args.out, args.per_category, cache_dir=args.cache, contact_sheet_path=args.contact_sheet
        )
    )


if __name__ == "__main__":
    sys.exit(main())
