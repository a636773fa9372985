"""The `exodus-lightning` command: LightningCLI over SpikingClassifier and any DataModule.

    exodus-lightning fit                                  # built-in Randman task, defaults below
    exodus-lightning fit --config configs/shd.yaml        # an experiment
    exodus-lightning fit --config configs/shd.yaml --print_config   # the resolved config
    exodus-lightning test --config configs/shd.yaml --ckpt_path best.ckpt
    exodus-lightning prepare --config configs/shd.yaml --output data/shd-prepared  # streamable

`prepare` and `export` are not Trainer subcommands: main() dispatches them to
exodus_lightning.prepare and exodus_lightning.export.

The data's `num_classes` and `input_shape` are linked to the model and to the network (when its
constructor takes arguments of those names), so configs never repeat them; one that states them
with another value than the data's is an error (jsonargparse would replace it without a word).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from jsonargparse import Namespace
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import (
    BasePredictionWriter,
    ModelCheckpoint,
    OnExceptionCheckpoint,
)
from lightning.pytorch.callbacks import ProgressBar as LightningProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

import exodus_lightning
from exodus_lightning import ops
from exodus_lightning.callbacks import (
    LastCheckpoint,
    NonFiniteError,
    NonFiniteGuard,
    PredictionWriter,
    ProgressBar,
    RunSummary,
    SpikeActivityCheck,
    SpikeRasterLogger,
    TrainingRandomState,
)
from exodus_lightning.checkpoint_file import (
    CheckpointError,
    check_checkpoint_contents,
    load_checkpoint_file,
)
from exodus_lightning.cli_parser import (
    PROG,
    ExodusArgumentParser,
    class_settings,
    class_switch_defaults,
    names_class,
    stated_values,
    wrap_class_help,
)
from exodus_lightning.data import (  # noqa: F401 (imported: --data takes their short names)
    DelayedXorDataModule,
    DVSGestureDataModule,
    NMNISTDataModule,
    RandmanDataModule,
    SHDDataModule,
    SSCDataModule,
)
from exodus_lightning.data.errors import DataError
from exodus_lightning.loggers import wandb_files_dir
from exodus_lightning.nn import ParameterRangeError
from exodus_lightning.ops import ExtensionBuildError
from exodus_lightning.tasks import SpikingClassifier

CONFIG_FILE_NAME = "config.yaml"
# The checkpoint key under which the CLI records the run's data: {"class_path", "init_args"}.
DATA_RECORD_KEY = "exodus_lightning_data"
# Among a W&B run's files, where wandb keeps its own config.yaml.
WANDB_CONFIG_FILE_NAME = "lightning_config.yaml"
DESCRIPTION = (
    "Train and evaluate spiking neural networks with exact EXODUS gradients. With no --config, "
    "`fit` trains on the built-in Randman task (no download). Every setting is a --key value "
    "option or a YAML --config; `<subcommand> --help` lists them. `export --ckpt_path FILE "
    "--output model.nir` writes a trained network as NIR, for hardware and other simulators. "
    "`prepare --help`: write a recorded dataset once as chunks that every run streams."
)
USAGE = "%(prog)s [--config FILE] [--KEY VALUE ...]"
SUBCOMMANDS = {
    "fit": "Train, validating every epoch; saves the best and the last checkpoint.",
    "validate": "Score a checkpoint (--ckpt_path) on the validation split.",
    "test": "Score a checkpoint (--ckpt_path) on the test split, with a confusion matrix.",
    "predict": "Predict the test split with a checkpoint (--ckpt_path); writes predictions.csv.",
}
# --ckpt_path values that Lightning resolves and checks itself: SLURM's hpc checkpoint and
# the model registry ("registry", "registry:<name>:<version>").
LIGHTNING_KEYWORDS = ("hpc", "registry")

# What every subcommand uses before any --config: the built-in task, the checkpoint settings
# and the W&B logger. Shipped inside the package (package_data in setup.py), so installs have it.
DEFAULT_CONFIG_FILE = Path(__file__).with_name("default_config.yaml")


# Settings filled from the DataModule's attributes ({target: attribute}), so configs never repeat
# them; one stated with another value than the data's is an error (see ExodusCLI._linked_value).
LINKED_FROM_DATA = {
    "model.num_classes": "num_classes",
    "model.network.init_args.num_classes": "num_classes",
    "model.network.init_args.input_shape": "input_shape",
}

# Callbacks configured under their own keys (--checkpoint.monitor, ...). `checkpoint` keeps the
# best epochs on its monitored metric, `last_checkpoint` writes last.ckpt after every epoch.
CALLBACK_GROUPS: dict[str, type[L.Callback]] = {
    "checkpoint": ModelCheckpoint,
    "last_checkpoint": LastCheckpoint,
    "spike_raster": SpikeRasterLogger,
    "spike_check": SpikeActivityCheck,
    "non_finite_guard": NonFiniteGuard,
}


class ConfigError(ValueError):
    """A setting the command cannot use; the message names it and what to change."""


class CLIWarning(UserWarning):
    """Something in how the command was called that is probably not what was meant."""


class SaveAndLogConfig(SaveConfigCallback):
    """Saves the resolved config into the run's folder and logs it as hyperparameters.

    The folder is the W&B run's files folder (uploaded with the run) or the logger's log_dir,
    so runs never overwrite each other's config. The run's summary.json gets it too.
    """

    def __init__(self, parser: LightningArgumentParser, config, **kwargs) -> None:
        super().__init__(parser, config, save_to_log_dir=False, **kwargs)
        self._data_record: dict[str, Any] | None = None

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                path = wandb_files_dir(logger) / WANDB_CONFIG_FILE_NAME
            else:
                path = Path(logger.log_dir or trainer.default_root_dir) / CONFIG_FILE_NAME
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, path, overwrite=True)
            logger.log_hyperparams(self.config.as_dict())
        if not trainer.loggers:
            path = Path(trainer.default_root_dir) / CONFIG_FILE_NAME
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, path, overwrite=True)
        for callback in trainer.callbacks:
            if isinstance(callback, RunSummary):
                callback.config = self.config.as_dict()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        """Record the run's data, as configured, in every checkpoint: `test --ckpt_path` then
        restores it whether or not the DataModule saves its own hyperparameters."""
        if self._data_record is None:
            # Through the parser's dump: plain values (paths as strings), which the
            # weights-only loading of --ckpt_path accepts.
            dumped = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
            data = dumped.get("data") if isinstance(dumped, dict) else None
            if isinstance(data, dict) and isinstance(data.get("class_path"), str):
                self._data_record = {"class_path": data["class_path"],
                                     "init_args": data.get("init_args") or {}}
        if self._data_record is not None:
            checkpoint[DATA_RECORD_KEY] = self._data_record


class ExodusCLI(LightningCLI):
    """LightningCLI with SpikingClassifier, any LightningDataModule (default Randman), a
    best-on-validation checkpoint (`--checkpoint.*`), last.ckpt after every epoch
    (`--last_checkpoint.*`), spike rasters (`--spike_raster.*`), a
    warning for silent or saturated spiking layers (`--spike_check.*`), a predictions file,
    a compact progress bar (one line per epoch in logs) and an end-of-run summary."""

    def __init__(self, *args: Any, subcommand_names: Sequence[str] | None = None,
                 **kwargs: Any) -> None:
        quiet_library_noise()
        self._subcommand_names = subcommand_names
        super().__init__(*args, **kwargs)

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]
        """Lightning's subcommands, or those named by `subcommand_names` (see build_cli)."""
        every = LightningCLI.subcommands()
        return {name: every[name] for name in self._subcommand_names or every}

    def setup_parser(
        self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]
    ) -> None:
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        # The subcommand list in --help shows Trainer docstrings' first lines, cut mid-sentence.
        action = getattr(self.parser, "_subcommands_action", None)
        for choice in getattr(action, "_choices_actions", []):
            choice.help = SUBCOMMANDS.get(choice.dest, choice.help)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for key, callback_class in CALLBACK_GROUPS.items():
            parser.add_lightning_class_args(callback_class, key)
        # On instantiation, since DataModules compute these attributes in their constructor.
        for target, attribute in LINKED_FROM_DATA.items():
            parser.link_arguments(f"data.{attribute}", target, apply_on="instantiate",
                                  compute_fn=functools.partial(self._linked_value, target))
        parser.add_argument(
            "--keep_freed_memory",
            type=bool,
            default=True,
            help="On CPU, let glibc keep freed memory for reuse (exodus_lightning.ops."
            "keep_freed_memory): no page faults on each step's fresh tensors, at the cost "
            "of holding the peak resident memory",
        )
        wrap_class_help(parser)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse as LightningCLI does, except that a setting switched to another class (e.g.
        --data SHDDataModule, or a --config naming ConvSNN) starts from that class's own
        defaults, not from the values the default config holds for the default class."""
        given = sys.argv[1:] if args is None else args
        # Kept to tell what the command line chose (see _restore_data_from_checkpoint and
        # _apply_stated_model).
        self._given_args = [str(a) for a in given] if isinstance(given, (list, tuple)) else []
        # The values the command line states itself, without defaults (None for a dict of
        # settings, or arguments that do not parse alone).
        self._stated = None
        switches = {}
        if isinstance(given, (list, tuple)):
            subcommands = getattr(self, "_subcommand_parsers", {})  # empty when run=False
            subcommand = next((a for a in self._given_args if a in subcommands), None)
            defaults = subcommands.get(subcommand, parser).get_defaults()
            stated = stated_values(parser, self._given_args, {subcommand or "": defaults})
            if stated is not None:
                self._stated = stated.get(subcommand) if subcommand else stated
            if self._stated is not None:
                # A class_path left in the stated values is another class than the default's.
                switches = {key: self._stated[f"{key}.class_path"]
                            for key in class_settings(defaults)
                            if f"{key}.class_path" in self._stated}
        with class_switch_defaults(switches):
            super().parse_arguments(parser, args)

    def _linked_value(self, target: str, value: Any) -> Any:
        """The data's `value` for the linked setting `target`, once checked against what the
        command line or a --config states for it: jsonargparse would replace that silently."""
        stated = self._stated.get(target) if self._stated is not None else None
        if stated is None or same_value(stated, value):
            return value
        tokens = {arg.split("=", 1)[0] for arg in self._given_args}
        in_config = f"--{target}" not in tokens and "--config" in tokens
        where = f"{target} (in a --config)" if in_config else f"--{target}"
        config = self.config[self.subcommand] if self.subcommand else self.config
        data = str(config.data.class_path).rpartition(".")[2]
        raise ConfigError(
            f"{where}: given {format_value(stated)}, but it is set from the data ({data}'s "
            f"{LINKED_FROM_DATA[target]}: {format_value(value)}); remove it, or change the "
            "data's settings (--data.init_args.*) to change it")

    def before_instantiate_classes(self) -> None:
        warm_up_extension()

    def instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as error:
            raise config_error_from(error, config) from error
        # Once the trainer exists (it resolves the accelerator), for every subcommand and for
        # run=False alike.
        if config.keep_freed_memory and isinstance(self.trainer.accelerator, CPUAccelerator):
            ops.keep_freed_memory()
        best = self._get(self.config_init, "checkpoint")
        last = self._get(self.config_init, "last_checkpoint")
        if isinstance(best, ModelCheckpoint) and isinstance(last, LastCheckpoint):
            last.beside = best  # its folder, unless --last_checkpoint.dirpath gives one
            # LastCheckpoint writes last.ckpt after every epoch. The monitored callback's own
            # copy (save_last, e.g. in configs written before LastCheckpoint) would be a second
            # last*.ckpt in the same folder, holding the best epoch since Lightning 2.6, that
            # `--ckpt_path last` could pick.
            best.save_last = False
        if self.trainer.fast_dev_run:
            # A smoke test: Lightning turns the loggers off, but the checkpoint callback would
            # still write last.ckpt into ./checkpoints of the current folder.
            for callback in self.trainer.checkpoint_callbacks:
                if isinstance(callback, ModelCheckpoint):
                    callback.save_last = False
                    callback.save_top_k = 0

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The configured trainer, plus our progress bar (unless turned off or another is
        configured) and, for predict, the predictions file writer."""
        config = self._get(self.config_init, "trainer", default={})
        configured = config.get("callbacks") or []
        configured = configured if isinstance(configured, list) else [configured]
        extra = []
        if config.get("enable_progress_bar") is not False and not any(
            isinstance(c, LightningProgressBar) for c in configured
        ):
            extra.append(ProgressBar())
        if self.subcommand == "predict" and not any(
            isinstance(c, BasePredictionWriter) for c in configured
        ):
            extra.append(PredictionWriter())
        defaults = self.trainer_defaults.get("callbacks", [])
        defaults = defaults if isinstance(defaults, list) else [defaults]
        self.trainer_defaults = {**self.trainer_defaults, "callbacks": [*defaults, *extra]}
        try:
            return super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, ValueError, TypeError) as error:
            # Lightning rejects accelerator/devices/strategy combinations with exceptions
            # of these types, raised while the Trainer is built.
            raise ConfigError(
                explain_trainer_error(error, self._get(self.config, "trainer"))
            ) from error

    def before_fit(self) -> None:
        self._check_checkpoint("fit")

    def before_validate(self) -> None:
        self._check_evaluated_model("validate")

    def before_test(self) -> None:
        self._check_evaluated_model("test")

    def before_predict(self) -> None:
        self._check_evaluated_model("predict")
        use_test_split_for_predict(self.datamodule)

    def _parse_ckpt_path(self) -> None:
        """Load --ckpt_path once, failing in one line if it is not a Lightning checkpoint, before
        LightningCLI reads the model's hyperparameters from it (with weights_only=True, as here;
        its errors name what broke inside torch instead). `_check_checkpoint` checks the rest."""
        self._checkpoint = None
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path is not None and not is_special_checkpoint_path(path):
            if not Path(path).is_file():
                raise ConfigError(f"--ckpt_path: no checkpoint file at '{path}'")
            self._checkpoint = load_checkpoint_file(path, weights_only=True)
        super()._parse_ckpt_path()
        if self._checkpoint is not None:
            self._apply_stated_model(subcommand)
            self._restore_data_from_checkpoint(subcommand)

    def _apply_stated_model(self, subcommand: str) -> None:
        """Put back the model settings the command line states (--model.* options, a --config's
        `model`), which LightningCLI replaced by the checkpoint's hyperparameters, and name in
        one line those that differ from the checkpoint's: what the user typed is what runs."""
        stated = self._stated.get("model") if self._stated is not None else None
        if not self._checkpoint.get("hyper_parameters") or not stated:
            return
        from_checkpoint = self.config
        try:
            self.config = with_values(self.parser, from_checkpoint, f"{subcommand}.model", stated)
        except (SystemExit, ValueError, TypeError) as error:
            raise ConfigError(f"--ckpt_path: the model settings given here do not apply to the "
                              f"checkpoint's model ({error})") from error
        # The data sets the linked ones (_linked_value refuses another value than the data's).
        keys = [key for key in stated.keys() if f"model.{key}" not in LINKED_FROM_DATA]
        replaced = replaced_settings("model", keys, self.config[subcommand].model,
                                     from_checkpoint[subcommand].model)
        if replaced and rank_zero_only.rank == 0:  # every DDP process parses the command line
            print(f"{PROG} {subcommand}: model settings given here replace the checkpoint's: "
                  f"{'; '.join(replaced)}", file=sys.stderr)

    def _restore_data_from_checkpoint(self, subcommand: str) -> None:
        """With --ckpt_path, use the data the checkpoint was trained with, as LightningCLI does
        for the model's settings: `test --ckpt_path` after `fit --config configs/shd.yaml`
        scores SHD. Data settings stated here that name no other class (--data.init_args.*
        options, a --config's `data` of the same class) are put over the recorded ones, as the
        model's are (_apply_stated_model), and one line names those that differ; naming another
        class (--data X, a --config's data class_path) uses that data as given. A checkpoint
        that does not record its data is refused rather than scored on the default data."""
        config = self.config[subcommand]
        defaults = self._subcommand_parsers[subcommand].get_defaults()
        given = getattr(self, "_given_args", [])
        if self._stated is None:
            if any(arg.startswith("--data") for arg in given) or config.data != defaults.data:
                return  # what the command line states is unknown: the data as given
            stated = None
        else:
            stated = self._stated.get("data")
            if stated is None and config.data != defaults.data:
                return
        data = recorded_data(self._checkpoint)
        named = stated.get("class_path") if isinstance(stated, Namespace) else None
        if named is None and names_class(given, "data"):
            named = defaults.data.class_path  # restated default class: stated_values drops it
        if named is not None and (data is None or named != data["class_path"]):
            return  # other data chosen
        if data is None:
            raise ConfigError(
                f"--ckpt_path {config.ckpt_path}: the checkpoint does not record the data it "
                f"was trained with (written by plain Lightning or an older {PROG}); pass that "
                "run's --data (e.g. --data my_data.MyDataModule) or its --config")
        class_path = data["class_path"]
        name = class_path.rpartition(".")[2]
        try:
            recorded = with_values(self.parser, self.config, f"{subcommand}.data", data)
        except (SystemExit, ValueError, TypeError) as error:
            raise ConfigError(
                f"--ckpt_path: the data it was trained with ({class_path}) cannot be set up "
                f"here ({error}); pass the run's --config or --data again") from error
        restored = recorded
        if isinstance(stated, Namespace):
            try:
                restored = with_values(self.parser, recorded, f"{subcommand}.data", stated)
            except (SystemExit, ValueError, TypeError) as error:
                raise ConfigError(
                    f"--ckpt_path: the data settings given here do not apply to the data the "
                    f"checkpoint was trained with, {name} ({error}); to use other data, name "
                    "its class with --data") from error
        if restored[subcommand].data == config.data:
            return  # the data as given: nothing to say
        self.config = restored
        if rank_zero_only.rank != 0:  # every DDP process parses the command line
            return
        keys = [key for key in (stated.keys() if isinstance(stated, Namespace) else [])
                if key != "class_path"]
        replaced = replaced_settings("data", keys, restored[subcommand].data,
                                     recorded[subcommand].data)
        if replaced:
            print(f"{PROG} {subcommand}: data as in the checkpoint's run: {name}, with the data "
                  f"settings given here: {'; '.join(replaced)}", file=sys.stderr)
        else:
            print(f"{PROG} {subcommand}: data as in the checkpoint's run: {name} (pass --config "
                  "or --data to use other data)", file=sys.stderr)

    def _check_checkpoint(self, subcommand: str) -> None:
        """Fail now, in one line, if --ckpt_path is not a checkpoint this run can use."""
        path = self._get(self.config, "ckpt_path")
        if str(path) == "best":
            raise ConfigError(
                "--ckpt_path best: a new run has no best checkpoint (`best` means the best of "
                "this run's own training); pass the file, e.g. the best checkpoint that "
                "`exodus-lightning fit` printed"
            )
        checkpoint, self._checkpoint = self._checkpoint, None  # freed before the run
        if str(path) == "last":
            path = last_checkpoint(self.trainer, subcommand)
            checkpoint = load_checkpoint_file(path, self._get(self.config, "weights_only"))
        if checkpoint is not None:
            check_checkpoint_contents(path, checkpoint, self.model, resuming=subcommand == "fit")
            if subcommand == "fit":
                self._continue_in_checkpoint_folder(path, checkpoint)

    def _continue_in_checkpoint_folder(self, path: str | os.PathLike,
                                       checkpoint: dict[str, Any]) -> None:
        """Let a resumed fit keep its checkpoints in the folder of the checkpoint it resumes.

        Lightning's ModelCheckpoint restores its best score and kept files only when it saves
        into the folder it saved them in (load_state_dict compares the dirpaths as strings).
        A new run's default folder is new (the logger's next version, a new W&B run id), so the
        best score was dropped and the resumed run's first epoch became "best" whatever its
        score. A ModelCheckpoint without a dirpath continues in its recorded folder when the
        checkpoint file lies in it; one whose dirpath names the recorded folder gets it spelled
        as recorded (a relative path stays relative)."""
        states = checkpoint.get("callbacks") or {}
        folder = Path(path).resolve().parent
        continued = []
        for callback in self.trainer.checkpoint_callbacks:
            if not isinstance(callback, ModelCheckpoint):
                continue
            state = states.get(callback.state_key)
            recorded = state.get("dirpath") if isinstance(state, dict) else None
            if not isinstance(recorded, str) or "://" in recorded:
                continue
            if callback.dirpath is None:
                same = Path(recorded).resolve() == folder
            else:
                same = Path(recorded).resolve() == Path(callback.dirpath).resolve()
            if same and callback.dirpath != recorded:
                callback.dirpath = recorded
                continued.append(recorded)
        for recorded in dict.fromkeys(continued):
            # The run it resumes wrote that folder: Lightning's "exists and is not empty".
            warnings.filterwarnings(
                "ignore", message=re.escape(f"Checkpoint directory {recorded} exists and is not "
                                            "empty."))
            if rank_zero_only.rank == 0:  # every DDP process parses the command line
                print(f"{PROG} fit: checkpoints continue in {recorded}, the folder of the "
                      "checkpoint it resumes (its best so far is kept)", file=sys.stderr)

    def _check_evaluated_model(self, subcommand: str) -> None:
        """A usable checkpoint, or a warning that the model is untrained."""
        if self._get(self.config, "ckpt_path") is not None:
            self._check_checkpoint(subcommand)
            return
        doing = "predicts with" if subcommand == "predict" else "scores"
        latest = latest_checkpoint(self.trainer)
        example = (
            f", e.g. --ckpt_path {latest}"
            if latest
            else (" (the best checkpoint that `exodus-lightning fit` printed)")
        )
        warnings.warn(
            f"{subcommand} without --ckpt_path {doing} the model as initialised, untrained. "
            f"Pass the checkpoint to evaluate{example}.",
            CLIWarning,
            stacklevel=2,
        )


def with_values(parser: LightningArgumentParser, config: Namespace, key: str,
                value: Namespace | dict[str, Any]) -> Namespace:
    """`config` with `value` parsed over its setting `key` (e.g. "fit.model"): the arguments of
    a class that `value` does not name are those of the class in `config`; a class that `value`
    switches to starts from its own defaults (jsonargparse would keep the values both classes
    share)."""
    config = config.clone()
    if isinstance(value, Namespace):
        value = value.clone()
        for inner, given in [("", value), *value.items(branches=True)]:
            full_key = f"{key}.{inner}" if inner else key
            current = config.get(full_key) if full_key in config else None
            if not (isinstance(given, Namespace) and isinstance(current, Namespace)
                    and isinstance(current.get("class_path"), str)):
                continue
            if given.get("class_path") is None:
                given["class_path"] = current.class_path
            elif given.class_path != current.class_path:
                config[full_key] = None
        value = value.as_dict()
    elif value.get("class_path") != (config.get(key) or {}).get("class_path"):
        config[key] = None
    for part in reversed(key.split(".")):
        value = {part: value}
    return parser.parse_object(value, config)


def same_value(stated: Any, linked: Any) -> bool:
    """Whether a stated setting equals the data's value (a list equals a tuple, as input_shape
    [20] and the data's (20,))."""
    def plain(value: Any) -> Any:
        return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value

    return plain(stated) == plain(linked)


def recorded_data(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The data a checkpoint was trained with, {"class_path", "init_args"}: the CLI's record
    (DATA_RECORD_KEY), else the hyperparameters a DataModule saved itself (checkpoints written
    before the record; LightningCLI adds "_class_path" to them); None if it holds neither."""
    record = checkpoint.get(DATA_RECORD_KEY)
    if isinstance(record, dict) and isinstance(record.get("class_path"), str):
        return {"class_path": record["class_path"],
                "init_args": dict(record.get("init_args") or {})}
    saved = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    class_path = saved.pop("_class_path", None)
    saved.pop("_instantiator", None)
    if not isinstance(class_path, str):
        return None
    return {"class_path": class_path, "init_args": saved}


def format_value(value: Any) -> str:
    """A config value as typed on the command line (null, true, [1, 2], 0.5)."""
    if isinstance(value, Namespace):
        value = value.as_dict()
    if isinstance(value, tuple):  # e.g. a DataModule's input_shape
        value = list(value)
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix(
        "\n...").strip()


def is_special_checkpoint_path(path: str | os.PathLike) -> bool:
    """A remote file, or a keyword that Lightning resolves (best, last, hpc, registry...)."""
    return (
        "://" in str(path)
        or str(path) in ("best", "last")
        or str(path).startswith(LIGHTNING_KEYWORDS)
    )


def last_checkpoint(trainer: L.Trainer, subcommand: str = "fit") -> str:
    """The file `--ckpt_path last` resumes, found as Lightning finds it (the newest last*.ckpt in
    this run's checkpoint folder); a ConfigError saying where it looked if there is none.

    Lightning would warn and train from scratch instead, which looks like a resumed run.
    """
    candidates = {
        callback.ckpt_path
        for callback in trainer.callbacks
        if isinstance(callback, OnExceptionCheckpoint)
    }
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint):
            candidates |= callback._find_last_checkpoints(trainer)
    found = [path for path in candidates if path and Path(path).is_file()]
    if found:
        return max(found, key=os.path.getmtime)
    latest = latest_checkpoint(trainer, "last*.ckpt")
    example = f", e.g. --ckpt_path {latest}" if latest else ""
    raise ConfigError(
        f"--ckpt_path last: no last checkpoint (last*.ckpt) in {checkpoint_folder(trainer)}, "
        "this run's checkpoint folder, which is new for each run unless --checkpoint.dirpath "
        f"fixes it; pass the checkpoint file to {'resume' if subcommand == 'fit' else 'use'}"
        f"{example}"
    )


def checkpoint_folder(trainer: L.Trainer) -> str:
    """Where this run's ModelCheckpoint saves (Lightning's rule: its dirpath, else the first
    logger's save_dir/name/version/checkpoints, else default_root_dir/checkpoints)."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.dirpath is not None:
        return str(callback.dirpath)
    if not trainer.loggers:
        return str(Path(trainer.default_root_dir) / "checkpoints")
    logger = trainer.loggers[0]
    version = logger.version
    if version is None:
        version = "<this run's id>"  # a W&B run gets its id when it starts
    elif not isinstance(version, str):
        version = f"version_{version}"
    return str(
        Path(logger.save_dir or trainer.default_root_dir)
        / str(logger.name)
        / version
        / "checkpoints"
    )


def latest_checkpoint(trainer: L.Trainer, pattern: str = "*.ckpt") -> str | None:
    """The newest file matching `pattern` in a checkpoints folder under the logger's save_dir
    (or the default root dir), if any."""
    logger = trainer.logger
    root = Path(getattr(logger, "save_dir", None) or trainer.default_root_dir)
    found = sorted(root.glob(f"**/checkpoints/{pattern}"), key=lambda p: p.stat().st_mtime)
    return str(found[-1]) if found else None


def explain_trainer_error(error: Exception, trainer_config: Any) -> str:
    """Lightning's message about an unusable trainer setting, and the change that fixes it."""
    message = str(error).strip()
    accelerator = str(getattr(trainer_config, "accelerator", None) or "")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        return (
            f"--trainer.accelerator {accelerator}: no CUDA GPU is visible here ({message}). "
            "To run on CPU processes instead, e.g. DDP with configs/trainer/ddp.yaml: "
            "--trainer.accelerator cpu --trainer.devices 2"
        )
    if "CPUAccelerator" in message and "devices" in message:
        return (
            f"--trainer.devices: {message} On CPU, give the number of processes, e.g. "
            "--trainer.devices 2"
        )
    return message


def _root_cause(error: BaseException) -> BaseException:
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    return error


def config_error_from(error: Exception, config: Any) -> Exception:
    """A ConfigError naming the config section whose class rejected its arguments, when one of
    our classes did (their messages say what to change); otherwise the error itself, so that a
    bug in user code keeps its traceback."""
    if isinstance(error, ConfigError):
        return error
    root = _root_cause(error)
    if isinstance(root, ConfigError):  # raised inside jsonargparse (a link's compute_fn)
        return root
    frames = traceback.extract_tb(root.__traceback__)
    package = str(Path(exodus_lightning.__file__).parent)
    if not frames or not frames[-1].filename.startswith(package):
        return error
    class_name = None
    for frame_info in inspect.getinnerframes(root.__traceback__):
        instance = frame_info.frame.f_locals.get("self")
        if frame_info.function == "__init__" and instance is not None:
            class_name = type(instance).__name__
            break  # the outermost constructor: the class the config names
    for name, value in config.items():
        if name.endswith(".class_path") and str(value).rsplit(".", 1)[-1] == class_name:
            return ConfigError(f"--{name.removesuffix('.class_path')} ({value}): {root}")
    for key, callback_class in CALLBACK_GROUPS.items():
        if callback_class.__name__ == class_name:
            return ConfigError(f"--{key}: {root}")
    return ConfigError(str(root))


def warm_up_extension() -> None:
    """Build/load the compiled kernels now, before any DDP rank is launched.

    Under `strategy=ddp` Lightning starts the other ranks when fit() begins, so they find the
    build finished; ranks started together (torchrun, srun) are serialised by the build's lock.
    A failed build is not fatal here: backend="auto" falls back to the reference with a warning.
    """
    ops.try_build_and_load("cpu")
    if torch.cuda.is_available():
        ops.try_build_and_load("cuda")


def use_test_split_for_predict(datamodule: L.LightningDataModule | None) -> None:
    """`predict` on a DataModule without predict_dataloader() predicts the test split."""
    if datamodule is None or type(datamodule).predict_dataloader is not (
        L.LightningDataModule.predict_dataloader
    ):
        return
    datamodule.setup("test")
    datamodule.predict_dataloader = datamodule.test_dataloader


class _DropLitLoggerTip(logging.Filter):
    """Lightning advertises its cloud logger on every run: not actionable for our users."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def _format_our_warnings(previous: Any) -> Any:
    def format_warning(message, category, filename, lineno, line=None) -> str:
        if category.__module__.startswith("exodus_lightning"):
            return f"warning: {message}\n"  # ours say what to change; no source line needed
        return previous(message, category, filename, lineno, line)

    format_warning.exodus = True
    return format_warning


def replaced_settings(section: str, keys: Iterable[str], used: Namespace,
                      recorded: Namespace) -> list[str]:
    """`--section.key VALUE (the checkpoint's: VALUE)` for each of `keys` whose value in `used`
    differs from the checkpoint's record: the settings given over a checkpoint's, named in one
    line by _apply_stated_model and _restore_data_from_checkpoint."""
    return [f"--{section}.{key} {format_value(used.get(key))} (the checkpoint's: "
            f"{format_value(recorded.get(key))})"
            for key in keys if used.get(key) != recorded.get(key)]


def quiet_library_noise() -> None:
    """Silence library messages that are not actionable for our users; keep the rest.

    Called by the CLI (it changes process-wide warning filters, the warning format of our own
    warnings, and a Lightning logger's filter): a pytree deprecation inside Lightning, the
    litlogger tip. W&B's "anonymous" warning is avoided in exodus_lightning.loggers.WandbLogger,
    "No seed found" by seeding 0. Lightning's "The dirpath has changed" stays: a resumed fit
    continues in its checkpoint's folder (ExodusCLI._continue_in_checkpoint_folder), so it says
    that the best checkpoint restarts in another folder.
    """
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropLitLoggerTip) for f in rank_zero.filters):
        rank_zero.addFilter(_DropLitLoggerTip())
    if not getattr(warnings.formatwarning, "exodus", False):
        warnings.formatwarning = _format_our_warnings(warnings.formatwarning)


def build_cli(
    args: list[str] | None = None, run: bool = True, cli_class: type[ExodusCLI] = ExodusCLI
) -> ExodusCLI:
    """Parse `args` (default: sys.argv), instantiate, and run the subcommand if `run`."""
    given = sys.argv[1:] if args is None else args
    # Only the parser of the subcommand the command starts with: jsonargparse reads the Trainer's
    # and every class's signature for each subcommand, ~0.3 s each, and parses all their defaults.
    named = isinstance(given, (list, tuple)) and given[:1] and str(given[0]) in SUBCOMMANDS
    chosen = [str(given[0])] if run and named else list(SUBCOMMANDS)
    # TrainingRandomState: a resumed fit draws the dropout masks of the uninterrupted run.
    trainer_defaults: dict[str, Any] = {"callbacks": [RunSummary(), TrainingRandomState()]}
    defaults = {"default_config_files": [str(DEFAULT_CONFIG_FILE)]}
    if "enable_autolog_hparams" in inspect.signature(L.Trainer).parameters:
        # The CLI logs the whole nested config itself; Lightning would add the module's and the
        # DataModule's flat hyperparameters (alpha, _instantiator, ...) beside it.
        trainer_defaults["enable_autolog_hparams"] = False
    return cli_class(
        SpikingClassifier,
        L.LightningDataModule,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_callback=SaveAndLogConfig,
        trainer_defaults=trainer_defaults,
        # 0 is what Lightning picks anyway, without warning "No seed found".
        seed_everything_default=0,
        parser_class=ExodusArgumentParser,
        parser_kwargs={
            "description": DESCRIPTION,
            # With run=False there are no subcommands: the main parser holds the settings.
            **({} if run else defaults),
            **{
                name: {"usage": USAGE, "description": SUBCOMMANDS[name], **defaults}
                for name in chosen
            },
        },
        args=args,
        run=run,
        subcommand_names=chosen,
    )


USER_ERRORS = (
    CheckpointError,
    ConfigError,
    DataError,
    ExtensionBuildError,
    NonFiniteError,
    ParameterRangeError,
)


def put_working_directory_on_path() -> None:
    """Let class paths name modules in the current folder (my_nets.TwoLayerSNN), as under
    `python -m exodus_lightning`; a console script's sys.path does not hold it."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        # Last, so a file in the current folder cannot shadow an installed package.
        sys.path.append(cwd)


def main() -> None:
    """Entry point of `exodus-lightning` and `python -m exodus_lightning`.

    Mistakes in the data or settings end with one message and exit status 1, no traceback.
    """
    put_working_directory_on_path()
    if not sys.argv[1:]:
        # jsonargparse's own message would list the Trainer subcommands only.
        print(f"{PROG}: error: give a subcommand: {', '.join(SUBCOMMANDS)}, export or prepare "
              f"(e.g. `{PROG} fit`; `{PROG} --help` says more)", file=sys.stderr)
        sys.exit(2)
    if sys.argv[1:2] == ["prepare"]:
        # Not a Trainer subcommand: it only builds the DataModule and writes its samples.
        from exodus_lightning.prepare import main as prepare_main

        prepare_main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["export"]:
        # Not a Trainer subcommand: it only reads a checkpoint and writes a file.
        from exodus_lightning.export import main as export_main

        export_main(sys.argv[2:])
        return
    try:
        build_cli()
    except USER_ERRORS as error:
        subcommand = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else ""
        prog = f"{PROG} {subcommand}".strip()
        print(f"{prog}: error: {user_error_message(error)}", file=sys.stderr, flush=True)
        sys.exit(1)


def user_error_message(error: Exception) -> str:
    """The error's message; for a data error, with its fixes as this command's flags."""
    message = str(error)
    fixes = getattr(error, "fixes", {})
    if fixes:
        flags = " or ".join(f"--data.init_args.{name} {value}" for name, value in fixes.items())
        message += f"\nOn the command line: {flags}"
    return message


if __name__ == "__main__":
    main()
