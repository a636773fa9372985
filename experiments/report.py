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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

SMOKE_NOTE = (
    "Smoke run (--tiny): tiny sizes and a few steps, only to check that the script runs end to "
    "end. Accuracies near chance (0.1 for 10 classes), nan ratios and noisy timings are "
    "expected here; the numbers say nothing about the methods. Run without --tiny for results."
)


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


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table of rows (dicts), columns in the given or first-row order."""
    columns = list(columns or (rows[0].keys() if rows else []))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_value(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


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


def write_readme_table(
    rows: Sequence[Mapping[str, Any]],
    out: Path,
    stem: str,
    columns: Sequence[str],
    device: str = "cpu",
) -> str:
    """Write out/stem.md: the README's table (exactly these columns), then its provenance line;
    return the text. Rows may hold more keys (they go to stem.csv only)."""
    from experiments import provenance

    missing = [c for c in columns if any(c not in row for row in rows)]
    if missing:
        raise ValueError(f"{stem}: rows lack the README columns {missing}")
    with open((out / stem).with_suffix(".csv"), "w", newline="") as handle:
        keys = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    text = markdown_table(rows, columns) + "\n" + provenance.line(provenance.collect(device)) + "\n"
    (out / stem).with_suffix(".md").write_text(text)
    return text
