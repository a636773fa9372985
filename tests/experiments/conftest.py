"""Shared checks of experiment outputs: tables and plots are written and well-formed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from experiments import report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_table(
    stem: Path, min_rows: int = 1, allow_nan: tuple[str, ...] = ()
) -> list[dict[str, str]]:
    """stem.csv and stem.md exist, agree in columns and rows, and every number is finite
    (columns in allow_nan may also be nan)."""
    rows = report.read_csv(stem.with_suffix(".csv"))
    assert len(rows) >= min_rows, f"{stem}.csv has {len(rows)} rows"
    markdown = stem.with_suffix(".md").read_text().strip().splitlines()
    assert markdown[0] == "| " + " | ".join(map(report.markdown_cell, rows[0].keys())) + " |"
    assert len(markdown) == len(rows) + 2
    for row in rows:
        for key, value in row.items():
            try:
                number = float(value)
            except ValueError:
                continue
            assert math.isfinite(number) or (key in allow_nan and math.isnan(number)), (
                stem,
                key,
                value,
            )
    return rows


def assert_readme_table(folder: Path, module: Any, stem: str, smoke: bool = True) -> list[str]:
    """folder/stem.md is a README table: its header is module.README_TABLES[stem], its rows
    follow, then a blank line, the notes ("- ..." lines) and a blank line if any, and the
    provenance line, which (for the tests' --tiny runs) starts by saying it is a smoke run.
    Returns the table's row lines."""
    text = (folder / f"{stem}.md").read_text()
    assert report.table_header(text) == tuple(module.README_TABLES[stem]), (stem, text)
    table, *notes, provenance_line = text.rstrip("\n").split("\n\n")
    assert len(notes) <= 1 and all(n.startswith("- ") for n in "\n".join(notes).splitlines())
    mark = report.SMOKE_TABLE_MARK + " "
    assert provenance_line.startswith(mark) == smoke, text
    provenance_line = provenance_line.removeprefix(mark)
    assert provenance_line.startswith("_Measured ") and "commit " in provenance_line, text
    lines = table.splitlines()
    assert all(line.startswith("|") for line in lines) and len(lines) >= 3, text
    return lines[2:]


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, path


def assert_report(folder: Path, smoke: bool = True) -> None:
    """README.md exists, links every PNG it sits next to, and (for the tests' --tiny runs)
    says first that the numbers come from a smoke run."""
    text = (folder / "README.md").read_text()
    assert (report.SMOKE_NOTE in text.split("\n## ", 1)[0]) == smoke
    for png in folder.glob("*.png"):
        assert f"({png.name})" in text, png
