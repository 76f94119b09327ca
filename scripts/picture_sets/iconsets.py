"""Read an Iconify JSON icon set (the `@iconify-json/<prefix>` npm packages) and build SVGs.

Why Iconify JSON: one small, uniform file per icon collection (emoji and icon fonts alike),
so a single loader covers ~20 design families, and the package's `info.json` states the
collection's licence and author. Format: https://iconify.design/docs/types/iconify-json.html
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DEFAULT_SIZE = 16  # the Iconify default for a missing width/height


@dataclass(frozen=True)
class IconSet:
    prefix: str
    info: dict
    icons: dict  # name -> {"body", "width"?, "height"?, "left"?, "top"?, "hidden"?}
    aliases: dict  # name -> {"parent", ...}
    width: int
    height: int
    left: int
    top: int

    @property
    def monochrome(self) -> bool:
        # Iconify marks colour sets with palette=true; mono sets draw in currentColor.
        return not self.info.get("palette", False)

    def has(self, name: str) -> bool:
        return name in self.icons or name in self.aliases

    def svg(self, name: str, color: str = "#000000") -> str:
        """A standalone SVG document for one icon; currentColor becomes `color`."""
        entry = self._resolve(name)
        left = entry.get("left", self.left)
        top = entry.get("top", self.top)
        width = entry.get("width", self.width)
        height = entry.get("height", self.height)
        # Replacing currentColor in the text (not via a `color` attribute) is what every
        # renderer gets right, and it leaves colour emoji untouched.
        body = entry["body"].replace("currentColor", color)
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'viewBox="{left} {top} {width} {height}" width="{width}" height="{height}">'
            f"{body}</svg>"
        )

    def _resolve(self, name: str) -> dict:
        # Aliases with transformations (rotate/flip) are not followed: the build lists
        # only plain icons or plain aliases, so a transformed one is an error, not a guess.
        if name in self.icons:
            return self.icons[name]
        if name in self.aliases:
            alias = self.aliases[name]
            extra = set(alias) - {"parent"}
            if extra:
                raise KeyError(f"{self.prefix}:{name} is a transformed alias ({sorted(extra)})")
            return self._resolve(alias["parent"])
        raise KeyError(f"{self.prefix}:{name} is not in the icon set")


@cache
def load_iconset(package_dir: Path) -> IconSet:
    """`package_dir` is an extracted npm package (holding icons.json and info.json)."""
    data = json.loads((package_dir / "icons.json").read_text(encoding="utf-8"))
    info_path = package_dir / "info.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    return IconSet(
        prefix=data["prefix"],
        info=info,
        icons=data["icons"],
        aliases=data.get("aliases", {}),
        width=data.get("width", DEFAULT_SIZE),
        height=data.get("height", DEFAULT_SIZE),
        left=data.get("left", 0),
        top=data.get("top", 0),
    )
