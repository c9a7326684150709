"""CSV injection: cells a spreadsheet would run as formulas are written as text."""

from __future__ import annotations

import csv
import io

import pytest

from pipeline.csv_safe import restore_cell, safe_cell, to_csv

ATTACKS = ["=HYPERLINK(\"http://127.0.0.1:9/x\",\"y\").png", "+cmd.png", "-2+3.png",
           "@SUM(1+1).png", "\t=1+1.png", "\r=1+1.png"]


@pytest.mark.parametrize("name", ATTACKS)
def test_formula_like_text_is_quoted(name):
    assert safe_cell(name) == "'" + name


@pytest.mark.parametrize("value", ["scan.png", "a=b.png", "", 0.5, -0.25, 3, None])
def test_ordinary_cells_are_unchanged(value):
    assert safe_cell(value) == value


def test_to_csv_round_trips_with_every_attack_neutralised():
    text = to_csv(["path", "p"], [[name, -0.5] for name in ATTACKS])
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["path", "p"]
    assert [r[0] for r in rows[1:]] == ["'" + n for n in ATTACKS]
    assert all(r[1] == "-0.5" for r in rows[1:])  # numbers stay numbers
    assert not any(r[0][0] in "=+-@\t\r" for r in rows[1:])


@pytest.mark.parametrize("value", [*ATTACKS, "scan.png", "'quoted.png", "''twice", "'", 0.5])
def test_restore_undoes_safe_cell_exactly(value):
    assert restore_cell(safe_cell(value)) == value


def test_a_name_utf8_cannot_store_is_written_byte_by_byte():
    import os

    odd = os.fsdecode(b"scan\xe9 \xff.jpg")  # lone surrogates: encode("utf-8") fails on them
    assert safe_cell(odd) == "scan\\xe9 \\xff.jpg"
    assert to_csv(["path"], [[odd]]).encode("utf-8") == b"path\r\nscan\\xe9 \\xff.jpg\r\n"
    assert safe_cell(os.fsdecode(b"=\xe9")) == "'=\\xe9"  # still no formula
    assert safe_cell("Überweisung 1.jpg") == "Überweisung 1.jpg"  # real UTF-8 untouched
