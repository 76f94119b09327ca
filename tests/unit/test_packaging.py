"""pyproject.toml's dependencies and the lock (requirements/*.txt) agree.

The extras declare compatible ranges; the lock pins the versions the tests run with, and the
Makefile installs each extra under its lock file as constraints. A package declared but not
pinned would install unpinned; a pin not declared would never be installed by the extra.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
SELF = canonicalize_name(PROJECT["name"])
# Which lock file pins which part of pyproject (each file includes the ones below it).
LOCK_OF = {"serve": "serve.txt", "train": "train.txt", "dev": "dev.txt"}


def _pins(name: str, seen: tuple[str, ...] = ()) -> dict[str, Requirement]:
    """Every ``NAME==VERSION`` in a lock file and the files it includes (``-r``)."""
    assert name not in seen, f"requirements/{name} includes itself"
    pins: dict[str, Requirement] = {}
    for raw in (ROOT / "requirements" / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if included := re.fullmatch(r"-r\s+(\S+)", line):
            pins.update(_pins(included.group(1), (*seen, name)))
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{name}: {line!r} is not a pin"
        pins[canonicalize_name(req.name)] = req
    return pins


def _declared(extra: str) -> dict[str, Requirement]:
    """An extra's own requirements plus those of the extras it names (base included)."""
    found = {canonicalize_name(r.name): r for r in map(Requirement, PROJECT["dependencies"])}
    for req in map(Requirement, PROJECT["optional-dependencies"][extra]):
        if canonicalize_name(req.name) == SELF:
            for inner in req.extras:
                found.update(_declared(inner))
        else:
            found[canonicalize_name(req.name)] = req
    return found


def test_the_extras_are_serve_train_dev() -> None:
    assert set(PROJECT["optional-dependencies"]) == set(LOCK_OF)


@pytest.mark.parametrize("extra", sorted(LOCK_OF))
def test_every_declared_package_is_pinned_within_its_range(extra: str) -> None:
    pins = _pins(LOCK_OF[extra])
    for name, req in _declared(extra).items():
        assert name in pins, f"[{extra}] declares {req}, requirements/{LOCK_OF[extra]} pins none"
        version = next(iter(pins[name].specifier)).version
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements/{LOCK_OF[extra]} pins {name}=={version}, outside [{extra}]'s {req}"
        )


@pytest.mark.parametrize("extra", sorted(LOCK_OF))
def test_every_pin_is_declared(extra: str) -> None:
    declared = _declared(extra)
    undeclared = sorted(set(_pins(LOCK_OF[extra])) - set(declared))
    assert not undeclared, (
        f"requirements/{LOCK_OF[extra]} pins {undeclared}, which pyproject.toml's [{extra}] "
        "(or an extra it includes) does not declare: the install would leave them out"
    )


def test_torch_only_in_train_and_exact() -> None:
    def names(reqs: list[str]) -> set[str]:
        return {canonicalize_name(Requirement(r).name) for r in reqs}

    extras = PROJECT["optional-dependencies"]
    assert "torch" not in names(PROJECT["dependencies"]) | names(extras["serve"])
    assert "torch" not in names(extras["dev"])  # dev has it through [train] only
    (torch,) = [Requirement(r) for r in extras["train"] if Requirement(r).name == "torch"]
    assert str(torch.specifier) == "==2.13.0"
    assert "torch" not in _pins("serve.txt")
