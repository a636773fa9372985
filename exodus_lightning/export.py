"""`exodus-lightning export`: a trained checkpoint as a NIR file, for neuromorphic hardware and
other simulators (see exodus_lightning.nir for what is mapped and what NIR cannot express)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from exodus_lightning.checkpoint_file import (
    CheckpointError,
    load_checkpoint_file,
    saved_input_shape,
)
from exodus_lightning.cli_parser import PROG

DESCRIPTION = (
    "Write the network of a checkpoint as a NIR graph (.nir, HDF5), which sinabs, snnTorch, "
    "Norse, Rockpool, Lava and neuromorphic chips read. Settings NIR cannot express are named "
    "in a warning; layers it has no node for (ALIF, learned delays) end with an error."
)


def export_checkpoint(ckpt_path: str | os.PathLike, output: str | os.PathLike,
                      dt: float = 1.0, input_shape: Sequence[int] | None = None) -> Path:
    """Write the network of the Lightning checkpoint ckpt_path to output as NIR; return it.

    input_shape: the network's (*features) input; by default the network's ``input_shape``
    attribute, else the input_shape the checkpoint saved among the network's init_args.
    """
    import nir  # an optional dependency: pip install nir

    from exodus_lightning.nir import to_nir
    from exodus_lightning.tasks import SpikingClassifier

    checkpoint = load_checkpoint_file(ckpt_path)  # a CheckpointError saying why, if unusable
    module = SpikingClassifier.load_from_checkpoint(ckpt_path, map_location="cpu")
    network = module.network
    shape = input_shape or getattr(network, "input_shape", None) or saved_input_shape(checkpoint)
    if shape is None:
        raise ValueError(f"{type(network).__name__} has no input_shape attribute and the "
                         f"checkpoint saved none among its init_args; give the input features "
                         f"with --input_shape, e.g. --input_shape 2 32 32")
    # Shapes do not depend on the number of steps; two steps run every layer once more.
    sample = torch.zeros(1, 2, *(int(n) for n in shape))
    graph = to_nir(network, sample, dt=dt)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    nir.write(output, graph)
    return output


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `exodus-lightning export`; user errors end with one line, exit status 1."""
    parser = argparse.ArgumentParser(prog=f"{PROG} export", description=DESCRIPTION)
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint written by `fit`")
    parser.add_argument("--output", default="model.nir", help="the .nir file to write")
    parser.add_argument("--dt", type=float, default=1.0,
                        help="length of one time step in the graph's time unit: NIR's τ is "
                             "the layer's τ (in steps) times dt (default 1, as sinabs)")
    parser.add_argument("--input_shape", type=int, nargs="+", default=None,
                        help="input features, for a network without an input_shape attribute or "
                             "init argument")
    args = parser.parse_args(argv)
    try:
        from exodus_lightning.nir import NIRExportError
    except ImportError as error:  # its message says what to install
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    try:
        path = export_checkpoint(args.ckpt_path, args.output, args.dt, args.input_shape)
    except (CheckpointError, NIRExportError, ValueError) as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    print(f"Wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
