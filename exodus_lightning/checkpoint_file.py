"""Is a file a usable Lightning checkpoint? One load, and one line saying why not.

torch.load and Lightning report an unusable file by what broke inside them (EOFError for an
empty file, OSError for a truncated one, an unpickling hint that suggests weights_only=False for
random bytes, KeyError 'pytorch-lightning_version' for a file written by torch.save), and load a
checkpoint whose weights hold NaN without a word. `load_checkpoint_file` loads the file once and
turns each of these into a CheckpointError naming the file and the reason;
`check_checkpoint_contents` then checks what the loaded checkpoint holds against the model.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

# torch.save has written zip archives since torch 1.6; Lightning checkpoints are always these.
ZIP_MAGIC = b"PK\x03\x04"
# Keys that every checkpoint written by a Lightning Trainer holds (Lightning reads both).
LIGHTNING_KEYS = ("state_dict", "pytorch-lightning_version")
MAX_NAMES = 4  # tensors named in a message; the rest are counted


class CheckpointError(ValueError):
    """A --ckpt_path that is not a usable checkpoint; the message names the file and why."""


class CheckpointWarning(UserWarning):
    """A checkpoint that loads but holds something suspicious (non-finite buffers)."""


def load_checkpoint_file(path: str | os.PathLike, weights_only: bool | None = True) -> dict:
    """The Lightning checkpoint at `path`, loaded on the CPU; CheckpointError if it is none.

    Says why not in one line: an empty file, a truncated or corrupt zip archive (torch.save's
    format), another kind of file, an object that weights-only loading refuses, or an object
    without a state_dict and a Lightning version (written by torch.save, not by a Trainer).
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # About a pickle that is not torch's, which the error below then names.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as error:  # torch.load raises whatever a corrupt file makes it hit
        raise CheckpointError(_unusable(path, _unreadable_reason(path, error))) from error
    reason = _not_lightning_reason(checkpoint)
    if reason:
        raise CheckpointError(_unusable(path, reason))
    return checkpoint


def check_checkpoint_contents(
    path: str | os.PathLike, checkpoint: Mapping[str, Any], model: nn.Module, resuming: bool
) -> None:
    """CheckpointError unless `model` can use the loaded `checkpoint`: finite parameters and,
    when `resuming` training, the optimizer state. NaN or infinity in `model`'s buffers (neuron
    states, which are reset before each batch, or a user's) only warns, naming them."""
    path = Path(path)
    if resuming and "optimizer_states" not in checkpoint:
        raise CheckpointError(
            _unusable(
                path,
                "it holds the weights only (saved with save_weights_only=True), no optimizer "
                "state, so training cannot resume from it; validate, test and predict can "
                "use it",
            )
        )
    mismatched = shape_mismatches(checkpoint["state_dict"], model)
    if mismatched:
        raise CheckpointError(
            f"--ckpt_path {path}: its network was built for other shapes than this run's "
            f"({_listed(mismatched)}): the data (input shape, classes) or the network settings "
            "differ from the run that saved it; pass that run's --config (and any --data / "
            "--model options it had) again"
        )
    buffers = {name for name, _ in model.named_buffers()}
    bad = non_finite_tensors(checkpoint["state_dict"])
    bad_parameters = {name: what for name, what in bad.items() if name not in buffers}
    bad_buffers = {name: what for name, what in bad.items() if name in buffers}
    if bad_parameters:
        raise CheckpointError(
            _unusable(
                path,
                f"its weights hold NaN or infinity: {_listed(bad_parameters)} (the run that "
                "saved it had diverged; take an earlier checkpoint)",
            )
        )
    if bad_buffers:
        warnings.warn(
            f"--ckpt_path {path}: buffers hold NaN or infinity: {_listed(bad_buffers)} "
            "(states are reset before each batch; other buffers are used as they are)",
            CheckpointWarning,
            stacklevel=2,
        )


def saved_input_shape(checkpoint: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The network's input_shape among the init_args `fit` saved in the checkpoint (the CLI
    fills it from the data for a network whose constructor takes one), or None."""
    network = (checkpoint.get("hyper_parameters") or {}).get("network")
    init_args = network.get("init_args") if isinstance(network, Mapping) else None
    shape = init_args.get("input_shape") if isinstance(init_args, Mapping) else None
    return None if shape is None else tuple(int(n) for n in shape)


def shape_mismatches(state_dict: Mapping[str, Any], model: nn.Module) -> dict[str, str]:
    """{name: "(128, 100) in the checkpoint, (128, 20) here"} for each parameter of `model`
    whose saved tensor has another shape (neuron states may have any: they load as they are)."""
    found = {}
    for name, parameter in model.named_parameters():
        saved = state_dict.get(name)
        if isinstance(saved, torch.Tensor) and saved.shape != parameter.shape:
            found[name] = (f"{tuple(saved.shape)} in the checkpoint, {tuple(parameter.shape)} "
                           "here")
    return found


def non_finite_tensors(state_dict: Mapping[str, Any]) -> dict[str, str]:
    """{name: "3 NaN, 1 inf of 2560"} for each floating-point tensor that is not all finite."""
    found = {}
    for name, value in state_dict.items():
        if not (isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel()):
            continue
        # NaN propagates into both extremes: one pass, no mask (~14x faster than isfinite).
        if bool(torch.isfinite(torch.stack(torch.aminmax(value))).all()):
            continue
        nan = int(torch.isnan(value).sum())
        inf = int(torch.isinf(value).sum())
        counts = ", ".join(f"{n} {kind}" for n, kind in ((nan, "NaN"), (inf, "inf")) if n)
        found[name] = f"{counts} of {value.numel()}"
    return found


def _unusable(path: Path, reason: str) -> str:
    return f"--ckpt_path {path}: not a usable checkpoint: {reason}"


def _listed(entries: dict[str, str]) -> str:
    names = [f"{name} ({what})" for name, what in list(entries.items())[:MAX_NAMES]]
    more = len(entries) - MAX_NAMES
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _unreadable_reason(path: Path, error: Exception) -> str:
    """Why torch.load failed, from the file's size and first bytes rather than from where the
    failure surfaced inside torch (EOFError, OSError, KeyError, an unpickling hint)."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes)"
    with path.open("rb") as file:
        head = file.read(len(ZIP_MAGIC))
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    if head == ZIP_MAGIC and not zipfile.is_zipfile(path):
        return (
            f"the file is truncated ({size} bytes, its zip archive has no end): it was not "
            "written or copied completely"
        )
    if refused:
        return (
            f"it holds a {refused.group(1)} object, which the command's weights-only "
            "loading refuses (unpickling it could run code)"
        )
    if head != ZIP_MAGIC:
        return (
            f"the file is not one that torch.save writes (a zip archive); it starts with {head!r}"
        )
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    kind = "unpickling failed" if isinstance(error, pickle.UnpicklingError) else first_line
    return f"the file is corrupt ({kind})"


def _not_lightning_reason(checkpoint: Any) -> str | None:
    """Why a loaded object is not a Lightning checkpoint, or None if it is one."""
    written_by = "written by torch.save, not by a Lightning Trainer (ModelCheckpoint)"
    if not isinstance(checkpoint, Mapping):
        return f"it holds a {type(checkpoint).__name__}, {written_by}"
    if "state_dict" not in checkpoint:
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            return f"it holds a bare state_dict (torch.save(model.state_dict())), {written_by}"
        keys = ", ".join(map(str, list(checkpoint)[:MAX_NAMES])) or "none"
        return f"it has no 'state_dict' (its keys: {keys}), {written_by}"
    if "pytorch-lightning_version" not in checkpoint:
        return f"it has no 'pytorch-lightning_version', {written_by}"
    return None
