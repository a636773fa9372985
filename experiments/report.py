"""What an experiment shows and writes: progress, Markdown/CSV tables, figures, README, W&B.

Only the standard library is imported here at module level (tqdm, matplotlib and wandb when a
function needs them), so benchmark_gpu.py can use the tables on the bare GPU image of
gpu_check.sh. Nothing here touches matplotlib's global state: figures are drawn on
``matplotlib.figure.Figure`` objects, which need no backend and no pyplot.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

SMOKE_NOTE = (
    "Smoke run (--tiny): tiny sizes and a few steps, only to check that the script runs end to "
    "end. Accuracies near chance (0.1 for 10 classes), nan ratios and noisy timings are "
    "expected here; the numbers say nothing about the methods. Run without --tiny for results."
)
# Starts the provenance line of a README table from a --tiny run: experiments/tables.py refuses
# to copy such a table into the docs.
SMOKE_TABLE_MARK = "**Smoke run (--tiny), not a result.**"


def progress(items: Iterable, desc: str, total: int | None = None) -> Iterable:
    """A progress bar on stderr; plain lines when stderr is not a terminal (logs, CI)."""
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=total, dynamic_ncols=True, mininterval=1.0)


# ---------------------------------------------------------------------------------------------
# Tables


def format_value(value: Any) -> str:
    """A table cell: floats to 3 significant digits (whole numbers from 100, scientific below
    1e-3 and from 1e6), None as empty, the rest via str."""
    if value is None:
        return ""
    if not isinstance(value, float):
        return str(value)
    if value == 0.0:
        return "0"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if abs(value) < 1e-3 or abs(value) >= 1e6:
        return f"{value:.2e}"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def markdown_cell(value: Any) -> str:
    """format_value, with "|" escaped as "\\|" so it does not split the cell."""
    return format_value(value).replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table of rows (dicts), columns in the given or first-row order."""
    columns = list(columns or (rows[0].keys() if rows else []))
    lines = ["| " + " | ".join(map(markdown_cell, columns)) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(markdown_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def table_header(markdown: str) -> tuple[str, ...]:
    """The column names of the first table row in markdown text ("\\|" read back as "|")."""
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            return tuple(cell.strip().replace("\\|", "|") for cell in cells)
    raise ValueError("no Markdown table (a line starting with '|') in the text")


def write_readme_table(
    rows: Sequence[Mapping[str, Any]],
    out: Path,
    stem: str,
    columns: Sequence[str],
    device: str = "cpu",
    tiny: bool = False,
    notes: Sequence[str] = (),
) -> str:
    """Write out/stem.md: a table for the docs (experiments/tables.py copies it there) with
    exactly ``columns`` (the script's README_TABLES[stem]), a blank line, the notes (one line
    each, e.g. "- skipped norse ...": what the table leaves out travels with it) and a blank
    line if any, then the provenance line of this process on device (after SMOKE_TABLE_MARK
    when tiny); and every key of the rows to out/stem.csv. Return the Markdown text.

    Every row must hold every column (rows may hold more keys: they go to the CSV only), so a
    README column the script stopped computing is an error, not an empty cell.
    """
    from experiments import provenance

    for index, row in enumerate(rows):
        missing = [column for column in columns if column not in row]
        if missing:
            raise ValueError(
                f"README table {stem!r}: row {index} lacks the columns {missing} of the "
                f"script's README_TABLES[{stem!r}] = {list(columns)}: compute them in every row"
            )
    with open(out / f"{stem}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    line = provenance.line(provenance.collect(device))
    text = markdown_table(rows, columns) + "\n"
    if notes:
        text += "\n".join(notes) + "\n\n"
    text += (f"{SMOKE_TABLE_MARK} " if tiny else "") + line + "\n"
    (out / f"{stem}.md").write_text(text)
    return text


def write_table(
    rows: Sequence[Mapping[str, Any]], stem: Path, columns: Sequence[str] | None = None
) -> str:
    """Write rows as stem.csv (full precision) and stem.md; return the Markdown text."""
    columns = list(columns or (rows[0].keys() if rows else []))
    with open(stem.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    text = markdown_table(rows, columns)
    stem.with_suffix(".md").write_text(text)
    return text


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------------------------------------
# Figures


def figure(**kwargs: Any) -> Any:
    """A new ``matplotlib.figure.Figure`` (kwargs: figsize, ...), outside pyplot: drawing and
    saving it leaves the user's backend and pyplot's figures alone."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(figure: Any, path: Path) -> Path:
    """Save a figure as PNG."""
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


# ---------------------------------------------------------------------------------------------
# The end of a run


def report(
    experiment: str,
    options: Any,
    title: str,
    sections: Sequence[tuple[str, str]],
    printed: str,
    *,
    figures: Sequence[Path] = (),
    tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> Path:
    """Finish a run: README.md in options.out, W&B with --wandb, the summary on stdout.

    README.md holds the title, then (for a --tiny run) the smoke-run note, the (heading,
    Markdown) sections and the figures. With options.wandb, one W&B run named after the
    experiment gets options as its config, ``tables`` (name -> rows) and the figures, logged as
    "<experiment>/<name>" and "<experiment>/<file stem>". ``printed`` goes to stdout, after the
    smoke-run note on --tiny. Returns the README's path.
    """
    out: Path = options.out
    parts = [f"# {title}\n"]
    if options.tiny:
        parts.append(f"> **{SMOKE_NOTE}**\n")
    parts += [f"## {heading}\n\n{body}" for heading, body in sections]
    parts += [f"![{path.stem}]({path.name})\n" for path in figures]
    readme = out / "README.md"
    readme.write_text("\n".join(parts))
    if options.wandb:
        _log_to_wandb(experiment, vars(options), out, tables or {}, figures)
    print((f"{SMOKE_NOTE}\n" if options.tiny else "") + printed)
    return readme


def wandb_mode() -> str:
    """Online only with an API key; a user's WANDB_MODE (e.g. "disabled") wins."""
    return os.environ.get("WANDB_MODE") or (
        "online" if os.environ.get("WANDB_API_KEY") else "offline"
    )


def _log_to_wandb(
    experiment: str,
    config: Mapping[str, Any],
    out: Path,
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    figures: Sequence[Path],
) -> None:
    import wandb

    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", "exodus-lightning"),
        name=experiment,
        job_type="experiment",
        mode=wandb_mode(),
        dir=str(out),
        config={k: str(v) if isinstance(v, Path) else v for k, v in config.items()},
    )
    try:
        for name, rows in tables.items():
            if rows:
                columns = list(rows[0].keys())
                run.log(
                    {
                        f"{experiment}/{name}": wandb.Table(
                            columns=columns, data=[[row.get(c) for c in columns] for row in rows]
                        )
                    }
                )
        for path in figures:
            run.log({f"{experiment}/{path.stem}": wandb.Image(str(path))})
    finally:
        run.finish()
