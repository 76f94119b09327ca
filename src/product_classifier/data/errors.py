"""Errors of the data stage: each message names the file or place, what is wrong, how to fix it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

FETCH_COMMAND = "product-classifier data fetch"


class DatasetError(RuntimeError):
    """A dataset file is missing, corrupt, truncated or does not match its pinned checksum."""


@dataclass(frozen=True)
class Attempt:
    """One place that was tried while looking for the dataset, and why it did not work."""

    place: str
    reason: str


class DatasetNotFoundError(DatasetError):
    """No verified copy anywhere and none could be imported or downloaded.

    ``attempts`` keeps every place tried so that callers (and tests) can inspect them; the message
    lists them all at once so a user fixes the problem in one go instead of one error at a time.
    """

    def __init__(self, attempts: Sequence[Attempt], hints: Sequence[str]) -> None:
        self.attempts = tuple(attempts)
        self.hints = tuple(hints)
        lines = ["Fashion-MNIST was not found and could not be fetched. Places tried:"]
        lines += [f"  - {a.place}: {a.reason}" for a in self.attempts]
        lines.append("How to fix it (any one of these):")
        lines += [f"  - {hint}" for hint in self.hints]
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[type, tuple[tuple[Attempt, ...], tuple[str, ...]]]:
        # Survives pickling (multiprocessing workers): the default would call cls(message).
        return (type(self), (self.attempts, self.hints))
