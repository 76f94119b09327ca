"""Fetch the pinned icon/emoji packages into a local cache, verified by sha256.

Why pinned tarballs: a picture set is only reproducible if its inputs are. Every package is
fetched at one exact version with the ordinary npm client (`npm pack`, which writes the
registry's tarball unchanged), its sha256 is checked against the value pinned here, and only
then is it unpacked. A mismatch stops the build: it means the registry served different bytes
than the ones the sets were checked against by eye.

All sources are `@iconify-json/<prefix>` packages: each holds one icon collection (an emoji
font's SVGs or an icon font's glyphs) as a single icons.json plus info.json with the
collection's licence, so one loader (iconsets.py) reads all of them.

`family` is the design family (same authors / same drawing style). The sets are split by
family, never by icon, so no style appears on both sides of a split.

Run directly to pre-fetch everything: `python scripts/picture_sets/packages.py`.
"""

# ruff: noqa: E501  (the reviewed tables keep one entry per line, however long)

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Overridable so CI or a test can share one cache between checkouts.
DEFAULT_CACHE = Path(os.environ.get("PICTURE_SETS_CACHE", ROOT / "data/cache/packages"))
# Only these members are unpacked: the rest (JS wrappers, chars.json) is never read.
MEMBERS = ("package/icons.json", "package/info.json", "package/package.json")


class PackageError(RuntimeError):
    """A package could not be fetched, or its bytes differ from the pinned ones."""


@dataclass(frozen=True)
class Package:
    key: str  # the Iconify prefix, used in source lists: "ph", "noto", ...
    version: str
    sha256: str  # of the npm tarball
    family: str  # design family: the unit of every split
    licence: str  # SPDX id of the icon collection (from its info.json)
    size: int  # tarball bytes, for the download budget

    @property
    def name(self) -> str:
        return f"@iconify-json/{self.key}"

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def stem(self) -> str:  # what `npm pack` names the tarball, minus ".tgz"
        return f"iconify-json-{self.key}-{self.version}"


def _p(key: str, version: str, sha256: str, family: str, licence: str, size: int) -> Package:
    return Package(key, version, sha256, family, licence, size)


# fmt: off
PACKAGES: dict[str, Package] = {p.key: p for p in (
    # Colour emoji (and one monochrome emoji font)
    _p("noto", "1.2.9", "3e918d88fc945c0bb3d468dbace6f88caef67f01c9f0e7bcae0915a042e8f1ad", "google-noto", "Apache-2.0", 3102958),
    _p("noto-v1", "1.2.5", "2bf62c26c2c2884aa99e90aec942cdaee17a5921f05690694f4978ad4b017c37", "google-noto", "Apache-2.0", 1587591),
    _p("twemoji", "1.2.5", "19046dff7d8707ce96212ec86468b36ac5f8e60409629dd13f809265c6d0ebb7", "twemoji", "CC-BY-4.0", 1555888),
    _p("openmoji", "1.2.29", "03181e2c156cab35cf4a62f1f7886bd971d59212e75ac3f189d5a4cae3930fc5", "openmoji", "CC-BY-SA-4.0", 1264633),
    _p("fluent-emoji-flat", "1.2.6", "7d064769dee690815f823bc5bcc511d957198caf9f5edd8dd9c1aa48a6aeb175", "microsoft-fluent", "MIT", 1172438),
    _p("fluent-emoji", "1.2.7", "8044210dbf11e016d4de85f15d01a243423bd832457e7e2491df1b751c0e272b", "microsoft-fluent", "MIT", 14323330),
    _p("fluent-emoji-high-contrast", "1.2.6", "0b92d48c90d2200bd499e3cdd09a127ca6a8c8ddefd34c35eb5a1e4994012ae0", "microsoft-fluent", "MIT", 1054969),
    _p("emojione", "1.2.3", "26a14f44284407e8bcde91799388dca2bfd91dbcd55a97f425524a1c5b73610e", "emojione", "CC-BY-4.0", 687690),
    _p("emojione-v1", "1.2.3", "6641d59d48a42823fdc2b84e7427e9f302944eb98d2c7d94d6e67c139e7b37b3", "emojione", "CC-BY-SA-4.0", 3704153),
    _p("emojione-monotone", "1.2.1", "40b90004bafb406b59266155ef9b7e1dd67bf2947fc8db8d07388776f4d0d04e", "emojione", "CC-BY-4.0", 1094642),
    _p("fxemoji", "1.2.2", "f3e72b3c59d05e1db03b7e308d55c0d05bd7ba3f625a90da1b79313c12858eef", "mozilla-fxemoji", "Apache-2.0", 1034876),
    _p("streamline-emojis", "1.2.4", "5dac87c876b322500989828c5823143e0100d78881627a2e4081a4b897cbfdbc", "streamline", "CC-BY-4.0", 381714),
    # Icon fonts: outline, filled and two-tone glyphs
    _p("streamline", "1.2.5", "b64ca35d4d9fb1f6e730d260ab59e1ded79b23d9f156f8d2f458df6a7aa4cf53", "streamline", "CC-BY-4.0", 486650),
    _p("ph", "1.2.2", "e3a582a047d9829fc7e8842c660d8065e598d1b68bb58cb68e75a1f1e5a614cc", "phosphor", "MIT", 945517),
    _p("game-icons", "1.2.4", "f5758efb34d91c4f50b941f355f16ee73938625e5996fabc25171288404460a4", "game-icons", "CC-BY-3.0", 2739244),
    _p("hugeicons", "1.2.35", "cca09de913319938961fa0613a8eb42952f76c3ee13a7c68ef411091590c5d8b", "hugeicons", "MIT", 809402),
    _p("icon-park", "1.2.4", "c1a25212a31602aca93c3fa6f6b3288e89b9d7811afc132dfd78506e9d586b6f", "bytedance-iconpark", "Apache-2.0", 338205),
    _p("icon-park-outline", "1.2.4", "e4c29776086e46ed7d113b7d44798a36ca74df6dcfb949da142db34714ab7c8a", "bytedance-iconpark", "Apache-2.0", 222800),
    _p("icon-park-solid", "1.2.4", "3af17a63c120891842d272ec34b4bec414e6c4801af8158a460b4c3cb4dc1248", "bytedance-iconpark", "Apache-2.0", 188789),
    _p("icon-park-twotone", "1.2.4", "579560dd7c0e1c6f53297129f3a32cdcf4292871e2c5e82e502840c7ce68eabb", "bytedance-iconpark", "Apache-2.0", 192816),
    _p("lucide", "1.2.137", "e74db8c3a55fff55bc82de21268c4bced9f65ff10aacc0d5f3a395b0e93243c3", "lucide", "ISC", 92640),
    _p("lucide-lab", "1.2.3", "ea0a3dc587d60e65b4e710f2239a54a6609fcd19b214f9eb0df66874f920df08", "lucide", "ISC", 24292),
    _p("mingcute", "1.2.8", "fec65f4430ac70a968e0e7fc7741e7064ba91e6da992b905f75c9d70c717bd2c", "mingcute", "Apache-2.0", 406467),
    _p("ri", "1.2.10", "f7ab45281b250fb0bfa5c5438fc334f010cbf695f5ac851b90b296ef4674fb07", "remixicon", "Apache-2.0", 270261),
    _p("tabler", "1.2.41", "3bf99af156d28d05568aff524a35ed1ba238df640a7835a5e02e1f8e439685f6", "tabler", "MIT", 338741),
    _p("iconoir", "1.2.11", "8e5d3bfbd55aa8ef3878f0c2f248cf71fe99822172fd07990e32ab7fe7a68b1e", "iconoir", "MIT", 126216),
    _p("mdi", "1.2.3", "ddd817a7213f91de51147943915c0cda8c8b818a53c92b5c068cfa9883c6d7ac", "pictogrammers-mdi", "Apache-2.0", 803764),
    _p("material-symbols", "1.2.98", "142d50bf28e7db85362795be335ebc29dac611d73c404fc1e6fc5cc198e2b3d0", "google-material", "Apache-2.0", 1299274),
    _p("fa-solid", "1.2.2", "0be98f3a6671238ccf12cdbe2f4f38d9dfc346c770d625015dc35b6683c42208", "fontawesome", "CC-BY-4.0", 210325),
    _p("fa6-solid", "1.2.4", "082c792eaad4751626438773fa7360cb23f495b687cf2dd01b2b0fccc7f6af8b", "fontawesome", "CC-BY-4.0", 236394),
    _p("fa7-solid", "1.2.5", "2a5c09e0094306e42c357d5b9da1feb39b46cd16d5df6f3d1a89f3093e074d91", "fontawesome", "CC-BY-4.0", 275216),
    _p("la", "1.2.1", "c35ad2a463fc30d3153a36dd614d4007a4f0ee7ea93705e035e1687d516d48c4", "icons8-line-awesome", "Apache-2.0", 366139),
    _p("bi", "1.2.7", "86a7f213711c929169dbcd64318cd678a0845385156fc707401ba07cbde4da0d", "bootstrap", "MIT", 223701),
    _p("solar", "1.2.13", "9efec9045e9188c5dd5cf9de52f8ad968ffabee565026480a6c74bfe63b3bbc2", "solar-480design", "CC-BY-4.0", 2262113),
    _p("carbon", "1.2.29", "8e3059dc90933875439c29ff36ae4370767bc02d8beca6923b1f2bb856cf327a", "ibm-carbon", "Apache-2.0", 329961),
)}
# fmt: on


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _npm_pack(pkg: Package, dest: Path) -> Path:
    """Download the registry tarball with the npm client; never runs package scripts."""
    npm = shutil.which("npm")
    if npm is None:
        raise PackageError(f"{pkg.spec}: `npm` is not on PATH (needed once to fill the cache)")
    cmd = [
        npm,
        "pack",
        "--loglevel=error",
        "--ignore-scripts",
        "--pack-destination",
        str(dest),
        pkg.spec,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    tarball = dest / f"{pkg.stem}.tgz"
    if done.returncode != 0 or not tarball.exists():
        raise PackageError(
            f"{pkg.spec}: `npm pack` failed (exit {done.returncode}): {done.stderr.strip()[-500:]}"
        )
    return tarball


def fetch(key: str, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The unpacked package folder for `key`, downloading and verifying it on first use."""
    if key not in PACKAGES:
        raise PackageError(f"unknown package {key!r}: pin it in packages.PACKAGES first")
    pkg = PACKAGES[key]
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = cache_dir / f"{pkg.stem}.tgz"
    unpacked = cache_dir / pkg.stem
    stamp = unpacked / ".sha256"
    # Warm path: the stamp is written last, so its presence means a verified, full unpack.
    if stamp.exists() and stamp.read_text().strip() == pkg.sha256:
        return unpacked

    if tarball.exists() and _sha256(tarball) != pkg.sha256:
        tarball.unlink()  # a partial or stale download: fetch it again, then judge
    if not tarball.exists():
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            _npm_pack(pkg, Path(tmp)).replace(tarball)
    actual = _sha256(tarball)
    if actual != pkg.sha256:
        raise PackageError(
            f"sha256 mismatch for {pkg.spec}:\n  pinned   {pkg.sha256}\n  received {actual}\n"
            f"The registry served different bytes. Nothing was unpacked; the tarball is kept at "
            f"{tarball} for inspection. If the change is intended, review the pictures and "
            f"update the pin in scripts/picture_sets/packages.py."
        )

    shutil.rmtree(unpacked, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{pkg.stem}-"))
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            names = set(archive.getnames())
            for member in MEMBERS:
                if member not in names:
                    continue  # info.json is optional in old packages
                source = archive.extractfile(member)
                if source is None:
                    raise PackageError(f"{pkg.spec}: {member} is not a regular file")
                (staging / Path(member).name).write_bytes(source.read())
        if not (staging / "icons.json").exists():
            raise PackageError(f"{pkg.spec}: the tarball has no package/icons.json")
        (staging / ".sha256").write_text(pkg.sha256 + "\n")
        staging.replace(unpacked)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return unpacked


def fetch_all(keys: list[str] | None = None, cache_dir: Path = DEFAULT_CACHE) -> dict[str, Path]:
    return {key: fetch(key, cache_dir) for key in (keys or sorted(PACKAGES))}


if __name__ == "__main__":
    try:
        paths = fetch_all()
    except PackageError as error:
        sys.exit(f"error: {error}")
    total = sum(PACKAGES[key].size for key in paths)
    for key, path in paths.items():
        print(f"{PACKAGES[key].spec:48s} {PACKAGES[key].licence:13s} {path}")
    print(f"{len(paths)} packages, {total / 1e6:.1f} MB of tarballs")
