"""One command for every measured table of the docs: run the scripts, then copy their tables in.

Each experiment of REGISTRY runs at full size in a fresh Python process, writing into
``results/<experiment>/`` (the GPU ones only where torch sees a CUDA device). A script that makes
README tables declares them as ``README_TABLES = {"<stem>": (<column headers>), ...}`` and writes
each as ``<out>/<stem>.md``: the Markdown table, a blank line, the provenance line
(experiments/provenance.py). In its page (the experiment's ``document``: docs/ops.md,
docs/results.md, ...) each such table sits in a block

    <!-- table: <experiment>/<stem> -->
    ...
    <!-- end table -->

(HTML comments: invisible on GitHub) whose content ``--readme`` replaces with that file, so the
pages' tables are the scripts' output. tests/experiments/test_tables.py checks that
every block names a registered table and that its header row is the script's README_TABLES entry.

    python -m experiments.tables --list                       # the registry, rough durations
    python -m experiments.tables                              # run everything into results/
    python -m experiments.tables --only sinabs_speed,recurrent_memory --readme
    python -m experiments.tables --readme --no-run            # copy results/ into the pages

Without a GPU, the GPU experiments are not run; with --readme their tables are still copied
where results/ holds them (gpu_check.sh's gpu_check.tgz, unpacked in the repository root).
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file, too

from experiments import arguments, report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


@dataclass(frozen=True)
class Experiment:
    """A script of experiments/ that writes README tables: how to run it in full."""

    name: str  # the module, experiments.<name>
    args: tuple[str, ...] = ()  # command-line arguments of the full run (--out is added)
    duration: str = ""  # rough duration of the full run on the 2-core CPU machine
    gpu: bool = False  # runs only where torch.cuda.is_available()
    document: str = "README.md"  # the file (from the repository root) holding its table blocks


# In the docs' order. Durations: measured by this command on the 2-core CPU machine
# (2026-12-01; temporal_memory while other jobs ran), or an estimate where marked.
REGISTRY: list[Experiment] = [
    Experiment("benchmark_ops", (), "~8 min", document="docs/ops.md"),
    Experiment("benchmark_peers", (), "~4 min", document="docs/ops.md"),
    Experiment("temporal_memory", (), "~10-18 min", document="docs/models.md"),
    Experiment("sinabs_speed", (), "~2 min", document="docs/sinabs.md"),
    Experiment("recurrent_memory", ("--threads", "1", "--repeats", "5"), "~2 min",
               document="docs/sinabs.md"),
    Experiment("compile_time", (), "~8 min", document="docs/sinabs.md"),
    Experiment("benchmark_data", ("--quick", "--repeats", "6"), "~6 min",
               document="docs/streaming.md"),
    Experiment("gradient_equivalence", (), "~1 min", document="docs/results.md"),
    Experiment("gradient_stability", (), "~3 min", document="docs/results.md"),
    Experiment("training_comparison", ("--epochs", "6"), "~6 min", document="docs/results.md"),
    Experiment("training_speed", (), "~7 min", document="docs/results.md"),
    Experiment("benchmark_gpu", (), "~1-2 min", gpu=True, document="docs/gpu.md"),
    Experiment("delay_speed", ("--threads", "1"), "~3 min", document="docs/delays.md"),
]

BLOCK = re.compile(
    r"^<!-- table: (?P<name>[\w.-]+)/(?P<stem>[\w.-]+) -->\n(?P<body>.*?)^<!-- end table -->$",
    re.MULTILINE | re.DOTALL,
)


def registered(name: str) -> Experiment:
    """The registry entry of name, or an error listing the registered ones."""
    for experiment in REGISTRY:
        if experiment.name == name:
            return experiment
    raise SystemExit(
        f"--only: {name!r} is not registered; choose from {', '.join(e.name for e in REGISTRY)}"
    )


def readme_tables(name: str) -> dict[str, tuple[str, ...]]:
    """The script's README_TABLES (the module is imported, not run)."""
    module = importlib.import_module(f"experiments.{name}")
    return dict(getattr(module, "README_TABLES", {}))


def blocks(text: str) -> list[tuple[str, str, str]]:
    """(experiment, stem, content) of every table block in README text, in order."""
    found = [(m["name"], m["stem"], m["body"]) for m in BLOCK.finditer(text)]
    starts = len(re.findall(r"^<!-- table: ", text, re.MULTILINE))
    ends = len(re.findall(r"^<!-- end table -->$", text, re.MULTILINE))
    if starts != len(found) or ends != len(found):
        raise ValueError(
            f"README: {starts} '<!-- table: NAME/STEM -->' lines, {ends} '<!-- end table -->' "
            f"lines, {len(found)} well-formed blocks: each table needs both markers, each on a "
            f"line of its own, in this order"
        )
    return found


def replace_block(text: str, name: str, stem: str, table: str) -> str:
    """README text with the content of block name/stem replaced by table (exactly one block)."""
    blocks(text)  # well-formed
    matches = [m for m in BLOCK.finditer(text) if (m["name"], m["stem"]) == (name, stem)]
    if len(matches) != 1:
        raise ValueError(f"README: {len(matches)} blocks '<!-- table: {name}/{stem} -->', need 1")
    match = matches[0]
    body = table if table.endswith("\n") else table + "\n"
    return text[: match.start("body")] + body + text[match.end("body") :]


def run(experiment: Experiment, results: Path) -> tuple[bool, float]:
    """Run one experiment in a fresh process into results/<name>; (succeeded, seconds)."""
    out = results / experiment.name
    command = [sys.executable, "-m", f"experiments.{experiment.name}", *experiment.args,
               "--out", str(out)]
    print(f"== {experiment.name}: {' '.join(command[1:])} (expected {experiment.duration})",
          flush=True)
    start = time.perf_counter()
    code = subprocess.run(command, cwd=ROOT).returncode
    return code == 0, time.perf_counter() - start


def document(experiment: Experiment) -> Path:
    """The file that holds experiment's table blocks (README.md unless it says otherwise)."""
    return README if experiment.document == "README.md" else ROOT / experiment.document


def copy_into_documents(experiments: list[Experiment], results: Path) -> list[tuple[Path, str]]:
    """Copy every <results>/<name>/<stem>.md of experiments into its block (in the README or
    the experiment's document); return (file, "<name>/<stem>") of the blocks updated."""
    updated = []
    for path in dict.fromkeys(document(e) for e in experiments):
        chosen = [e for e in experiments if document(e) == path]
        updated += [(path, block) for block in _copy_into(chosen, results, path)]
    return updated


def _copy_into(experiments: list[Experiment], results: Path, readme: Path) -> list[str]:
    """copy_into_documents for the experiments whose blocks are in the file readme."""
    text = readme.read_text()
    updated = []
    for experiment in experiments:
        for stem in readme_tables(experiment.name):
            path = results / experiment.name / f"{stem}.md"
            if not path.is_file():
                raise SystemExit(f"{path} is missing: run python -m experiments.tables --only "
                                 f"{experiment.name} first (or leave out --no-run)")
            table = path.read_text()
            if report.SMOKE_TABLE_MARK in table:
                raise SystemExit(f"{path} is from a --tiny smoke run, not a result: run "
                                 f"python -m experiments.tables --only {experiment.name}")
            text = replace_block(text, experiment.name, stem, table)
            updated.append(f"{experiment.name}/{stem}")
    readme.write_text(text)
    return updated


def main(argv: list[str] | None = None) -> int:
    parser = arguments.parser("python -m experiments.tables", __doc__)
    parser.add_argument("--only", default="", help="comma list of experiments (default: all)")
    parser.add_argument("--list", action="store_true", help="print the registry and stop")
    parser.add_argument("--readme", action="store_true",
                        help="copy each written <stem>.md into its block (README.md or docs/)")
    parser.add_argument("--no-run", action="store_true",
                        help="run nothing (with --readme: copy what results/ holds)")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    options = parser.parse_args(argv)
    chosen = [registered(n) for n in options.only.split(",") if n] if options.only else REGISTRY
    if options.list:
        for experiment in chosen:
            device = "GPU" if experiment.gpu else "CPU"
            stems = ", ".join(readme_tables(experiment.name)) or "no README table"
            print(f"{experiment.name:22} {device}  {experiment.duration:58} "
                  f"{' '.join(experiment.args) or '(defaults)'}; tables: {stems}")
        return 0
    import torch

    measured_elsewhere = []  # GPU experiments copied, not run: results/ holds a GPU's tables
    if not torch.cuda.is_available():
        gpu_only = [e for e in chosen if e.gpu]
        if options.readme:
            # e.g. gpu_check.sh's gpu_check.tgz unpacked into the repository root
            measured_elsewhere = [e for e in gpu_only if all(
                (options.results / e.name / f"{stem}.md").is_file()
                for stem in readme_tables(e.name))]
        for experiment in measured_elsewhere:
            print(f"no CUDA GPU: not running {experiment.name}; copying its tables from "
                  f"{options.results / experiment.name}")
        skipped = [e.name for e in gpu_only if e not in measured_elsewhere]
        if skipped:
            print(f"no CUDA GPU: skipping {', '.join(skipped)}")
        chosen = [e for e in chosen if not e.gpu]
    failed = []
    if not options.no_run:
        for experiment in chosen:
            ok, seconds = run(experiment, options.results)
            print(f"== {experiment.name}: {'done' if ok else 'FAILED'} in {seconds / 60:.1f} min",
                  flush=True)
            if not ok:
                failed.append(experiment.name)
    if options.readme:
        done = [e for e in chosen if e.name not in failed] + measured_elsewhere
        for path, block in copy_into_documents(done, options.results):
            print(f"{path.name}: {block} updated")
    if failed:
        print(f"failed: {', '.join(failed)} (their README blocks were left alone)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
