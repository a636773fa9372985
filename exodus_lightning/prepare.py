"""`exodus-lightning prepare`: write a recorded dataset once as litdata chunks to stream from.

    exodus-lightning prepare --config configs/shd.yaml --output data/shd-prepared
    exodus-lightning fit --config configs/shd.yaml --data.init_args.streaming data/shd-prepared

The DataModule comes from the same configs and --data.* options as `fit` (so the prepared copy
has exactly the samples `fit` would read); model and trainer settings are parsed but unused.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

import lightning as L

from exodus_lightning.cli import PROG, USER_ERRORS, ExodusCLI, build_cli, user_error_message
from exodus_lightning.data.prepare_copy import STORE_CHOICES, prepare_copy

DESCRIPTION = (
    "Read every split of a recorded dataset (NMNIST, DVS Gesture, SHD, SSC) through its tonic "
    "loader, apply the fixed transforms (binning, downsampling, denoising) and write the "
    "training, validation and test samples as litdata chunks with a manifest.json. Train from "
    "it with --data.init_args.streaming OUTPUT: the data settings must be those prepared "
    "(a copy made with others is refused). Other options (--config, --data.*) are `fit`'s."
)


class DataOnlyCLI(ExodusCLI):
    """The `fit` command line's parsing and defaults, instantiating the DataModule only (no
    extension build, model or trainer)."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        self.datamodule = instantiate_data(self.config["data"])


def instantiate_data(data_config: Any) -> L.LightningDataModule:
    """The DataModule of a parsed `data` section (class_path and init_args)."""
    module_name, _, class_name = str(data_config["class_path"]).rpartition(".")
    data_class = getattr(importlib.import_module(module_name), class_name)
    init_args = data_config.get("init_args")
    return data_class(**(init_args.as_dict() if init_args is not None else {}))


def parse_arguments(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} prepare",
        usage="%(prog)s --config FILE --output DIR_OR_URL [--num_workers N] [--data.KEY VALUE]",
        description=DESCRIPTION,
    )
    parser.add_argument(
        "--output", required=True, help="folder, or object-store URL (s3://...), to write to"
    )
    parser.add_argument(
        "--num_workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes writing chunks (default: one per CPU); 0 writes in this process",
    )
    parser.add_argument(
        "--store",
        choices=STORE_CHOICES,
        default="auto",
        help="frames (binned counts) or events (preprocessed, binned on access); auto: events "
        "for the training samples when the config augments, frames otherwise",
    )
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point of `exodus-lightning prepare`; returns the manifest written."""
    options, cli_args = parse_arguments(sys.argv[1:] if argv is None else argv)
    # LightningCLI warns when sys.argv holds arguments besides `args`: here they are ours.
    command_line, sys.argv = sys.argv, sys.argv[:1]
    try:
        datamodule = build_cli(cli_args, run=False, cli_class=DataOnlyCLI).datamodule
        manifest = prepare_copy(datamodule, options.output, options.num_workers, options.store)
    except (*USER_ERRORS, ValueError) as error:
        print(f"{PROG} prepare: error: {user_error_message(error)}", file=sys.stderr, flush=True)
        sys.exit(1)
    finally:
        sys.argv = command_line
    for part, entry in manifest["parts"].items():
        print(
            f"{part}: {entry['num_samples']} {entry['stored']} samples of {entry['split']} "
            f"in {entry['seconds_to_prepare']:.1f} s"
        )
    print(f"prepared {manifest['dataset']} in '{options.output}'; train with "
          f"--data.init_args.streaming {options.output}")  # fmt: skip
    return manifest


if __name__ == "__main__":
    main()
