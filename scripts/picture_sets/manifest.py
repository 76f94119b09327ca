"""Shared plumbing for the picture-set builders: sources, output folder, manifest, summary.

Why one manifest per set: a test or an evaluation needs to know, for every file, its label,
its split, and where it came from (package, version, icon, licence) to credit the authors
and to prove the split rule; its sha256 makes "two builds are identical" one comparison.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packages import PACKAGES

MANIFEST = "manifest.json"


class BuildError(RuntimeError):
    """The source lists or the output folder are wrong; nothing useful can be built."""


@dataclass(frozen=True)
class Source:
    """One icon in one package, with the label a person gave it after looking at it."""

    package: str  # key in packages.PACKAGES, or "generated"
    icon: str  # Iconify icon name, or a generator's name
    label: str

    @property
    def family(self) -> str:
        if self.package in PACKAGES:
            return PACKAGES[self.package].family
        # Generated pictures: one family per generator ("generated:blank", ...), so blanks
        # and noise can sit on both sides of a split as long as their generators differ.
        return f"{self.package}:{self.icon.split('-')[0]}"


def sources_from(table: dict[str, dict[str, list[str]]]) -> list[Source]:
    """{label: {package: [icon, ...]}} -> Sources, in the table's (reviewed) order."""
    return [
        Source(package, icon, label)
        for label, by_package in table.items()
        for package, icons in by_package.items()
        for icon in icons
    ]


def check_disjoint(splits: dict[str, list[Source]]) -> None:
    """The split rule: no design family (hence no package) on two sides."""
    seen: dict[str, str] = {}
    for split, sources in splits.items():
        for family in sorted({s.family for s in sources}):
            if seen.setdefault(family, split) != split:
                raise BuildError(
                    f"design family {family!r} is in both {seen[family]!r} and {split!r}"
                )


def check_icons_exist(sources: set[Source], dirs: dict[str, Path]) -> None:
    """Fail before writing anything if a listed icon is missing (renamed upstream, typo)."""
    from iconsets import load_iconset

    missing = sorted(
        f"{s.package}:{s.icon}"
        for s in sources
        if s.package in dirs and not load_iconset(dirs[s.package]).has(s.icon)
    )
    if missing:
        raise BuildError("icons not found in their pinned package: " + ", ".join(missing))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def prepare_out_dir(out_dir: Path, parts: tuple[str, ...]) -> None:
    """Empty `out_dir` of a previous build; refuse to touch a folder that is not one."""
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = {p.name for p in out_dir.iterdir()}
    ours = set(parts) | {MANIFEST}
    if existing and MANIFEST not in existing:
        raise BuildError(
            f"{out_dir} is not empty and holds no {MANIFEST}; refusing to overwrite it"
        )
    # A contact sheet may be written next to the pictures; anything else is not ours.
    foreign = {name for name in existing - ours if not name.startswith("contact")}
    if foreign:
        raise BuildError(f"{out_dir} holds files this builder did not write: {sorted(foreign)}")
    for name in existing & ours:
        path = out_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def write_manifest(out_dir: Path, header: dict, pictures: list[dict]) -> Path:
    """Sorted entries, sorted keys, no timestamps: the same build gives the same bytes."""
    pictures = sorted(pictures, key=lambda p: p["file"])
    # Pictures name their package by its npm name; PACKAGES is keyed by a short key.
    names = {p["source_package"] for p in pictures}
    used = sorted(key for key, package in PACKAGES.items() if package.name in names)
    document = {
        **header,
        "count": len(pictures),
        "packages": [
            {
                "name": PACKAGES[k].name,
                "version": PACKAGES[k].version,
                "sha256": PACKAGES[k].sha256,
                "family": PACKAGES[k].family,
                "licence": PACKAGES[k].licence,
            }
            for k in used
        ],
        "pictures": pictures,
    }
    path = out_dir / MANIFEST
    path.write_text(
        json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return path


def print_summary(pictures: list[dict], splits: tuple[str, ...], key: str = "label") -> None:
    """Counts per label and split, then per source package and split."""
    for column, title in ((key, key), ("source_package", "source package")):
        # Package names are shown without the common "@iconify-json/" scope, for width.
        counts = Counter((p[column].removeprefix("@iconify-json/"), p["split"]) for p in pictures)
        rows = sorted({name for name, _ in counts})
        width = max([len(title), *map(len, rows)]) + 2
        print(f"\n{title:<{width}}" + "".join(f"{s:>8}" for s in splits) + f"{'total':>8}")
        for name in rows:
            cells = [counts[(name, s)] for s in splits]
            print(f"{name:<{width}}" + "".join(f"{c:>8}" for c in cells) + f"{sum(cells):>8}")
        totals = [sum(counts[(n, s)] for n in rows) for s in splits]
        print(f"{'total':<{width}}" + "".join(f"{c:>8}" for c in totals) + f"{sum(totals):>8}")


def add_picture(
    out_dir: Path,
    pictures: list[dict],
    relative: str,
    data: bytes,
    variation: Any,
    **fields: Any,
) -> Path:
    """Write one picture and append its manifest entry (the caller gives label, split and
    provenance fields); returns the written path."""
    path = out_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    pictures.append(
        {
            "file": relative,
            **fields,
            "sha256": sha256_bytes(data),
            "width": variation.size,
            "height": variation.size,
            "format": variation.fmt,
        }
    )
    return path


def finish(
    out_dir: Path,
    header: dict,
    pictures: list[dict],
    sheet_items: list,
    contact_sheet_path: Path | None,
    splits: tuple[str, ...],
    *,
    quiet: bool,
    key: str = "label",
) -> Path:
    """Write the manifest, the optional contact sheet and the summary; returns the manifest."""
    from render import contact_sheet

    manifest = write_manifest(out_dir, header, pictures)
    if contact_sheet_path is not None:
        contact_sheet(sheet_items, Path(contact_sheet_path))
    if not quiet:
        print_summary(pictures, splits, key=key)
    return manifest


def run_build(build: Any) -> int:
    """A builder's command line: run ``build()``, report the manifest and the time, and turn
    a failed download or check into one error line and exit code 1."""
    import sys
    import time

    from packages import PackageError

    started = time.perf_counter()
    try:
        manifest = build()
    except (PackageError, BuildError) as error:  # a failed download, a sha256 mismatch, ...
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"\nwrote {manifest} in {time.perf_counter() - started:.1f} s")
    return 0
