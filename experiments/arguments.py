"""Command-line options of the experiment scripts, parsed by jsonargparse.

Where jsonargparse is not installed (the bare GPU image of experiments/gpu_check.sh, which runs
benchmark_gpu.py), argparse's parser reads the same flags: the scripts only use what both share.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

try:
    from jsonargparse import ArgumentParser
except ImportError:  # the bare GPU image: same flags, argparse's parser
    from argparse import ArgumentParser


def parser(prog: str, doc: str) -> ArgumentParser:
    """A parser whose --help shows the script's docstring (usage examples) as written."""
    return ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def experiment_parser(experiment: str, doc: str) -> ArgumentParser:
    """parser() with the options of every experiment that writes a results folder:
    --tiny, --out, --seed, --wandb, --threads."""
    options = parser(f"python -m experiments.{experiment}", doc)
    options.add_argument(
        "--tiny",
        action="store_true",
        help="seconds-long smoke run at tiny sizes (used by the tests)",
    )
    options.add_argument(
        "--out",
        type=Path,
        default=Path("results") / experiment,
        help=f"results folder (default: results/{experiment})",
    )
    options.add_argument("--seed", type=int, default=0)
    options.add_argument(
        "--wandb",
        action="store_true",
        help="also log tables and plots to Weights & Biases (offline unless WANDB_API_KEY is set)",
    )
    options.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    return options


def setup(options: Any) -> Path:
    """Apply --threads, check that --wandb can log, create the results folder; return it.

    The W&B check comes first, so a missing wandb stops the run before any work.
    """
    import torch

    if options.wandb and importlib.util.find_spec("wandb") is None:
        raise SystemExit("--wandb needs wandb: pip install wandb (or leave out --wandb)")
    if options.threads:
        torch.set_num_threads(options.threads)
    options.out.mkdir(parents=True, exist_ok=True)
    return options.out
