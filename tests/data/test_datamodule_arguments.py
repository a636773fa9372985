"""What LightningCLI (jsonargparse) sees of each DataModule's constructor, and that it reaches it.

The DataModules take their own arguments and pass the rest on to their bases by keyword
(`**settings`); jsonargparse follows those calls, so every argument must still appear as
`--data.init_args.<name>` with its type, default and help, and land in the right attribute.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import pytest
from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningArgumentParser

from exodus_lightning.data import (
    DVSGestureDataModule,
    NMNISTDataModule,
    RandmanDataModule,
    SHDDataModule,
    SSCDataModule,
)

LOADER = {
    "batch_size": (int, 32),
    "num_workers": (int, 0),
    "seed": (int, 0),
    "pin_memory": (bool | None, None),
    "persistent_workers": (bool, True),
}
RECORDED = {
    **LOADER,
    "data_dir": (str | Path, "data"),
    "download": (bool, True),
    "cache_dir": (str | Path | None, None),
    "val_fraction": (float, 0.1),
    "duration_ms": (float | None, None),
    "augmentations": (Sequence[str], ()),
    "streaming": (str | Path | None, None),
    "streaming_workers": (int | None, None),
    "bin_on_device": (bool, False),
}
CAMERA = {**RECORDED, "denoise_ms": (float | None, None)}
# The public constructor arguments: (type, default) by name.
PUBLIC_ARGUMENTS = {
    NMNISTDataModule: {
        **CAMERA,
        "num_time_steps": (int, 100),
        "bin_width_ms": (float | None, None),
        "first_saccade_only": (bool, False),
    },
    DVSGestureDataModule: {
        **CAMERA,
        "num_time_steps": (int, 300),
        "bin_width_ms": (float | None, None),
        "downsample_factor": (int, 4),
    },
    SHDDataModule: {
        **RECORDED,
        "num_time_steps": (int, 250),
        "bin_width_ms": (float | None, None),
        "num_channels": (int, 100),
    },
    SSCDataModule: {
        **RECORDED,
        "val_fraction": (float | None, None),
        "num_time_steps": (int, 250),
        "bin_width_ms": (float | None, None),
        "num_channels": (int, 100),
    },
    RandmanDataModule: {
        **LOADER,
        "batch_size": (int, 128),
        "data_dir": (str | Path | None, None),
        "download": (bool, True),
        "num_classes": (int, 10),
        "num_channels": (int, 20),
        "num_time_steps": (int, 50),
        "latent_dim": (int, 2),
        "num_frequencies": (int, 3),
        "alpha": (float, 2.0),
        "jitter": (float, 0.0),
        "num_train_samples": (int, 10000),
        "num_val_samples": (int, 2000),
        "num_test_samples": (int, 2000),
        "manifold_seed": (int, 0),
    },
}
# A valid value other than the default for every argument, each distinct from the others of its
# type, so an argument passed on to the wrong name shows.
GIVEN = {
    "batch_size": 3,
    "num_workers": 2,
    "seed": 5,
    "pin_memory": False,
    "persistent_workers": False,
    "data_dir": "elsewhere",
    "download": False,
    "cache_dir": "cache-here",
    "val_fraction": 0.25,
    "duration_ms": 120.0,
    "augmentations": ["drop_event"],
    "streaming": "prepared-copy",
    "streaming_workers": 1,
    "bin_on_device": True,
    "denoise_ms": 7.0,
    "num_time_steps": 12,
    "bin_width_ms": 10.0,  # = duration_ms / num_time_steps: both given must agree
    "first_saccade_only": True,
    "downsample_factor": 8,
    "num_channels": 50,
    "num_classes": 4,
    "latent_dim": 6,
    "num_frequencies": 7,
    "alpha": 1.5,
    "jitter": 0.5,
    "num_train_samples": 40,
    "num_val_samples": 20,
    "num_test_samples": 30,
    "manifold_seed": 11,
}


def cli_view(module_class: type) -> dict[str, tuple[object, object, str]]:
    """name -> (type, default, help) of each argument jsonargparse builds for `module_class`."""
    parser = ArgumentParser()
    parser.add_class_arguments(module_class, "data")
    return {
        action.dest.removeprefix("data."): (
            getattr(action, "_typehint", None),
            action.default,
            action.help,
        )
        for action in parser._actions
        if action.dest.startswith("data.") and action.dest != "data.__path__"
    }


@pytest.mark.parametrize("module_class", list(PUBLIC_ARGUMENTS), ids=lambda c: c.__name__)
def test_the_cli_sees_every_argument_with_its_type_default_and_help(module_class) -> None:
    seen = cli_view(module_class)
    expected = PUBLIC_ARGUMENTS[module_class]
    assert set(seen) == set(expected)
    for name, (typehint, default) in expected.items():
        seen_type, seen_default, help_text = seen[name]
        assert (seen_type, seen_default) == (typehint, default), name
        assert help_text and len(help_text) > 10, f"{module_class.__name__}.{name} has no help"


@pytest.mark.parametrize("module_class", list(PUBLIC_ARGUMENTS), ids=lambda c: c.__name__)
def test_every_init_args_option_reaches_its_own_attribute(module_class) -> None:
    names = PUBLIC_ARGUMENTS[module_class]
    parser = LightningArgumentParser()
    parser.add_lightning_class_args(L.LightningDataModule, "data", subclass_mode=True)
    options = [f"--data={module_class.__module__}.{module_class.__name__}"]
    options += [f"--data.init_args.{name}={GIVEN[name]}" for name in names]
    # `instantiate_classes` is called `instantiate` from jsonargparse 4.49 on.
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    module = instantiate(parser.parse_args(options))["data"]
    assert isinstance(module, module_class)
    for name in names:
        assert module.hparams[name] == GIVEN[name], name
    assert (module.batch_size, module.num_workers, module.seed) == (3, 2, 5)
    assert (module.pin_memory, module.persistent_workers) == (False, False)
    assert module.num_time_steps == 12
    if module_class is not RandmanDataModule:
        assert module.data_dir == Path("elsewhere") and module.download is False
        assert module.cache_dir == Path("cache-here") and module.val_fraction == 0.25
        assert module.bin_width_us == 120.0 / 12 * 1000
        assert module.augmentation_names == ("drop_event",)
        assert module.streaming == "prepared-copy"
        assert module.streaming_workers == 1 and module.bin_on_device is True


@pytest.mark.parametrize("module_class", list(PUBLIC_ARGUMENTS), ids=lambda c: c.__name__)
def test_loader_arguments_are_keyword_only(module_class) -> None:
    with pytest.raises(TypeError, match="positional"):
        module_class("data", 32)
