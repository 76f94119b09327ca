"""The one Markdown-table writer of the harness: tabulate's pipe format (GitHub Markdown with
the alignment colons)."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1
) -> str:
    """Cells are formatted already; the first ``text_columns`` are left-aligned, the rest
    (figures) right-aligned."""
    align = ["left"] * text_columns + ["right"] * (len(header) - text_columns)
    return str(
        tabulate(
            [list(row) for row in rows],
            list(header),
            tablefmt="pipe",
            disable_numparse=True,
            colalign=align,
        )
    )
