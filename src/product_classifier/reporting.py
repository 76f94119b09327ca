"""The project's one Markdown-table writer: every generated doc, summary and report uses it.

Rows come out unpadded (``| a | b |``), one line each, so a figure can be found with a plain
substring (``"| 0.7000 |"``) and a diff shows only the cells that changed. tabulate's ``pipe``
format pads every column to its widest cell, which defeats both; the format is small enough
to write here, and the package needs no dependency for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

_MARKS = {"l": ":--", "r": "--:", "c": ":-:"}


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "l"
) -> str:
    """A GitHub Markdown table, without a trailing newline; cells are ``str()``-ed.

    ``align`` has one letter per column, ``l`` (left), ``r`` (right) or ``c`` (centre); when
    it is shorter than the header its last letter repeats, so ``"lr"`` is a text column then
    figures, ``"llr"`` two text columns then figures. A ``|`` inside a cell is escaped.
    """
    if not align or set(align) - set(_MARKS):
        raise ValueError(f"align must be letters among l, r, c; got {align!r}")
    marks = [_MARKS[align[min(i, len(align) - 1)]] for i in range(len(header))]
    lines = [_row(header), "|" + "|".join(marks) + "|"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} cells, the header {len(header)}: {row!r}")
        lines.append(_row(row))
    return "\n".join(lines)


def _row(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"
