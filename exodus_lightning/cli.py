"""The `exodus-lightning` command: LightningCLI over SpikingClassifier and any DataModule.

    exodus-lightning fit                                  # built-in Randman task, defaults below
    exodus-lightning fit --config configs/shd.yaml        # an experiment
    exodus-lightning fit --config configs/shd.yaml --print_config   # the resolved config
    exodus-lightning test --config configs/shd.yaml --ckpt_path best.ckpt

The data's `num_classes` and `input_shape` are linked to the model and to the network (when its
constructor takes arguments of those names), so configs never repeat them.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from exodus_lightning import ops
from exodus_lightning.callbacks import RunSummary, SpikeRasterLogger
from exodus_lightning.tasks import SpikingClassifier

CONFIG_FILE_NAME = "config.yaml"
# Among a W&B run's files, where wandb keeps its own config.yaml.
WANDB_CONFIG_FILE_NAME = "lightning_config.yaml"

# `exodus-lightning fit` with no config: the built-in task, tuned to reach >= 95 % validation
# accuracy in under a minute on 2 CPU cores (see configs/randman.yaml, which spells these out).
DEFAULTS = {
    "data": {"class_path": "exodus_lightning.data.RandmanDataModule"},
    "model.network": {
        "class_path": "exodus_lightning.models.FeedForwardSNN",
        "init_args": {
            "hidden_sizes": [128],
            "tau_mem": 10.0,
            "spike_threshold": 0.5,
            "readout": "exp_leak",
            "readout_tau_mem": 10.0,
        },
    },
    "model.optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
    "trainer.max_epochs": 10,
    "trainer.logger": {"class_path": "exodus_lightning.loggers.WandbLogger"},
    "checkpoint.monitor": "val/acc",
    "checkpoint.mode": "max",
    "checkpoint.save_last": True,
    "checkpoint.filename": "epoch={epoch}-val_acc={val/acc:.4f}",
    "checkpoint.auto_insert_metric_name": False,
}


class SaveAndLogConfig(SaveConfigCallback):
    """Saves the resolved config into the run's folder and logs it as hyperparameters.

    The folder is the W&B run's files folder (uploaded with the run) or the logger's log_dir,
    so runs never overwrite each other's config.
    """

    def __init__(self, parser: LightningArgumentParser, config, **kwargs) -> None:
        super().__init__(parser, config, save_to_log_dir=False, **kwargs)

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                path = Path(logger.experiment.dir) / WANDB_CONFIG_FILE_NAME
            else:
                path = Path(logger.log_dir or trainer.default_root_dir) / CONFIG_FILE_NAME
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, path, overwrite=True)
            logger.log_hyperparams(self.config.as_dict())
        if not trainer.loggers:
            path = Path(trainer.default_root_dir) / CONFIG_FILE_NAME
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, path, overwrite=True)


class ExodusCLI(LightningCLI):
    """LightningCLI with SpikingClassifier, any LightningDataModule (default Randman), a
    best-on-validation checkpoint (`--checkpoint.*`), spike rasters (`--spike_raster.*`) and
    an end-of-run summary."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(SpikeRasterLogger, "spike_raster")
        # On instantiation, since DataModules compute these attributes in their constructor.
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        for attribute in ("num_classes", "input_shape"):
            parser.link_arguments(
                f"data.{attribute}", f"model.network.init_args.{attribute}", apply_on="instantiate"
            )
        parser.add_argument(
            "--keep_freed_memory", type=bool, default=True,
            help="On CPU, let glibc keep freed memory for reuse (exodus_lightning.ops."
                 "keep_freed_memory): no page faults on each step's fresh tensors, at the cost "
                 "of holding the peak resident memory",
        )
        parser.set_defaults(DEFAULTS)

    def before_instantiate_classes(self) -> None:
        warm_up_extension()

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        # Once the trainer exists (it resolves the accelerator), for every subcommand and for
        # run=False alike.
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.keep_freed_memory and isinstance(self.trainer.accelerator, CPUAccelerator):
            ops.keep_freed_memory()

    def before_predict(self) -> None:
        use_test_split_for_predict(self.datamodule)


def warm_up_extension() -> None:
    """Build/load the compiled kernels now, before any DDP rank is launched.

    Under `strategy=ddp` Lightning starts the other ranks when fit() begins, so they find the
    build finished; ranks started together (torchrun, srun) are serialised by the build's lock.
    A failed build is not fatal here: backend="auto" falls back to the reference with a warning.
    """
    ops.is_available("cpu")
    if torch.cuda.is_available():
        ops.is_available("cuda")


def use_test_split_for_predict(datamodule: L.LightningDataModule | None) -> None:
    """`predict` on a DataModule without predict_dataloader() predicts the test split."""
    if datamodule is None or type(datamodule).predict_dataloader is not (
        L.LightningDataModule.predict_dataloader
    ):
        return
    datamodule.setup("test")
    datamodule.predict_dataloader = datamodule.test_dataloader


def build_cli(args: list[str] | None = None, run: bool = True) -> ExodusCLI:
    """Parse `args` (default: sys.argv), instantiate, and run the subcommand if `run`."""
    return ExodusCLI(
        SpikingClassifier,
        L.LightningDataModule,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_callback=SaveAndLogConfig,
        trainer_defaults={"callbacks": [RunSummary()]},
        args=args,
        run=run,
    )


def main() -> None:
    """Entry point of `exodus-lightning` and `python -m exodus_lightning`."""
    build_cli()


if __name__ == "__main__":
    main()
