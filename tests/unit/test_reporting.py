"""markdown_table: the one writer of the project's Markdown tables."""

from __future__ import annotations

import pytest

from product_classifier.reporting import markdown_table


def test_unpadded_rows_and_alignment_marks() -> None:
    text = markdown_table(["id", "class", "F1"], [(6, "Shirt", "0.7000"), (9, "Boot", 1)], "rlc")
    assert text.splitlines() == [
        "| id | class | F1 |",
        "|--:|:--|:-:|",
        "| 6 | Shirt | 0.7000 |",
        "| 9 | Boot | 1 |",
    ]


def test_the_last_alignment_letter_repeats_and_left_is_the_default() -> None:
    assert markdown_table(["a", "b", "c", "d"], [], "lr").splitlines()[1] == "|:--|--:|--:|--:|"
    assert markdown_table(["a", "b"], []).splitlines()[1] == "|:--|:--|"


def test_a_pipe_in_a_cell_is_escaped() -> None:
    assert markdown_table(["x"], [["a|b"]]).splitlines()[2] == "| a\\|b |"


@pytest.mark.parametrize(
    ("header", "rows", "align"),
    [(["a", "b"], [("only one",)], "l"), (["a"], [], "x"), (["a"], [], "")],
)
def test_mismatched_rows_and_unknown_alignments_fail(
    header: list[str], rows: list[tuple[str, ...]], align: str
) -> None:
    with pytest.raises(ValueError):
        markdown_table(header, rows, align)
