"""Build a labelled benchmark of real product pictures for the 10 Fashion-MNIST classes.

    python scripts/picture_sets/build_real_pictures.py --out DIR
        [--contact-sheet PATH] [--cache DIR]

Why: the model is trained on 28x28 Fashion-MNIST scans; this set asks how it does on the
pictures a shop actually has (colour emoji, outline and filled icons of the same garments),
and what it does with pictures that are none of its classes (other products, animals, food,
vehicles, scenes, text, blank and noise images: the "out-of-scope" label).

The split rule: `dev` and `test` are split once by design family (the authors/style of a
whole collection, see packages.py), never by icon, so tuning a threshold on `dev` cannot
learn a style that `test` then rewards. check_disjoint() enforces it at build time.

One render per source icon (no augmentation copies): a white, off-white or transparent page,
256-800 px, PNG or JPEG, a product colour for monochrome icons. Every label below was checked
by eye on a contact sheet (--contact-sheet); names are what the picture shows, not what the
icon is called (many "shirt" icons are T-shirts, emoji "necktie" is a shirt front).

Layout: DIR/{dev,test}/<class name, "/" -> "-">/<package>__<icon>.<ext>,
DIR/{dev,test}/out-of-scope/..., DIR/manifest.json.
Importable: `build_real_pictures(out_dir) -> Path` (the manifest's path).
"""

# ruff: noqa: E501  (the reviewed tables keep one entry per line, however long)

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, also when imported

from iconsets import load_iconset
from manifest import (
    add_picture,
    check_disjoint,
    check_icons_exist,
    finish,
    prepare_out_dir,
    run_build,
    sources_from,
)
from packages import DEFAULT_CACHE, PACKAGES, fetch
from PIL import Image, ImageChops, ImageDraw, ImageFont
from render import Variation, encode, random_variation, render_svg

BUILDER = "real-pictures/1"  # bump when a change alters any output byte
SEED = "real-pictures-v1"
SPLITS = ("dev", "test")
OUT_OF_SCOPE = "out-of-scope"
# Fashion-MNIST order (== product_classifier.constants.CLASS_NAMES; not imported so the
# script runs without the package installed).
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
GENERATED = "generated"

# fmt: off
DEV: dict[str, dict[str, list[str]]] = {
    "T-shirt/top": {
        "fluent-emoji-flat": ["t-shirt", "running-shirt", "womans-clothes"],
        "fluent-emoji": ["t-shirt", "running-shirt"],
        "fluent-emoji-high-contrast": ["t-shirt", "running-shirt"],
        "emojione": ["t-shirt", "running-shirt"],
        "emojione-v1": ["t-shirt", "running-shirt", "womans-clothes"],
        "emojione-monotone": ["t-shirt", "running-shirt"],
        "fxemoji": ["mansshirt", "runningshirt"],
        "ph": ["t-shirt", "t-shirt-fill", "t-shirt-duotone"],
        "game-icons": ["t-shirt", "tank-top", "sleeveless-top", "basketball-jersey", "polo-shirt"],
        "lucide": ["shirt"],
        "lucide-lab": ["shirt-t-v-neck"],
        "mdi": ["tshirt-crew", "tshirt-v-outline"],
        "fa6-solid": ["shirt"],
        "material-symbols": ["apparel", "apparel-outline"],
        "la": ["tshirt"],
    },
    "Trouser": {
        "fluent-emoji-flat": ["jeans"],
        "fluent-emoji": ["jeans"],
        "fluent-emoji-high-contrast": ["jeans"],
        "emojione": ["jeans"],
        "emojione-v1": ["jeans"],
        "emojione-monotone": ["jeans"],
        "fxemoji": ["jeans"],
        "game-icons": ["trousers"],
        "hugeicons": ["jogger-pants"],
        "ph": ["pants", "pants-fill"],
    },
    "Pullover": {
        "ph": ["hoodie", "hoodie-fill", "hoodie-bold", "hoodie-duotone", "hoodie-light", "hoodie-thin"],
        "hugeicons": ["hoodie", "jumpers"],
        "game-icons": ["hoodie"],
        "lucide-lab": ["sweater"],
    },
    "Dress": {
        "fluent-emoji-flat": ["dress"],
        "fluent-emoji": ["dress"],
        "fluent-emoji-high-contrast": ["dress"],
        "emojione": ["dress"],
        "emojione-v1": ["dress"],
        "emojione-monotone": ["dress"],
        "fxemoji": ["dress"],
        "game-icons": ["dress", "ample-dress", "large-dress", "travel-dress"],
        "hugeicons": ["dress-02", "dress-03", "dress-04"],
        "lucide-lab": ["dress"],
        "ph": ["dress", "dress-fill", "dress-duotone"],
    },
    "Coat": {
        "fluent-emoji-flat": ["coat", "lab-coat"],
        "fluent-emoji": ["coat", "lab-coat"],
        "fluent-emoji-high-contrast": ["coat", "lab-coat"],
        "game-icons": ["lab-coat", "moncler-jacket"],
        "hugeicons": ["suit-01"],
        "lucide-lab": ["jacket", "jacket-sports"],
    },
    "Sandal": {
        "fluent-emoji-flat": ["thong-sandal", "womans-sandal"],
        "fluent-emoji": ["thong-sandal", "womans-sandal"],
        "fluent-emoji-high-contrast": ["thong-sandal", "womans-sandal"],
        "emojione": ["womans-sandal"],
        "emojione-v1": ["womans-sandal"],
        "emojione-monotone": ["womans-sandal"],
        "fxemoji": ["sandals"],
        "game-icons": ["flip-flops", "sandal"],
        "hugeicons": ["sandals"],
    },
    "Shirt": {
        "fluent-emoji-flat": ["necktie"],
        "fluent-emoji": ["necktie"],
        "emojione": ["necktie", "womans-clothes"],
        "emojione-v1": ["necktie"],
        "emojione-monotone": ["womans-clothes"],
        "fxemoji": ["tie", "womansshirt"],
        "game-icons": ["shirt"],
        "lucide-lab": ["shirt-folded-buttons"],
        "ph": ["shirt-folded", "shirt-folded-fill", "shirt-folded-duotone", "shirt-folded-light"],
    },
    "Sneaker": {
        "fluent-emoji-flat": ["running-shoe"],
        "fluent-emoji": ["running-shoe"],
        "fluent-emoji-high-contrast": ["running-shoe"],
        "emojione": ["running-shoe"],
        "emojione-v1": ["running-shoe"],
        "emojione-monotone": ["running-shoe"],
        "game-icons": ["converse-shoe", "running-shoe"],
        "hugeicons": ["running-shoes", "sneaker", "sport-shoe"],
        "lucide": ["sport-shoe"],
        "lucide-lab": ["sneaker"],
        "mdi": ["shoe-sneaker"],
        "ph": ["sneaker", "sneaker-fill", "sneaker-move", "sneaker-move-fill"],
    },
    "Bag": {
        "fluent-emoji-flat": ["handbag", "purse", "backpack", "clutch-bag"],
        "fluent-emoji": ["handbag", "backpack"],
        "fluent-emoji-high-contrast": ["handbag"],
        "emojione": ["handbag", "purse", "backpack"],
        "emojione-v1": ["handbag", "backpack"],
        "emojione-monotone": ["handbag"],
        "fxemoji": ["handbag"],
        "game-icons": ["hand-bag", "backpack"],
        "hugeicons": ["handbag", "backpack-01"],
        "lucide": ["handbag", "backpack"],
        "ph": ["handbag", "backpack", "tote"],
    },
    "Ankle boot": {
        "fluent-emoji-flat": ["hiking-boot", "womans-boot"],
        "fluent-emoji": ["hiking-boot", "womans-boot"],
        "fluent-emoji-high-contrast": ["hiking-boot", "womans-boot"],
        "emojione": ["womans-boot"],
        "emojione-v1": ["womans-boot"],
        "emojione-monotone": ["womans-boot"],
        "fxemoji": ["boot"],
        "game-icons": ["chelsea-boot", "cowboy-boot", "fur-boot", "leather-boot", "rubber-boot"],
        "ph": ["boot", "boot-fill", "boot-duotone"],
    },
    OUT_OF_SCOPE: {
        "fluent-emoji-flat": ["cat-face", "red-apple", "automobile", "sunrise-over-mountains", "laptop", "guitar", "top-hat", "teddy-bear", "pizza", "input-latin-uppercase"],
        "fluent-emoji": ["dog-face", "banana", "bicycle", "cityscape", "camera", "soccer-ball", "watch", "potted-plant"],
        "fluent-emoji-high-contrast": ["tropical-fish", "hamburger", "bus", "house", "headphone", "key"],
        "emojione": ["horse-face", "birthday-cake", "airplane", "deciduous-tree", "mobile-phone", "closed-book", "glasses", "light-bulb", "input-numbers", "rocket"],
        "emojione-v1": ["bird", "banana", "ship", "cityscape", "scissors", "alarm-clock"],
        "fxemoji": ["camera", "guitar"],
        "ph": ["cat", "dog", "car", "house", "bicycle", "airplane", "pizza", "armchair", "lightbulb", "tree"],
        "game-icons": ["elephant", "sailboat", "mountains", "headphones", "carrot", "armchair"],
        "mdi": ["letter-a", "abc", "number-1", "home", "coffee", "hanger"],
        GENERATED: ["blank-white", "blank-black", "blank-grey", "blank-cream",
                    "pixel-noise-grey", "pixel-noise-colour", "pixel-noise-salt-pepper", "pixel-noise-fine",
                    "text-sale", "text-shipping", "text-lorem", "text-price"],
    },
}

TEST: dict[str, dict[str, list[str]]] = {
    "T-shirt/top": {
        "noto": ["t-shirt", "running-shirt"],
        "noto-v1": ["t-shirt", "running-shirt"],
        "twemoji": ["t-shirt", "running-shirt"],
        "openmoji": ["t-shirt", "running-shirt", "womans-clothes"],
        "streamline-emojis": ["t-shirt"],
        "icon-park": ["t-shirt", "basketball-clothes"],
        "icon-park-outline": ["t-shirt", "clothes-short-sleeve"],
        "icon-park-solid": ["t-shirt"],
        "mingcute": ["t-shirt-fill", "t-shirt-line"],
        "ri": ["t-shirt-line", "t-shirt-2-fill"],
        "tabler": ["shirt", "shirt-filled"],
        "iconoir": ["shirt", "shirt-tank-top"],
        "solar": ["t-shirt-bold", "t-shirt-linear"],
    },
    "Trouser": {
        "noto": ["jeans"],
        "noto-v1": ["jeans"],
        "twemoji": ["jeans"],
        "openmoji": ["jeans"],
        "streamline-emojis": ["jeans"],
        "icon-park": ["clothes-pants"],
        "icon-park-outline": ["clothes-pants", "clothes-pants-sweat"],
        "icon-park-solid": ["clothes-pants-sweat"],
        "icon-park-twotone": ["clothes-pants-sweat"],
        "iconoir": ["pants", "pants-pockets"],
        "mingcute": ["trouser-line"],
    },
    "Pullover": {
        "icon-park": ["clothes-crew-neck", "clothes-hoodie", "clothes-turtleneck", "sweater"],
        "icon-park-outline": ["clothes-crew-neck", "clothes-hoodie", "clothes-turtleneck", "sweater"],
        "icon-park-solid": ["clothes-hoodie", "clothes-turtleneck", "sweater"],
        "icon-park-twotone": ["clothes-hoodie", "clothes-turtleneck", "sweater"],
    },
    "Dress": {
        "noto": ["dress"],
        "noto-v1": ["dress"],
        "twemoji": ["dress"],
        "openmoji": ["dress"],
        "streamline-emojis": ["dress"],
        "icon-park": ["full-dress-longuette"],
        "icon-park-outline": ["full-dress-longuette"],
        "icon-park-solid": ["full-dress-longuette"],
        "icon-park-twotone": ["full-dress-longuette"],
        "mingcute": ["dress-fill", "dress-line"],
        "streamline": ["shopping-catergories-dress-clothing-dress-skirt-women"],
    },
    "Coat": {
        "noto": ["coat", "lab-coat"],
        "openmoji": ["coat", "lab-coat"],
        "twemoji": ["coat", "lab-coat"],
        "icon-park": ["clothes-suit", "women-coat"],
        "icon-park-outline": ["clothes-suit", "women-coat"],
        "mingcute": ["coat-fill", "coat-line"],
    },
    "Sandal": {
        "noto": ["thong-sandal", "womans-sandal"],
        "noto-v1": ["womans-sandal"],
        "openmoji": ["thong-sandal", "womans-sandal"],
        "twemoji": ["thong-sandal", "womans-sandal"],
        "streamline-emojis": ["womans-sandal"],
        "icon-park": ["sandals", "slippers"],
        "icon-park-outline": ["sandals", "slippers-one"],
        "iconoir": ["sandals"],
        "tabler": ["flip-flops"],
    },
    "Shirt": {
        "noto": ["necktie"],
        "noto-v1": ["womans-clothes"],
        "openmoji": ["necktie"],
        "twemoji": ["necktie", "womans-clothes"],
        "streamline-emojis": ["necktie"],
        "mingcute": ["shirt-fill", "shirt-line"],
        "ri": ["shirt-fill", "shirt-line"],
    },
    "Sneaker": {
        "noto": ["running-shoe"],
        "noto-v1": ["running-shoe"],
        "openmoji": ["running-shoe", "sneaker", "sneaker-high"],
        "twemoji": ["running-shoe"],
        "streamline-emojis": ["running-shoe"],
        "mingcute": ["shoe-fill", "shoe-line"],
        "tabler": ["shoe"],
    },
    "Bag": {
        "noto": ["handbag", "purse", "backpack", "clutch-bag"],
        "noto-v1": ["handbag", "backpack"],
        "openmoji": ["handbag", "purse", "backpack"],
        "twemoji": ["handbag", "purse", "backpack"],
        "streamline-emojis": ["handbag", "school-backpack"],
        "icon-park": ["handbag", "backpack"],
        "mingcute": ["backpack-fill"],
        "ri": ["handbag-fill", "handbag-line"],
        "tabler": ["backpack"],
        "iconoir": ["handbag"],
        "bi": ["handbag", "backpack"],
    },
    "Ankle boot": {
        "noto": ["hiking-boot", "womans-boot"],
        "noto-v1": ["womans-boot"],
        "openmoji": ["hiking-boot", "womans-boot"],
        "twemoji": ["hiking-boot", "womans-boot"],
        "streamline-emojis": ["womans-boot"],
        "icon-park": ["boots"],
        "icon-park-outline": ["boots"],
        "carbon": ["boot"],
    },
    OUT_OF_SCOPE: {
        "noto": ["elephant", "bread", "locomotive", "tent", "sunflower", "lipstick", "ring", "umbrella", "input-latin-uppercase", "butterfly"],
        "noto-v1": ["rabbit-face", "pizza", "automobile", "house", "camera", "key"],
        "twemoji": ["t-rex", "hamburger", "bicycle", "cityscape", "laptop", "gloves", "hot-beverage", "basketball", "input-numbers", "dog-face"],
        "openmoji": ["cat-face", "red-apple", "airplane", "sunrise-over-mountains", "guitar", "chair", "socks", "alarm-clock", "teddy-bear", "ab-button-blood-type"],
        "streamline-emojis": ["horse", "rocket", "guitar", "bus", "red-apple", "tropical-fish"],
        "tabler": ["cat", "car", "home", "plane", "camera", "tree", "letter-a", "letter-case", "abc", "number-1"],
        "icon-park-outline": ["elephant", "bike", "apple", "rocket"],
        GENERATED: ["gradient-warm", "gradient-cool", "gradient-grey", "gradient-diagonal",
                    "blotch-noise-grey", "blotch-noise-colour", "blotch-noise-coarse", "blotch-noise-pastel"],
    },
}
# fmt: on

TEXTS = {
    "text-sale": "SALE -50%",
    "text-shipping": "Free shipping\non all orders",
    "text-lorem": "Lorem ipsum dolor\nsit amet, consectetur\nadipiscing elit",
    "text-price": "$19.99",
}


def folder_name(label: str) -> str:
    return label.replace("/", "-")


def _generate(name: str, size: int, rng: random.Random) -> Image.Image:
    """Blank, noise, gradient and text pictures: the classic probes of an OOD detector."""
    if name.startswith("blank-"):
        colour = {"white": "#ffffff", "black": "#000000", "grey": "#808080", "cream": "#f4efe1"}[
            name[6:]
        ]
        return Image.new("RGB", (size, size), colour)
    if name.startswith("pixel-noise-"):
        kind = name[len("pixel-noise-") :]
        if kind == "colour":
            return Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3))
        if kind == "salt-pepper":
            raw = bytes(255 if b & 1 else 0 for b in rng.randbytes(size * size))
            return Image.frombytes("L", (size, size), raw).convert("RGB")
        cell = 1 if kind == "fine" else 4  # "grey": 4-px grains, "fine": single pixels
        small = Image.frombytes(
            "L", (size // cell, size // cell), rng.randbytes((size // cell) ** 2)
        )
        return small.resize((size, size), Image.Resampling.NEAREST).convert("RGB")
    if name.startswith("blotch-noise-"):
        kind = name[len("blotch-noise-") :]
        cells = {"grey": 8, "colour": 6, "coarse": 3, "pastel": 5}[kind]
        mode = "L" if kind == "grey" else "RGB"
        small = Image.frombytes(mode, (cells, cells), rng.randbytes(cells * cells * len(mode)))
        image = small.resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
        if kind == "pastel":
            image = Image.blend(image, Image.new("RGB", image.size, "#ffffff"), 0.6)
        return image
    if name.startswith("gradient-"):
        start, end = {
            "warm": ((250, 220, 120), (200, 60, 40)),
            "cool": ((200, 235, 250), (30, 60, 140)),
            "grey": ((245, 245, 245), (60, 60, 60)),
            "diagonal": ((255, 255, 255), (120, 180, 120)),
        }[name[len("gradient-") :]]
        ramp = Image.linear_gradient("L").resize((size, size), Image.Resampling.BILINEAR)
        if name.endswith("diagonal"):  # mean of a vertical and a horizontal ramp
            ramp = ImageChops.add(ramp, ramp.transpose(Image.Transpose.ROTATE_90), scale=2)
        return Image.composite(
            Image.new("RGB", ramp.size, end), Image.new("RGB", ramp.size, start), ramp
        )
    if name in TEXTS:
        image = Image.new("RGB", (size, size), "#ffffff")
        draw = ImageDraw.Draw(image)
        # Pillow's built-in Aileron font (CC0): no system font, so the same pixels everywhere.
        font_size = size / 9
        font = ImageFont.load_default(font_size)
        while draw.multiline_textbbox((0, 0), TEXTS[name], font=font)[2] > size * 0.9:
            font_size *= 0.9  # shrink until the widest line fits the page
            font = ImageFont.load_default(font_size)
        ink = "#{:02x}{:02x}{:02x}".format(*(rng.randint(0, 90) for _ in range(3)))
        draw.multiline_text(
            (size / 2, size / 2), TEXTS[name], fill=ink, font=font, anchor="mm", align="center"
        )
        return image
    raise ValueError(f"unknown generated picture {name!r}")


def build_real_pictures(
    out_dir: Path,
    *,
    cache_dir: Path = DEFAULT_CACHE,
    contact_sheet_path: Path | None = None,
    quiet: bool = False,
) -> Path:
    """Build the benchmark into `out_dir` (emptied first); returns the manifest's path."""
    out_dir = Path(out_dir)
    splits = {"dev": sources_from(DEV), "test": sources_from(TEST)}
    check_disjoint(splits)
    keys = sorted({s.package for sources in splits.values() for s in sources} - {GENERATED})
    dirs = {key: fetch(key, cache_dir) for key in keys}
    check_icons_exist({s for sources in splits.values() for s in sources}, dirs)
    prepare_out_dir(out_dir, SPLITS)

    pictures, sheet_items = [], []
    for split in SPLITS:
        for source in splits[split]:
            name = f"{source.package}__{source.icon}"
            rng = random.Random(f"{SEED}:{split}:{source.label}:{name}")
            variation = random_variation(
                rng, sizes=(256, 800), formats=("png", "jpeg"), transparent_chance=0.25,
                padding=(0.05, 0.15), pages=("#ffffff",) * 3 + ("#fafafa", "#f5f5f3"),
            )  # fmt: skip
            if source.package == GENERATED:
                # Full-bleed and opaque: a blank or noise picture has no page around it.
                variation = Variation(**{**variation.__dict__, "page": "#ffffff", "padding": 0.0})
                data = encode(_generate(source.icon, variation.size, rng), variation)
                version, licence, family = BUILDER, "MIT", source.family
                original = f"{Path(__file__).name}#{source.icon}"
                package_name = GENERATED
            else:
                package = PACKAGES[source.package]
                iconset = load_iconset(dirs[source.package])
                data = render_svg(iconset.svg(source.icon, variation.color), variation)
                version, licence, family = package.version, package.licence, package.family
                original = f"package/icons.json#{source.icon}"
                package_name = package.name
            relative = f"{split}/{folder_name(source.label)}/{name}{variation.extension}"
            in_scope = source.label in CLASS_NAMES
            path = add_picture(
                out_dir,
                pictures,
                relative,
                data,
                variation,
                category=folder_name(source.label),
                label=source.label,
                class_id=CLASS_NAMES.index(source.label) if in_scope else None,
                split=split,
                source_package=package_name,
                package_version=version,
                family=family,
                original_file=original,
                licence=licence,
            )
            sheet_items.append((path, f"{split}/{source.label}\n{source.package}\n{source.icon}"))

    header = {
        "name": "real-product-pictures",
        "builder": BUILDER,
        "seed": SEED,
        "classes": list(CLASS_NAMES),
        "out_of_scope_label": OUT_OF_SCOPE,
    }
    manifest = finish(
        out_dir, header, pictures, sheet_items, contact_sheet_path, SPLITS, quiet=quiet
    )
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (emptied first)")
    parser.add_argument(
        "--contact-sheet", type=Path, default=None, help="also write PNG grids of all pictures"
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="package cache folder")
    args = parser.parse_args(argv)
    return run_build(
        lambda: build_real_pictures(
            args.out, cache_dir=args.cache, contact_sheet_path=args.contact_sheet
        )
    )


if __name__ == "__main__":
    sys.exit(main())
