"""Turn one icon (SVG text, or a PNG) into a product picture, and draw contact sheets.

Why the variations: a shop's pictures differ in size, page colour, margins, format and
compression, and monochrome icons have no colour of their own. Each picture gets its own
`random.Random(seed_text)`: a text seed is hashed with SHA-512 by CPython, so the same text
gives the same picture on any machine and whatever the order or number of pictures built.

Determinism also needs fixed encoders: PNG/JPEG/WebP settings are constants below, no
metadata (EXIF, timestamps, ICC) is written, and resvg renders with system fonts skipped so
installed fonts cannot change a pixel. The versions that draw pixels (resvg-py, Pillow and
the libwebp/libjpeg it bundles) are pinned in requirements/.
"""

from __future__ import annotations

import colorsys
import io
import random
import re
from dataclasses import dataclass
from pathlib import Path

import resvg_py
from PIL import Image, ImageDraw, ImageFont

FORMATS = ("png", "jpeg", "webp")
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
JPEG_QUALITIES = (72, 82, 90, 95)
WEBP_QUALITY = 85
# Pages a product sits on: white, off-white and light greys / creams.
PAGES = ("#ffffff", "#ffffff", "#ffffff", "#f7f7f5", "#f2f2f2", "#fbf8f1", "#eef1f4")


@dataclass(frozen=True)
class Variation:
    """Everything that decides one picture's pixels and bytes, besides its source."""

    size: int  # the picture is size x size pixels
    fmt: str  # "png" | "jpeg" | "webp"
    page: str | None  # background colour, or None for a transparent page (PNG/WebP only)
    color: str  # fill of a monochrome icon; ignored by colour emoji
    padding: float  # margin on each side, as a fraction of `size`
    rotation: float  # degrees, counter-clockwise
    shift: tuple[float, float]  # off-centre offset, as fractions of the free margin
    jpeg_quality: int

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.fmt]


def random_color(rng: random.Random) -> str:
    """A product colour: any hue, mid-to-dark so it stays visible on a light page."""
    if rng.random() < 0.25:  # black/charcoal: the most common product-icon colour
        value = rng.uniform(0.0, 0.25)
        return "#{0:02x}{0:02x}{0:02x}".format(round(value * 255))
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.35, 1.0), rng.uniform(0.25, 0.75))
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def random_variation(
    rng: random.Random,
    *,
    sizes: tuple[int, int] = (64, 512),
    formats: tuple[str, ...] = FORMATS,
    transparent_chance: float = 0.3,
    max_rotation: float = 0.0,
    padding: tuple[float, float] = (0.04, 0.18),
    max_shift: float = 0.0,
    pages: tuple[str, ...] = PAGES,
) -> Variation:
    fmt = rng.choice(formats)
    transparent = fmt != "jpeg" and rng.random() < transparent_chance
    return Variation(
        size=rng.randint(*sizes),
        fmt=fmt,
        page=None if transparent else rng.choice(pages),
        color=random_color(rng),
        padding=round(rng.uniform(*padding), 4),
        rotation=round(rng.uniform(-max_rotation, max_rotation), 2) if max_rotation else 0.0,
        shift=(
            round(rng.uniform(-max_shift, max_shift), 3),
            round(rng.uniform(-max_shift, max_shift), 3),
        ),
        jpeg_quality=rng.choice(JPEG_QUALITIES),
    )


def _svg_aspect(svg: str) -> float:
    match = re.search(r'viewBox="([^"]+)"', svg)
    if not match:
        return 1.0
    _, _, width, height = (float(v) for v in match.group(1).replace(",", " ").split())
    return width / height if height else 1.0


def rasterise_svg(svg: str, box: int) -> Image.Image:
    """The icon as RGBA, its longer side exactly `box` pixels (aspect kept)."""
    aspect = _svg_aspect(svg)
    size = {"width": box} if aspect >= 1 else {"height": box}
    png = resvg_py.svg_to_bytes(svg_string=svg, skip_system_fonts=True, **size)
    return Image.open(io.BytesIO(bytes(png))).convert("RGBA")


def compose(icon: Image.Image, v: Variation) -> Image.Image:
    """Place an RGBA icon on the page described by `v`: RGBA if transparent, else RGB."""
    inner = max(8, round(v.size * (1 - 2 * v.padding)))
    if v.rotation:
        icon = icon.rotate(v.rotation, resample=Image.Resampling.BICUBIC, expand=True)
    scale = inner / max(icon.size)
    if scale < 1 or max(icon.size) < inner * 0.98:
        target = (max(1, round(icon.width * scale)), max(1, round(icon.height * scale)))
        icon = icon.resize(target, Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", (v.size, v.size), (0, 0, 0, 0) if v.page is None else v.page)
    free_x, free_y = v.size - icon.width, v.size - icon.height
    x = round(free_x / 2 + v.shift[0] * free_x / 2)
    y = round(free_y / 2 + v.shift[1] * free_y / 2)
    canvas.alpha_composite(icon, (max(0, x), max(0, y)))
    return canvas if v.page is None else canvas.convert("RGB")


def encode(image: Image.Image, v: Variation) -> bytes:
    """Fixed encoder settings and no metadata, so equal pixels give equal bytes."""
    buffer = io.BytesIO()
    if v.fmt == "png":
        image.save(buffer, "PNG", compress_level=6)
    elif v.fmt == "jpeg":
        image.convert("RGB").save(buffer, "JPEG", quality=v.jpeg_quality, optimize=False)
    elif v.fmt == "webp":
        # Lossless keeps crisp alpha edges; lossy is what most shops serve for opaque photos.
        lossless = image.mode == "RGBA"
        image.save(buffer, "WEBP", lossless=lossless, quality=WEBP_QUALITY, method=4, exact=False)
    else:
        raise ValueError(f"unknown format {v.fmt!r}")
    return buffer.getvalue()


def render_svg(svg: str, v: Variation) -> bytes:
    """Encoded picture bytes for an SVG icon. The caller colours monochrome icons first."""
    inner = max(8, round(v.size * (1 - 2 * v.padding)))
    # Rasterise at the final size (not larger then downscale): crisper and faster.
    return encode(compose(rasterise_svg(svg, inner), v), v)


def render_image(image: Image.Image, v: Variation) -> bytes:
    """Encoded picture bytes for a raster source (a PNG icon or a generated image)."""
    return encode(compose(image.convert("RGBA"), v), v)


def _checker(size: int, cell: int = 8) -> Image.Image:
    board = Image.new("RGB", (size, size), "#ffffff")
    draw = ImageDraw.Draw(board)
    for y in range(0, size, cell):
        for x in range(0, size, cell):
            if (x // cell + y // cell) % 2:
                draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill="#d9d9d9")
    return board


def contact_sheet(
    items: list[tuple[Path, str]], out: Path, *, thumb: int = 112, columns: int = 12, rows: int = 10
) -> list[Path]:
    """PNG grids of pictures with captions, for checking labels by eye.

    One page per columns x rows pictures (OUT.png, or OUT-01.png, OUT-02.png, ... when more),
    small enough to read on a screen. Transparent pictures are shown over a checkerboard so a
    missing page is visible. Returns the pages written.
    """
    font = ImageFont.load_default(10)
    line = 12
    cell_w, cell_h = thumb + 10, thumb + 3 * line + 6
    per_page = columns * rows
    pages = [items[i : i + per_page] for i in range(0, max(1, len(items)), per_page)]
    board = _checker(thumb)
    written = []
    out.parent.mkdir(parents=True, exist_ok=True)
    for number, page in enumerate(pages, start=1):
        used_rows = max(1, -(-len(page) // columns))
        sheet = Image.new("RGB", (columns * cell_w, used_rows * cell_h), "#ffffff")
        draw = ImageDraw.Draw(sheet)
        for index, (path, caption) in enumerate(page):
            x, y = (index % columns) * cell_w + 5, (index // columns) * cell_h + 3
            with Image.open(path) as picture:
                picture = picture.convert("RGBA")
            picture.thumbnail((thumb, thumb), Image.Resampling.LANCZOS)
            tile = board.copy()
            tile.paste(
                picture, ((thumb - picture.width) // 2, (thumb - picture.height) // 2), picture
            )
            sheet.paste(tile, (x, y))
            for n, text in enumerate(caption.split("\n")[:3]):
                colour = "#000000" if n == 0 else "#3050a0"
                draw.text((x, y + thumb + 2 + n * line), text[:22], fill=colour, font=font)
        target = out if len(pages) == 1 else out.with_name(f"{out.stem}-{number:02d}{out.suffix}")
        sheet.save(target)
        written.append(target)
    return written
