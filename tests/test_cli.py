"""The `exodus-lightning` command: every config, print_config, plug-ins, resume, DDP, W&B, errors.

Runs in-process through `build_cli(args)` (fast), except where a real process is the point
(the console script, DDP, which relaunches the command line). W&B is always offline and every
file goes under tmp_path.
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

import exodus_lightning
from exodus_lightning import ops
from exodus_lightning.callbacks import LastCheckpoint, predictions_from_csv
from exodus_lightning.checkpoint_file import CheckpointWarning
from exodus_lightning.cli import DEFAULT_CONFIG_FILE, CLIWarning, ConfigError, build_cli
from exodus_lightning.cli import main as cli_main
from exodus_lightning.data import fabricate
from exodus_lightning.tasks import SpikingClassifier
from tests.wandb_records import (
    child_environment,
    finished_run_file,
    logged_config,
    logged_history,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
# randman: the default, no config
EXPERIMENTS = ["randman", "nmnist", "dvs_gesture", "shd", "ssc", "shd_delays", "ssc_delays",
               "shd_adlif", "ssc_adlif"]
NUM_CLASSES = {"randman": 10, "nmnist": 10, "dvs_gesture": 11, "shd": 20, "ssc": 35,
               "shd_delays": 20, "ssc_delays": 35, "shd_adlif": 20, "ssc_adlif": 35}
SMALL_RANDMAN = [
    "--data.init_args.num_train_samples=256",
    "--data.init_args.num_val_samples=128",
    "--data.init_args.num_test_samples=128",
]


@pytest.fixture(scope="module")
def fabricated_root(tmp_path_factory) -> Path:
    """All four recorded datasets, tiny, in their real on-disk layouts."""
    root = tmp_path_factory.mktemp("datasets")
    fabricate.write_nmnist(root, num_train_per_class=2, num_test_per_class=1, num_events=100)
    fabricate.write_dvs_gesture(
        root, num_train_users=1, num_test_users=1, lightings=("led",), num_events=200
    )
    fabricate.write_shd(root, num_train=20, num_test=20, spikes_per_sample=100)
    fabricate.write_ssc(root, num_train=35, num_valid=35, num_test=35, spikes_per_sample=100)
    return root


def config_args(experiment: str) -> list[str]:
    return [] if experiment == "randman" else ["--config", str(CONFIGS / f"{experiment}.yaml")]


def data_args(experiment: str, root: Path) -> list[str]:
    if experiment == "randman":
        return SMALL_RANDMAN
    return [
        f"--data.init_args.data_dir={root}",
        "--data.init_args.download=false",
        "--data.init_args.cache_dir=null",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=2",
    ]


def last_path(trainer) -> str:
    """The last.ckpt that the CLI's LastCheckpoint wrote."""
    (callback,) = [c for c in trainer.callbacks if isinstance(c, LastCheckpoint)]
    return callback.path


def run_script(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = child_environment(
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    )
    return subprocess.run(
        [sys.executable, "-m", "exodus_lightning", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_config_fits_validates_tests_and_predicts(experiment, workdir, fabricated_root):
    common = [
        *config_args(experiment),
        "--trainer.fast_dev_run=1",
        "--trainer.accelerator=cpu",
        *data_args(experiment, fabricated_root),
    ]
    num_classes = NUM_CLASSES[experiment]

    cli = build_cli(["fit", *common])
    assert cli.trainer.state.finished
    assert cli.model.num_classes == num_classes  # linked from the data
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])

    cli = build_cli(["validate", *common])
    assert 0 <= cli.trainer.callback_metrics["val/acc"] <= 1

    cli = build_cli(["test", *common])
    assert 0 <= cli.trainer.callback_metrics["test/acc"] <= 1
    matrix = cli.model.test_confusion_matrix
    assert matrix.shape == (num_classes, num_classes) and matrix.sum() > 0

    cli = build_cli(["predict", *common])
    predictions = torch.cat([batch["predicted"] for batch in cli.trainer.predict_loop.predictions])
    assert predictions.dtype == torch.int64 and len(predictions) > 0
    assert 0 <= predictions.min() and predictions.max() < num_classes


def printed_config(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_cli([*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return capsys.readouterr().out


@pytest.mark.parametrize("experiment", ["shd", "dvs_gesture"])
def test_print_config_round_trips(experiment, workdir, capsys):
    first = printed_config(["fit", "--config", str(CONFIGS / f"{experiment}.yaml")], capsys)
    saved = workdir / "printed.yaml"
    saved.write_text(first)
    assert printed_config(["fit", "--config", str(saved)], capsys) == first
    config = yaml.safe_load(first)
    assert config["model"]["network"]["init_args"]["gradient"] == "exodus"


def leaves(config: dict, prefix: tuple = ()) -> dict[tuple, object]:
    """{("model", "network", "init_args", "tau_mem"): 20.0, ...} for a nested config."""
    found = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            found.update(leaves(value, (*prefix, key)))
        else:
            found[(*prefix, key)] = value
    return found


@pytest.mark.parametrize("subcommand", ["fit", "validate", "test", "predict"])
def test_every_subcommand_starts_from_the_packaged_default_config(subcommand, workdir, capsys):
    assert DEFAULT_CONFIG_FILE.parent == Path(exodus_lightning.__file__).parent
    defaults = leaves(yaml.safe_load(DEFAULT_CONFIG_FILE.read_text()))
    assert ("checkpoint", "monitor") in defaults and ("data", "class_path") in defaults
    printed = leaves(yaml.safe_load(printed_config([subcommand], capsys)))
    for key, value in defaults.items():
        assert printed[key] == value, key


def test_without_a_subcommand_the_command_starts_from_the_default_config_too(workdir):
    cli = build_cli([], run=False)  # as in Python: no subcommands, the settings at the top
    assert type(cli.datamodule).__name__ == "RandmanDataModule"
    linear = [m for m in cli.model.network.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linear] == [128, 10]  # one hidden layer, as in the file
    assert cli.trainer.checkpoint_callback.monitor == "val/acc"


def test_a_config_and_the_command_line_override_the_default_config(workdir, capsys):
    mine = workdir / "mine.yaml"
    mine.write_text(
        "checkpoint:\n  monitor: val/loss\n  mode: min\n"
        "model:\n  network:\n    init_args:\n      tau_mem: 5.0\n"
    )
    printed = yaml.safe_load(
        printed_config(["fit", "--config", str(mine), "--checkpoint.save_last=false"], capsys)
    )
    assert printed["checkpoint"]["monitor"] == "val/loss" and printed["checkpoint"]["mode"] == "min"
    assert printed["checkpoint"]["save_last"] is False
    # The rest of the defaults stay: the network's other arguments, the checkpoint file name.
    network = printed["model"]["network"]
    assert network["class_path"] == "exodus_lightning.models.FeedForwardSNN"
    assert network["init_args"]["tau_mem"] == 5.0 and network["init_args"]["hidden_sizes"] == [128]
    assert printed["checkpoint"]["filename"] == "epoch={epoch}-val_acc={val/acc:.4f}"


def without(config: dict, key: tuple) -> dict:
    """A copy of `config` without the leaf `key` (and the sections that it leaves empty)."""
    if len(key) == 1:
        return {k: v for k, v in config.items() if k != key[0]}
    inner = without(config[key[0]], key[1:])
    return {k: v for k, v in config.items() if k != key[0]} | ({key[0]: inner} if inner else {})


CONFIG_FILES = sorted(CONFIGS.glob("*.yaml")) + sorted((CONFIGS / "experiments").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIG_FILES, ids=[p.stem for p in CONFIG_FILES])
def test_configs_state_only_what_differs_from_the_defaults(path, workdir, capsys):
    """Each value of a config changes `fit --print_config`, except class paths (they name what
    the experiment uses): a class a config switches to starts from its own defaults, so none
    needs restating."""
    config = yaml.safe_load(path.read_text())
    reference = yaml.safe_load(printed_config(["fit", "--config", str(path)], capsys))
    trial = workdir / "trial.yaml"
    for key in leaves(config):
        if key[-1] == "class_path":
            continue
        trial.write_text(yaml.safe_dump(without(config, key)))
        assert yaml.safe_load(printed_config(["fit", "--config", str(trial)], capsys)) != (
            reference
        ), f"{path.name}: {'.'.join(key)} only restates the default"


def test_fragments_compose_with_an_experiment(workdir, capsys):
    printed = printed_config(
        [
            "fit",
            "--config",
            str(CONFIGS / "shd.yaml"),
            "--config",
            str(CONFIGS / "trainer" / "ddp.yaml"),
            "--config",
            str(CONFIGS / "logger" / "csv.yaml"),
            "--trainer.num_nodes=4",
        ],
        capsys,
    )
    trainer = yaml.safe_load(printed)["trainer"]
    assert trainer["strategy"] == "ddp" and trainer["num_nodes"] == 4
    assert trainer["sync_batchnorm"] is True
    assert trainer["logger"]["class_path"].endswith("CSVLogger")


def test_slurm_script_matches_its_trainer_settings():
    script = (CONFIGS / "slurm" / "train.sbatch").read_text()
    tasks = re.search(r"--ntasks-per-node=(\d+)", script).group(1)
    gpus = re.search(r"--gres=gpu:(\d+)", script).group(1)
    nodes = re.search(r"--nodes=(\d+)", script).group(1)
    assert re.search(rf"--trainer.devices {tasks}\b", script) and tasks == gpus
    assert re.search(rf"--trainer.num_nodes {nodes}\b", script)


def test_user_network_and_datamodule_by_class_path(workdir):
    cli = build_cli(
        [
            "fit",
            "--trainer.fast_dev_run=1",
            "--trainer.accelerator=cpu",
            "--model.network=tests.example_network.RecurrentSNN",
            "--model.network.init_args.hidden_size=12",
            "--data=tests.example_datamodule.BurstDataModule",
            "--data.init_args.num_classes=3",
            "--data.init_args.num_channels=5",
        ]
    )
    network = cli.model.network
    assert type(network).__name__ == "RecurrentSNN"
    # input_shape and num_classes were linked from the user's DataModule.
    assert network.encoder.in_features == 5 and network.decoder.out_features == 3
    assert network.encoder.out_features == 12
    assert cli.model.spiking_layer_names == ["lif"]
    assert {"spike_rate/train/lif", "spike_rate/val/lif"} <= set(cli.trainer.callback_metrics)


def resume_args(workdir: Path, max_epochs: int, batch_size: int) -> list[str]:
    return [
        "fit",
        *SMALL_RANDMAN,
        f"--data.init_args.batch_size={batch_size}",
        "--trainer.accelerator=cpu",
        f"--trainer.max_epochs={max_epochs}",
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.save_dir={workdir}",
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "batch_size",
    [
        256,  # one batch per epoch: the shuffling order cannot matter
        64,  # several: the shuffling order of the resumed epoch must be the uninterrupted one
    ],
)
def test_resume_from_checkpoint_continues_exactly(batch_size, workdir):
    straight = build_cli(resume_args(workdir, 3, batch_size))
    first = build_cli(resume_args(workdir, 2, batch_size))
    last = last_path(first.trainer)
    assert last.endswith("last.ckpt")
    resumed = build_cli([*resume_args(workdir, 3, batch_size), f"--ckpt_path={last}"])
    assert resumed.trainer.global_step == straight.trainer.global_step == 3 * 256 // batch_size
    assert resumed.trainer.current_epoch == straight.trainer.current_epoch == 3
    # The best checkpoint is chosen on validation accuracy.
    best = resumed.trainer.checkpoint_callback
    assert best.monitor == "val/acc" and best.mode == "max" and Path(best.best_model_path).is_file()
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values()
    ):
        torch.testing.assert_close(a, b, msg=name, rtol=1e-5, atol=1e-6)


def test_a_fit_with_dropout_resumes_exactly_inside_and_at_the_end_of_an_epoch(workdir):
    """Dropout 0.3: resumed from a checkpoint written inside an epoch (step 6 of 4-step epochs)
    and from one written at an epoch's end, fit ends with the uninterrupted run's weights: the
    checkpoints hold the training steps' random-number states. A checkpoint without them (an
    older version's) still resumes, with a one-line warning."""
    from exodus_lightning.callbacks import RandomStateWarning, TrainingRandomState

    common = [*resume_args(workdir, 2, 64)[1:], "--model.network.init_args.dropout=0.3",
              "--trainer.limit_val_batches=1"]
    saves = ["--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
             f"--trainer.callbacks.dirpath={workdir / 'steps'}",
             "--trainer.callbacks.every_n_train_steps=1", "--trainer.callbacks.save_top_k=-1",
             "--trainer.callbacks.filename={step}",
             "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
             f"--trainer.callbacks.dirpath={workdir / 'epochs'}",
             "--trainer.callbacks.every_n_epochs=1", "--trainer.callbacks.save_top_k=-1",
             "--trainer.callbacks.filename={epoch}"]
    straight = build_cli(["fit", *common, *saves])
    assert any(isinstance(m, torch.nn.Dropout) for m in straight.model.modules())
    assert straight.trainer.global_step == 8
    weights = straight.model.state_dict()
    inside, at_end = workdir / "steps" / "step=6.ckpt", workdir / "epochs" / "epoch=0.ckpt"
    assert torch.load(at_end, weights_only=True)["global_step"] == 4
    for checkpoint in (inside, at_end):
        resumed = build_cli(["fit", *common, f"--ckpt_path={checkpoint}"])
        assert resumed.trainer.global_step == 8
        for name, value in resumed.model.state_dict().items():
            assert torch.equal(value, weights[name]), (checkpoint.name, name)

    saved = torch.load(at_end, weights_only=True)
    del saved["callbacks"][TrainingRandomState().state_key]
    older = workdir / "older.ckpt"
    torch.save(saved, older)
    with pytest.warns(RandomStateWarning) as caught:
        resumed = build_cli(["fit", *common, f"--ckpt_path={older}"])
    assert resumed.trainer.global_step == 8
    (message,) = [str(w.message) for w in caught if w.category is RandomStateWarning]
    assert "\n" not in message and "draws its dropout masks anew" in message


@pytest.mark.slow
def test_a_fit_with_dropout_resumes_exactly_under_ddp(workdir):
    """2 DDP processes (CPU), dropout 0.3, resumed inside an epoch: the uninterrupted run's
    weights. The checkpoint holds rank 0's random states; every rank restores them, which are
    its own since all ranks are seeded alike and draw alike."""
    common = [*resume_args(workdir, 2, 32)[1:], "--model.network.init_args.dropout=0.3",
              "--trainer.limit_val_batches=1", "--trainer.strategy=ddp", "--trainer.devices=2"]
    saves = ["--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
             f"--trainer.callbacks.dirpath={workdir / 'steps'}",
             "--trainer.callbacks.every_n_train_steps=1", "--trainer.callbacks.save_top_k=-1",
             "--trainer.callbacks.filename={step}"]
    straight = run_script(["fit", *common, *saves], workdir, timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    # 256 samples in batches of 32 on 2 processes: 4 steps per epoch; step 6 is inside epoch 1.
    resumed = run_script(["fit", *common, f"--ckpt_path={workdir / 'steps' / 'step=6.ckpt'}"],
                         workdir, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (first,), (second,) = (list(workdir.glob(f"lightning_logs/version_{v}/checkpoints/last.ckpt"))
                           for v in (0, 1))
    first, second = (torch.load(path, weights_only=True) for path in (first, second))
    assert first["global_step"] == second["global_step"] == 8
    for name, value in first["state_dict"].items():
        assert torch.equal(value, second["state_dict"][name]), name


def trained_epochs(trainer) -> list[int]:
    """The epochs a run with a CSVLogger validated, from its metrics.csv."""
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as rows:
        return sorted({int(row["epoch"]) for row in csv.DictReader(rows) if row.get("val/acc")})


def test_last_checkpoint_is_the_last_epoch_when_the_metric_stops_improving(workdir, capsys):
    """lr 0: val/acc never improves after epoch 0, so the best checkpoint stays at epoch 0;
    last.ckpt must still hold epoch 2 (Lightning 2.6's save_last copied only the best epoch)."""
    frozen = "--model.optimizer.init_args.lr=0"
    # A checkpoint callback of the user's own, in another folder, leaves last.ckpt where it is.
    steps = ["--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
             f"--trainer.callbacks.dirpath={workdir / 'steps'}",
             "--trainer.callbacks.every_n_train_steps=5"]
    first = build_cli([*resume_args(workdir, 3, 64), frozen, *steps])
    printed = capsys.readouterr().out
    assert first.trainer.global_step == 12  # 4 batches per epoch
    (best,) = [c for c in first.trainer.callbacks if getattr(c, "monitor", None) == "val/acc"]
    assert torch.load(best.best_model_path, weights_only=True)["epoch"] == 0
    last = re.search(r"last checkpoint: (\S+)", printed).group(1)
    assert Path(last).name == "last.ckpt" and Path(last).parent == Path(best.best_model_path).parent
    saved = torch.load(last, weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (2, 12)
    summary = json.loads((Path(first.trainer.logger.log_dir) / "summary.json").read_text())
    assert summary["fit"]["checkpoints"]["last"] == last
    assert [p.name for p in (workdir / "steps").iterdir()] == ["epoch=2-step=10.ckpt"]
    # Resumed, it trains the next epoch only.
    resumed = build_cli([*resume_args(workdir, 4, 64), frozen, f"--ckpt_path={last}"])
    assert resumed.trainer.global_step == 16
    assert trained_epochs(resumed.trainer) == [3]


# val/scripted_acc of each epoch (ScriptedAccuracy): a metric whose best epoch a test chooses.
SCRIPTED_ACC = [0.2, 0.9, 0.5, 0.4]


class ScriptedAccuracy(L.Callback):
    """Logs SCRIPTED_ACC[epoch] as val/scripted_acc at every validation epoch's end."""

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            pl_module.log("val/scripted_acc", SCRIPTED_ACC[trainer.current_epoch])


def test_a_resumed_fit_keeps_the_best_checkpoint_of_the_epochs_before_it(workdir, capsys,
                                                                         recwarn):
    """The README's resume (`fit --ckpt_path .../last.ckpt --trainer.max_epochs N`, a new run:
    its logger's folder is new): the best epoch came before the resume point, and stays the best
    checkpoint, the best in summary.json and the network NIRExport writes. (Lightning restores
    a ModelCheckpoint's best score only in the folder it was saved in; the resumed run took its
    first epoch as the best.)"""
    pytest.importorskip("nir")
    scripted = ["--trainer.callbacks+=tests.test_cli.ScriptedAccuracy",
                "--trainer.callbacks+=exodus_lightning.callbacks.NIRExport",
                "--checkpoint.monitor=val/scripted_acc", "--checkpoint.filename=epoch={epoch}",
                "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"]
    first = build_cli([*resume_args(workdir, 3, 64), *scripted])
    best = first.trainer.checkpoint_callback
    assert Path(best.best_model_path).name == "epoch=1.ckpt"
    folder = Path(best.best_model_path).parent
    capsys.readouterr()
    resumed = build_cli([*resume_args(workdir, 4, 64), *scripted,
                         f"--ckpt_path={last_path(first.trainer)}"])
    output = capsys.readouterr()
    assert resumed.trainer.current_epoch == 4
    assert Path(resumed.trainer.logger.log_dir) != Path(first.trainer.logger.log_dir)  # new run
    best = resumed.trainer.checkpoint_callback
    assert best.best_model_path == first.trainer.checkpoint_callback.best_model_path
    assert float(best.best_model_score) == pytest.approx(0.9)
    assert f"best checkpoint: {best.best_model_path} (val/scripted_acc=0.9000)" in output.out
    # The folder holds what the uninterrupted run's would: the best epoch and last.ckpt.
    assert sorted(p.name for p in folder.glob("*.ckpt")) == ["epoch=1.ckpt", "last.ckpt"]
    assert torch.load(folder / "last.ckpt", weights_only=True)["epoch"] == 3
    assert f"checkpoints continue in {best.dirpath}" in output.err
    # Nothing to warn about: Lightning's "dirpath has changed", "exists and is not empty".
    assert not [w for w in recwarn if "dirpath" in str(w.message) or "not empty" in str(w.message)]
    (nir_export,) = [c for c in resumed.trainer.callbacks if type(c).__name__ == "NIRExport"]
    assert nir_export.path == folder / "model.nir" and nir_export.path.is_file()
    # summary.json: the best of every validation metric over the whole training.
    logged = []
    for cli in (first, resumed):
        with open(Path(cli.trainer.logger.log_dir) / "metrics.csv") as rows:
            logged += [row for row in csv.DictReader(rows) if row.get("val/acc")]
    summary = json.loads((Path(resumed.trainer.logger.log_dir) / "summary.json").read_text())
    assert summary["fit"]["best"]["val/scripted_acc"] == {"value": pytest.approx(0.9), "epoch": 1}
    top = max(logged, key=lambda row: float(row["val/acc"]))
    assert summary["fit"]["best"]["val/acc"] == {"value": pytest.approx(float(top["val/acc"])),
                                                 "epoch": int(top["epoch"])}


@pytest.mark.slow
def test_wandb_offline_run_records_metrics_config_and_rasters(workdir):
    cli = build_cli(
        [
            "fit",
            *SMALL_RANDMAN,
            "--trainer.max_epochs=2",
            "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false",
            "--spike_raster.every_n_epochs=1",
            # Absolute: wandb's service process keeps the working folder of the first run of this
            # process and resolves relative run folders against it.
            f"--trainer.logger.init_args.save_dir={workdir / 'wandb_logs'}",
        ]
    )
    run_dir = Path(cli.trainer.logger.experiment.dir).parent
    cli.trainer.logger.experiment.finish()
    assert run_dir.name.startswith("offline-run-")
    run_file = finished_run_file(run_dir)
    history = logged_history(run_file)
    val_acc = [row["val/acc"] for row in history if "val/acc" in row]
    assert len(val_acc) == 2 and all(0 <= a <= 1 for a in val_acc)
    assert val_acc[-1] == pytest.approx(float(cli.trainer.callback_metrics["val/acc"]))
    # One key per stage: the training and the validation rate of an epoch are told apart.
    assert all(any(f"spike_rate/{stage}/layers.2" in row for row in history)
               for stage in ("train", "val"))
    assert not any("spike_rate/layers.2" in row for row in history)
    rasters = [row for row in history if "spike_raster/_type" in row]
    assert len(rasters) == 2 and rasters[0]["spike_raster/_type"] == "images/separated"
    assert len(list(run_dir.glob("files/media/images/spike_raster_*.png"))) == 2
    config = logged_config(run_file)
    assert config["model"]["network"]["class_path"] == "exodus_lightning.models.FeedForwardSNN"
    assert config["data"]["init_args"]["num_train_samples"] == 256
    saved = yaml.safe_load((run_dir / "files" / "lightning_config.yaml").read_text())
    assert saved["model"]["optimizer"]["init_args"]["lr"] == 0.01


def test_a_disabled_wandb_run_keeps_its_files_under_save_dir(workdir):
    """WANDB_MODE=disabled: wandb's own folder for it is under the system's /tmp. A process of
    its own: wandb keeps the mode of the first run of a process."""
    result = subprocess.run(
        [sys.executable, "-m", "exodus_lightning", "fit", *SMALL_RANDMAN,
         "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
         "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false"],
        cwd=workdir, capture_output=True, text=True, timeout=300,
        env=child_environment(WANDB_MODE="disabled",
                              PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (files,) = (workdir / "logs" / "wandb").glob("disabled-run-*/files")
    summary = json.loads((files / "summary.json").read_text())
    assert "fit" in summary and (files / "lightning_config.yaml").is_file()
    assert f"summary:     logs/wandb/{files.parent.name}/files/summary.json" in result.stdout


def test_checkpoint_loads_without_passing_the_network(workdir):
    """The CLI saves the network and optimizer configs as hyperparameters, so
    load_from_checkpoint rebuilds the whole module from the file alone."""
    cli = build_cli(
        [
            "fit",
            *SMALL_RANDMAN,
            "--trainer.max_epochs=1",
            "--trainer.logger=false",
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1",
            "--model.optimizer.init_args.lr=0.003",
        ]
    )
    loaded = SpikingClassifier.load_from_checkpoint(last_path(cli.trainer))
    assert type(loaded.network) is type(cli.model.network)
    x = next(iter(cli.datamodule.val_dataloader()))[0]
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), cli.model.eval()(x), rtol=0, atol=0)
    optimizer = loaded.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["lr"] == 0.003


@pytest.mark.parametrize("flag", [[], ["--keep_freed_memory=false"]], ids=["default", "off"])
def test_cpu_runs_keep_freed_memory_unless_turned_off(flag, workdir, monkeypatch):
    calls = []
    monkeypatch.setattr(ops, "keep_freed_memory", lambda: calls.append(True))
    build_cli(
        [
            "fit",
            *SMALL_RANDMAN,
            "--trainer.fast_dev_run=1",
            "--trainer.logger=false",
            "--trainer.accelerator=cpu",
            *flag,
        ]
    )
    assert calls == ([] if flag else [True])


def test_unknown_config_key_names_the_key(workdir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_cli(["fit", "--model.network.init_args.hiden_sizes=[8]"])
    assert exit_info.value.code == 2
    assert "hiden_sizes" in capsys.readouterr().err

    bad = workdir / "bad.yaml"
    bad.write_text("model:\n  readout_los: spike_count\n")
    with pytest.raises(SystemExit):
        build_cli(["fit", "--config", str(bad)])
    assert (
        "model.readout_los: no such key in the config (did you mean model.readout_loss?)"
        in capsys.readouterr().err
    )


def test_bad_value_names_the_argument_and_the_choices(workdir, capsys):
    with pytest.raises(SystemExit):
        build_cli(["fit", "--model.readout_loss=spikes"])
    error = capsys.readouterr().err
    assert "readout_loss" in error and "spike_count" in error and "spikes" in error
    with pytest.raises(SystemExit):
        build_cli(["fit", "--model.network.init_args.gradient=exact"])
    error = capsys.readouterr().err
    assert "gradient" in error and "slayer" in error


@pytest.mark.slow
def test_console_script_and_module_entry_point(tmp_path):
    result = run_script(["--help"], tmp_path)
    assert result.returncode == 0 and "fit" in result.stdout
    script = Path(sys.executable).parent / "exodus-lightning"
    if script.exists():
        # The README's own-network path: a module in the folder the user runs in.
        (tmp_path / "script_nets.py").write_text(TWO_LAYER_SNN)
        env = child_environment(PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        result = subprocess.run(
            [str(script), "fit", "--model.network", "script_nets.TwoLayerSNN", "--print_config"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert "class_path: script_nets.TwoLayerSNN" in result.stdout


def summary_value(output: str, key: str) -> float:
    return float(re.findall(rf"^\s+{re.escape(key)}\s+([0-9.]+)$", output, re.MULTILINE)[-1])


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_syncs_metrics(workdir):
    common = [
        *SMALL_RANDMAN,
        "--data.init_args.batch_size=32",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.save_dir={workdir}",
    ]
    # The GPU fragment with the two overrides its error message suggests on a CPU machine.
    ddp = [
        "--config",
        str(CONFIGS / "trainer" / "ddp.yaml"),
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
    ]
    fit = run_script(["fit", *common, *ddp, "--trainer.max_epochs=1"], workdir)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "MEMBER: 2/2" in fit.stderr  # rank 1 ran
    checkpoint = re.search(r"last checkpoint: (\S+)", fit.stdout).group(1)
    two = run_script(["validate", *common, *ddp, f"--ckpt_path={checkpoint}"], workdir)
    assert two.returncode == 0, two.stderr[-3000:]
    one = build_cli(["validate", *common, "--trainer.devices=1", f"--ckpt_path={checkpoint}"])
    # Each rank saw half of the 128 validation samples; synced, the accuracy is that of all.
    assert summary_value(two.stdout, "val/acc") == pytest.approx(
        float(one.trainer.callback_metrics["val/acc"]), abs=1e-4
    )


# --- A new user's first hour (issue 12) ------------------------------------------------------

TWO_LAYER_SNN = """
import math
from torch import nn
from exodus_lightning import nn as enn

class TwoLayerSNN(nn.Module):
    def __init__(self, input_shape, num_classes, hidden: int = 16):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(start_dim=2), nn.Linear(math.prod(input_shape), hidden),
            enn.LIF(tau_mem=10.0), nn.Linear(hidden, num_classes), enn.ExpLeak(tau_mem=10.0))

    def forward(self, x):
        return self.layers(x)
"""


def test_class_paths_resolve_in_the_current_folder_without_python_m(workdir, monkeypatch, capsys):
    """The console script's sys.path lacks the current folder (python -m adds it)."""
    (workdir / "my_cwd_nets.py").write_text(TWO_LAYER_SNN)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(workdir))])
    monkeypatch.setattr(
        sys,
        "argv",
        ["exodus-lightning", "fit", "--model.network", "my_cwd_nets.TwoLayerSNN", "--print_config"],
    )
    with pytest.raises(SystemExit) as exit_info:
        cli_main()
    assert exit_info.value.code in (0, None), capsys.readouterr().err
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["network"]["class_path"] == "my_cwd_nets.TwoLayerSNN"
    assert sys.path[-1] == str(workdir)


def one_line_error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_cli(args)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error  # one line: no usage text, no nested report
    assert error.startswith("exodus-lightning fit: error: ")
    return error


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--trainer.max_epoch", "3"],
            ["--trainer.max_epoch:", "did you mean --trainer.max_epochs"],
        ),
        (
            ["--model.network.init_args.hiden_sizes=[8]"],
            ["hiden_sizes", "did you mean --model.network.init_args.hidden_sizes?"],
        ),
        (["--trainer.max_epochs", "abc"], ["--trainer.max_epochs: expected an integer", "'abc'"]),
        (
            ["--model.optimizer.init_args.lr", "abc"],
            ["--model.optimizer.init_args.lr: expected a number", "'abc'"],
        ),
        (
            ["--model.network.init_args.tau_mem", "fast"],
            ["--model.network.init_args.tau_mem: expected a number", "'fast'"],
        ),
        (["--model.network.init_args.hidden_sizes", "128"], ["hidden_sizes: expected a list"]),
        (
            ["--model.readout_loss", "spikes"],
            ["--model.readout_loss: 'spikes' is not one of spike_count, max_membrane"],
        ),
        (["--model.network", "nowhere.Net"], ["--model.network: cannot import 'nowhere.Net'"]),
        (["--config", "missing.yaml"], ["--config: file does not exist"]),
        # Inside the DataModule's arguments: the argument's type, not the `data` Union's
        # (LightningDataModule or null).
        (
            ["--data.init_args.batch_size", "abc"],
            ["--data.init_args.batch_size: expected an integer, got 'abc'"],
        ),
        (["--data.init_args.alpha", "abc"], ["--data.init_args.alpha: expected a number, got"]),
        (
            ["--data.init_args.download", "maybe"],
            ["--data.init_args.download: expected true or false, got 'maybe'"],
        ),
        (
            ["--data", "SHDDataModule", "--data.init_args.augmentations", "5"],
            ["--data.init_args.augmentations: expected a list"],
        ),
        (
            ["--model.network.init_args.recurrent", "maybe"],
            ["--model.network.init_args.recurrent: expected true or false, got 'maybe'"],
        ),
        (
            ["--model.network.init_args.neuron", "xyz"],
            ["--model.network.init_args.neuron: 'xyz' is not one of lif, iaf, alif, adlif"],
        ),
        # Unions holding Literals: every choice (not the list cut at the first `]`).
        (
            ["--trainer.precision", "abc"],
            ["--trainer.precision: expected one of 64, 32, 16, transformer-engine, ",
             "bf16-mixed, 32-true, 64-true, bf16 or null, got 'abc'"],
        ),
        (
            ["--trainer.deterministic", "maybe"],
            ["--trainer.deterministic: expected true or false or warn or null, got 'maybe'"],
        ),
        # Inside the logger's arguments (its Union lists the class twice): the key once.
        (
            ["--trainer.logger.init_args.offline", "maybe"],
            ["--trainer.logger.init_args.offline: expected true or false or null, got 'maybe'"],
        ),
        (
            ["--trainer.logger.init_args.tags", "5"],
            ["--trainer.logger.init_args.tags: expected a list", "or null, got '5'"],
        ),
        (
            ["--model.num_classes", "10"],
            ["--model.num_classes: set from the data (its num_classes); remove it"],
        ),
    ],
    ids=[
        "abbreviation",
        "misspelt-key",
        "int",
        "optimizer-float",
        "float",
        "list",
        "choice",
        "class-path",
        "config-file",
        "data-int",
        "data-float",
        "data-bool",
        "data-list",
        "network-bool",
        "network-choice",
        "trainer-choices",
        "trainer-bool-or-choice",
        "logger-bool",
        "logger-list",
        "linked-from-data",
    ],
)
def test_command_line_mistakes_get_one_line_naming_key_and_fix(args, expected, workdir, capsys):
    error = one_line_error(["fit", *args], capsys)
    for text in expected:
        assert text in error


ORDERED_DATA = """
from typing import Literal
from tests.example_datamodule import BurstDataModule

class OrderedBursts(BurstDataModule):
    def __init__(self, order: Literal["time", "channel"] = "time", **kwargs):
        super().__init__(**kwargs)
"""


def test_a_user_datamodule_choice_names_its_choices(workdir, monkeypatch, capsys):
    (workdir / "my_ordered_data.py").write_text(ORDERED_DATA)
    monkeypatch.syspath_prepend(str(workdir))
    error = one_line_error(["fit", "--data", "my_ordered_data.OrderedBursts",
                            "--data.init_args.order", "random"], capsys)
    assert "--data.init_args.order: 'random' is not one of time, channel" in error


def test_rejected_values_name_the_setting_in_one_line(workdir, monkeypatch, capsys):
    """Constructors' own checks (values of the right type but out of range) through main()."""
    for args, expected in [
        (
            ["--data.init_args.batch_size", "0"],
            "--data (exodus_lightning.data.RandmanDataModule): batch_size=0 must be a positive",
        ),
        (
            ["--model.network.init_args.dropout", "1.5"],
            "--model.network (exodus_lightning.models.FeedForwardSNN): dropout=1.5 must lie in",
        ),
        (["--spike_check.min_rate", "-1"], "--spike_check: min_rate=-1.0 must be >= 0"),
        (["--ckpt_path", "nowhere.ckpt"], "--ckpt_path: no checkpoint file at 'nowhere.ckpt'"),
    ]:
        monkeypatch.setattr(
            sys,
            "argv",
            ["exodus-lightning", "fit", *SMALL_RANDMAN, "--trainer.logger=false", *args],
        )
        with pytest.raises(SystemExit) as exit_info:
            cli_main()
        error = capsys.readouterr().err
        assert exit_info.value.code == 1
        assert f"exodus-lightning fit: error: {expected}" in error
        assert "Traceback" not in error


def test_gpu_ddp_fragment_on_a_cpu_machine_says_what_to_change(workdir, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ConfigError, match=r"no CUDA GPU is visible") as raised:
        build_cli(["fit", "--config", str(CONFIGS / "trainer" / "ddp.yaml")])
    assert "--trainer.accelerator cpu --trainer.devices 2" in str(raised.value)


def test_help_is_short_and_names_the_tool(workdir, capsys):
    with pytest.raises(SystemExit):
        build_cli(["--help"])
    main_help = capsys.readouterr().out
    assert "Lightning Trainer command line tool" not in main_help
    assert main_help.startswith("usage: exodus-lightning") and "EXODUS" in main_help
    assert "Score a checkpoint (--ckpt_path) on the test split" in main_help
    with pytest.raises(SystemExit):
        build_cli(["fit", "--help"])
    fit_help = capsys.readouterr().out
    assert len(fit_help.splitlines()) < 600  # was 1,208
    assert fit_help.startswith("usage: exodus-lightning [options] fit [--config FILE]")
    text = " ".join(fit_help.split())
    assert "torch.nn.Linear" not in text  # every imported torch.nn class was listed
    assert (
        "built in: exodus_lightning.models.ConvSNN, exodus_lightning.models.DelaySNN, "
        "exodus_lightning.models.FeedForwardSNN; or any torch.nn.Module importable by class path"
    ) in text


def test_only_the_named_subcommand_is_built_and_a_wrong_one_lists_them_all(workdir, capsys):
    """A command that starts with its subcommand builds that parser alone (each costs ~0.3 s of
    signature reading); a misspelled one still gets jsonargparse's list of every choice."""
    cli = build_cli(["fit", *SMALL_RANDMAN, "--trainer.fast_dev_run=1"])
    assert set(cli._subcommand_parsers) == {"fit"} and cli.trainer.state.finished
    with pytest.raises(SystemExit):
        build_cli(["fitt"])
    error = " ".join(capsys.readouterr().err.split())
    assert "fitt" in error and all(name in error for name in ("fit", "validate", "test", "predict"))


@pytest.mark.parametrize(("config", "hidden_sizes"), [(None, "[128]"), ("shd", "[128, 128]")])
def test_class_help_shows_the_values_the_command_uses(config, hidden_sizes, workdir, capsys):
    """FeedForwardSNN's own default is (128, 128); `fit` uses [128], shd.yaml [128, 128]."""
    configs = ["--config", str(CONFIGS / f"{config}.yaml")] if config else []
    with pytest.raises(SystemExit):
        build_cli(["fit", *configs, "--model.network.help", "FeedForwardSNN"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(type: Sequence[int], default: {hidden_sizes})" in text
    threshold = "1.0" if config else "0.5"
    assert f"spike_threshold SPIKE_THRESHOLD (type: float, default: {threshold})" in text


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_evaluating_without_a_checkpoint_warns(subcommand, workdir):
    args = [
        subcommand,
        *SMALL_RANDMAN,
        "--trainer.logger=false",
        "--trainer.accelerator=cpu",
        "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1",
        "--trainer.limit_predict_batches=1",
    ]
    with pytest.warns(CLIWarning, match=f"{subcommand} without --ckpt_path .* untrained"):
        build_cli(args)


def test_test_with_a_checkpoint_does_not_warn(workdir, recwarn):
    fit = build_cli(
        [
            "fit",
            *SMALL_RANDMAN,
            "--trainer.max_epochs=1",
            "--trainer.logger=false",
            "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=1",
        ]
    )
    checkpoint = last_path(fit.trainer)
    with pytest.warns(CLIWarning, match=re.escape(f"--ckpt_path {checkpoint}")):
        build_cli(
            ["test", *SMALL_RANDMAN, "--trainer.logger=false", "--trainer.limit_test_batches=1"]
        )
    recwarn.clear()
    build_cli(
        [
            "test",
            *SMALL_RANDMAN,
            "--trainer.logger=false",
            f"--ckpt_path={checkpoint}",
            "--trainer.limit_test_batches=1",
        ]
    )
    assert not [w for w in recwarn if issubclass(w.category, CLIWarning)]


def test_predict_writes_a_predictions_file_and_prints_accuracy(workdir, capsys):
    common = [
        *SMALL_RANDMAN,
        "--trainer.accelerator=cpu",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.save_dir={workdir}",
    ]
    fit = build_cli(["fit", *common, "--trainer.max_epochs=1"])
    checkpoint = last_path(fit.trainer)
    capsys.readouterr()
    cli = build_cli(["predict", *common, f"--ckpt_path={checkpoint}"])
    printed = capsys.readouterr().out
    path = Path(re.search(r"128 predictions -> (\S+)", printed).group(1))
    assert path.name == "predictions.csv" and path.parent == Path(cli.trainer.logger.log_dir)
    columns = predictions_from_csv(path)
    assert columns["sample"].tolist() == list(range(128))  # the test split, every sample once
    targets = torch.cat([y for _, y in cli.datamodule.test_dataloader()])
    assert torch.equal(columns["target"], targets)
    accuracy = float((columns["predicted"] == targets).float().mean())
    assert f"accuracy     {accuracy:.4f} (128 with targets)" in printed
    assert ((0 < columns["confidence"]) & (columns["confidence"] <= 1)).all()
    # The same classes as the model's own predictions.
    x = torch.cat([x for x, _ in cli.datamodule.test_dataloader()])
    with torch.no_grad():
        expected = cli.model.eval()(x).mean(1).argmax(-1)
    assert torch.equal(columns["predicted"], expected)


def test_fast_dev_run_writes_nothing_into_the_current_folder(workdir):
    before = set(workdir.rglob("*"))
    build_cli(["fit", *SMALL_RANDMAN, "--trainer.fast_dev_run=1", "--trainer.accelerator=cpu"])
    assert set(workdir.rglob("*")) == before


def test_missing_dataset_fails_before_the_run_starts_in_one_message(workdir, monkeypatch, capsys):
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "exodus-lightning",
            "fit",
            "--config",
            str(CONFIGS / "shd.yaml"),
            f"--data.init_args.data_dir={workdir / 'datasets'}",
            "--data.init_args.download=false",
            "--data.init_args.num_workers=0",
        ],
    )
    with pytest.raises(SystemExit) as exit_info:
        cli_main()
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert "Traceback" not in error and error.startswith("exodus-lightning fit: error: SHD ")
    assert f"Expected layout under data_dir '{workdir / 'datasets'}':" in error
    assert "  SHD/shd_train.h5" in error
    assert (
        "On the command line: --data.init_args.download true or --data.init_args.data_dir "
        "<folder that contains SHD/>"
    ) in error
    assert not (workdir / "logs" / "wandb").exists()  # no W&B run left behind


def test_wandb_config_is_the_nested_cli_config_only(workdir):
    cli = build_cli(
        [
            "fit",
            *SMALL_RANDMAN,
            "--trainer.max_epochs=1",
            "--trainer.accelerator=cpu",
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1",
            f"--trainer.logger.init_args.save_dir={workdir / 'wandb_logs'}",
        ]
    )
    run_dir = Path(cli.trainer.logger.experiment.dir).parent
    cli.trainer.logger.experiment.finish()
    config = logged_config(finished_run_file(run_dir))
    # Lightning would add the module's and the DataModule's flat hyperparameters.
    assert not {"alpha", "_instantiator", "network", "num_train_samples"} & set(config)
    assert {"model", "data", "trainer"} <= set(config)
    summary = json.loads((run_dir / "files" / "summary.json").read_text())["fit"]
    assert summary["final"]["val/acc"] == pytest.approx(
        float(cli.trainer.callback_metrics["val/acc"])
    )
    assert summary["best"]["val/acc"]["epoch"] == 0
    assert summary["config"]["data"]["init_args"]["num_train_samples"] == 256
    assert summary["checkpoints"]["last"] == last_path(cli.trainer)


@pytest.mark.slow
def test_a_logged_run_is_quiet_and_writes_one_line_per_epoch(workdir):
    """As a user sees it, in a real process whose output goes to a log file (not a terminal)."""
    common = [
        *SMALL_RANDMAN,
        "--data.init_args.batch_size=64",
        "--trainer.accelerator=cpu",
        "--trainer.logger.init_args.save_dir=wandb_logs",
    ]
    fit = run_script(["fit", *common, "--trainer.max_epochs=2"], workdir)
    assert fit.returncode == 0, fit.stderr[-3000:]
    output = fit.stdout + fit.stderr
    epoch_lines = re.findall(
        r"^Epoch (\d+): val/acc=\S+ val/loss=\S+ train/loss=\S+ "
        r"train/acc=\S+ .*\(\d+\.\d s\)$",
        fit.stdout,
        re.MULTILINE,
    )
    assert epoch_lines == ["0", "1"]
    assert "\r" not in output  # no progress-bar refreshes in the log
    summary_path = re.search(r"summary:\s+(\S+)", fit.stdout).group(1)
    assert json.loads((workdir / summary_path).read_text())["fit"]["epochs"] == 2
    last = re.search(r"last checkpoint: (\S+)", fit.stdout).group(1)
    resumed = run_script(["fit", *common, "--trainer.max_epochs=3", f"--ckpt_path={last}"], workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    output += resumed.stdout + resumed.stderr
    for noise in (
        "No seed found",
        "litlogger",
        "anonymous setting",
        "LeafSpec",
        "dirpath has changed",
    ):
        assert noise not in output, noise
    assert "Seed set to 0" in output  # what is worth knowing stays


# --- Unusable checkpoints (issue 17) ---------------------------------------------------------


class NotAWeight:
    """An object that loading with weights_only refuses."""


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory) -> Path:
    """last.ckpt of a real one-step training of the built-in task (copies get corrupted)."""
    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(sys, "argv", ["exodus-lightning"])
        cli = build_cli(
            [
                "fit",
                *SMALL_RANDMAN,
                "--trainer.max_epochs=1",
                "--trainer.logger=false",
                "--trainer.limit_train_batches=1",
                "--trainer.limit_val_batches=1",
                "--trainer.enable_progress_bar=false",
                f"--trainer.default_root_dir={root}",
            ]
        )
    return Path(last_path(cli.trainer))


def with_non_finite(checkpoint: dict, name: str, index: tuple, value: float) -> dict:
    checkpoint["state_dict"][name][index] = value
    return checkpoint


def write_broken(kind: str, original: Path, path: Path) -> None:
    """`original` spoilt in one way."""
    data = original.read_bytes()
    checkpoint = torch.load(original, weights_only=True)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        path.write_bytes(bytes(range(256)) * 16)
    elif kind == "bare-state-dict":
        torch.save(checkpoint["state_dict"], path)
    elif kind == "no-lightning-version":
        torch.save({"state_dict": checkpoint["state_dict"]}, path)
    elif kind == "pickled-object":
        torch.save({**checkpoint, "extra": NotAWeight()}, path)
    elif kind == "nan-weights":
        checkpoint = with_non_finite(checkpoint, "network.layers.1.weight", (0, 0), math.nan)
        torch.save(with_non_finite(checkpoint, "network.layers.3.bias", (1,), math.inf), path)
    elif kind == "weights-only":
        torch.save(
            {
                k: v
                for k, v in checkpoint.items()
                if k not in ("optimizer_states", "lr_schedulers", "loops", "callbacks")
            },
            path,
        )
    else:
        raise ValueError(kind)


BROKEN_CHECKPOINTS = {
    "empty": "the file is empty (0 bytes)",
    "truncated": "the file is truncated (",
    "random": "the file is not one that torch.save writes (a zip archive); it starts with b'\\x00",
    "bare-state-dict": "it holds a bare state_dict (torch.save(model.state_dict())), written by "
    "torch.save, not by a Lightning Trainer",
    "no-lightning-version": "it has no 'pytorch-lightning_version', written by torch.save",
    "pickled-object": "it holds a tests.test_cli.NotAWeight object, which the command's "
    "weights-only loading refuses (unpickling it could run code)",
    "nan-weights": "its weights hold NaN or infinity: network.layers.1.weight (1 NaN of 2560), "
    "network.layers.3.bias (1 inf of 10)",
}


def main_error(args: list[str], monkeypatch, capsys) -> str:
    """What `exodus-lightning <args>` prints when it ends with exit status 1."""
    monkeypatch.setattr(sys, "argv", ["exodus-lightning", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli_main()
    error = capsys.readouterr().err
    assert exit_info.value.code == 1, error[-2000:]
    assert "Traceback" not in error
    return error


@pytest.mark.parametrize("subcommand", ["fit", "test"])
@pytest.mark.parametrize("kind", list(BROKEN_CHECKPOINTS))
def test_an_unusable_checkpoint_ends_in_one_line_saying_why(
    kind, subcommand, trained_checkpoint, workdir, monkeypatch, capsys
):
    path = workdir / f"{kind}.ckpt"
    write_broken(kind, trained_checkpoint, path)
    error = main_error(
        [subcommand, *SMALL_RANDMAN, "--trainer.logger=false", f"--ckpt_path={path}"],
        monkeypatch,
        capsys,
    )
    assert error == (
        f"exodus-lightning {subcommand}: error: --ckpt_path {path}: not a usable "
        f"checkpoint: {BROKEN_CHECKPOINTS[kind]}" + error.split(BROKEN_CHECKPOINTS[kind], 1)[1]
    )
    assert error.count("\n") == 1, error
    assert not list(workdir.rglob("last.ckpt"))  # stopped before training


def test_a_weights_only_checkpoint_cannot_resume_training(
    trained_checkpoint, workdir, monkeypatch, capsys
):
    path = workdir / "weights.ckpt"
    write_broken("weights-only", trained_checkpoint, path)
    error = main_error(
        ["fit", *SMALL_RANDMAN, "--trainer.logger=false", f"--ckpt_path={path}"],
        monkeypatch,
        capsys,
    )
    assert "it holds the weights only (saved with save_weights_only=True)" in error
    cli = build_cli(
        [
            "test",
            *SMALL_RANDMAN,
            "--trainer.logger=false",
            f"--ckpt_path={path}",
            "--trainer.limit_test_batches=1",
        ]
    )
    assert 0 <= cli.trainer.callback_metrics["test/acc"] <= 1


def test_non_finite_neuron_states_in_a_checkpoint_only_warn(trained_checkpoint, workdir):
    """States (buffers) restart before each batch: a NaN left there harms nothing, but says
    that the run that saved it was diverging."""
    path = workdir / "nan_state.ckpt"
    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    torch.save(with_non_finite(checkpoint, "network.layers.2.v_mem", (0, 0), math.nan), path)
    with pytest.warns(
        CheckpointWarning,
        match=re.escape("buffers hold NaN or infinity: network.layers.2.v_mem (1 NaN of 128)"),
    ):
        cli = build_cli(
            [
                "test",
                *SMALL_RANDMAN,
                "--trainer.logger=false",
                f"--ckpt_path={path}",
                "--trainer.limit_test_batches=1",
            ]
        )
    assert torch.isfinite(cli.trainer.callback_metrics["test/loss"])


@pytest.mark.parametrize("subcommand", ["fit", "validate"])
def test_ckpt_path_last_without_a_last_checkpoint_fails_saying_where_it_looked(
    subcommand, workdir, monkeypatch, capsys
):
    """Lightning warns and trains from scratch (exit 0), which looks like a resumed run."""
    error = main_error(
        [subcommand, *SMALL_RANDMAN, "--trainer.logger=false", "--ckpt_path=last"],
        monkeypatch,
        capsys,
    )
    folder = workdir / "checkpoints"
    assert error == (
        f"exodus-lightning {subcommand}: error: --ckpt_path last: no last checkpoint "
        f"(last*.ckpt) in {folder}, this run's checkpoint folder, which is new for "
        "each run unless --checkpoint.dirpath fixes it; pass the checkpoint file to "
        f"{'resume' if subcommand == 'fit' else 'use'}\n"
    )
    # A W&B run's folder is named after the run, which gets its id when it starts; an earlier
    # run's last checkpoint is offered instead.
    earlier = workdir / "logs" / "exodus-lightning" / "abc123" / "checkpoints" / "last.ckpt"
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"")
    error = main_error([subcommand, *SMALL_RANDMAN, "--ckpt_path=last"], monkeypatch, capsys)
    assert "in logs/exodus-lightning/<this run's id>/checkpoints, this run's" in error
    assert error.endswith(
        f"{'resume' if subcommand == 'fit' else 'use'}, e.g. --ckpt_path "
        "logs/exodus-lightning/abc123/checkpoints/last.ckpt\n"
    )


def test_ckpt_path_last_resumes_the_last_checkpoint_of_a_fixed_folder(workdir, capsys):
    common = [
        "fit",
        *SMALL_RANDMAN,
        "--trainer.logger=false",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        f"--checkpoint.dirpath={workdir / 'fixed'}",
    ]
    first = build_cli([*common, "--trainer.max_epochs=1"])
    last = last_path(first.trainer)
    assert Path(last) == workdir / "fixed" / "last.ckpt"
    resumed = build_cli([*common, "--trainer.max_epochs=2", "--ckpt_path=last"])
    assert resumed.trainer.ckpt_path == last
    assert resumed.trainer.global_step == 4  # two steps restored, two trained


def test_ckpt_path_best_in_a_new_run_fails(workdir, monkeypatch, capsys):
    error = main_error(
        ["test", *SMALL_RANDMAN, "--trainer.logger=false", "--ckpt_path=best"], monkeypatch, capsys
    )
    assert "--ckpt_path best: a new run has no best checkpoint" in error


@pytest.mark.parametrize("name", ["SSCDataModule", "DelayedXorDataModule"])
def test_data_takes_short_class_names_in_a_fresh_process(name, tmp_path):
    """`--data SSCDataModule`: the CLI imports every DataModule (the data package loads its
    modules lazily, so nothing else would)."""
    proc = subprocess.run(
        [sys.executable, "-m", "exodus_lightning", "fit", "--data", name, "--print_config"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "class_path: exodus_lightning.data." in proc.stdout and name in proc.stdout


def test_a_checkpoint_brings_its_data_unless_other_data_is_chosen(workdir, monkeypatch, capsys):
    """`test --ckpt_path` after `fit --data X` scores X (the model's settings come from the
    checkpoint, so must the data's); with other data chosen, one line names the shapes."""
    from exodus_lightning.data import DelayedXorDataModule

    monkeypatch.setattr(sys, "argv", ["exodus-lightning"])
    small_xor = ["--data.init_args.num_train_samples=64", "--data.init_args.num_val_samples=32",
                 "--data.init_args.num_test_samples=32", "--data.init_args.batch_size=32"]
    cli = build_cli(["fit", "--data=DelayedXorDataModule", *small_xor, "--trainer.max_epochs=1",
                     "--trainer.logger=false", "--trainer.limit_train_batches=1",
                     "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false",
                     f"--trainer.default_root_dir={workdir}"])
    checkpoint = last_path(cli.trainer)
    capsys.readouterr()
    for subcommand in ("test", "fit"):
        cli = build_cli([subcommand, "--trainer.logger=false", f"--ckpt_path={checkpoint}",
                         "--trainer.max_epochs=2", "--trainer.limit_train_batches=1",
                         "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=1",
                         f"--trainer.default_root_dir={workdir}"])
        assert isinstance(cli.datamodule, DelayedXorDataModule), subcommand
        assert cli.datamodule.hparams.num_test_samples == 32  # its settings too
        assert ("data as in the checkpoint's run: DelayedXorDataModule"
                in capsys.readouterr().err)
    error = main_error(["test", "--data=RandmanDataModule", *SMALL_RANDMAN,
                        "--trainer.logger=false", f"--ckpt_path={checkpoint}"],
                       monkeypatch, capsys)
    assert "its network was built for other shapes than this run's" in error
    assert "((2, 128) in the checkpoint, (10, 128) here)" in error
    assert "pass that run's --config" in error and len(error.strip().splitlines()) == 1


def test_a_checkpoint_brings_a_plain_datamodules_data(workdir, monkeypatch, capsys):
    """A plain LightningDataModule (no save_hyperparameters) with the built-in task's shapes:
    `test --ckpt_path` without --data scores it, as the same command with --data does (it
    scored Randman, silently, when only the DataModule's own hyperparameters were read); a
    checkpoint that records no data at all is refused in one line."""
    from tests.example_datamodule import BurstDataModule

    burst = ["--data=tests.example_datamodule.BurstDataModule",
             "--data.init_args.num_classes=10", "--data.init_args.num_channels=20"]
    common = ["--trainer.logger=false", "--trainer.enable_progress_bar=false",
              f"--trainer.default_root_dir={workdir}"]
    fitted = build_cli(["fit", *burst, *common, "--trainer.max_epochs=1"])
    checkpoint = last_path(fitted.trainer)
    assert "datamodule_hyper_parameters" not in torch.load(checkpoint, weights_only=True)
    capsys.readouterr()
    restored = build_cli(["test", *common, f"--ckpt_path={checkpoint}"])
    assert isinstance(restored.datamodule, BurstDataModule)
    assert restored.datamodule.num_classes == 10  # its settings too
    assert "data as in the checkpoint's run: BurstDataModule" in capsys.readouterr().err
    given = build_cli(["test", *burst, *common, f"--ckpt_path={checkpoint}"])
    assert (restored.trainer.callback_metrics["test/acc"]
            == given.trainer.callback_metrics["test/acc"])

    unrecorded = workdir / "unrecorded.ckpt"
    saved = torch.load(checkpoint, weights_only=True)
    del saved["exodus_lightning_data"]
    torch.save(saved, unrecorded)
    error = main_error(["test", *common, f"--ckpt_path={unrecorded}"], monkeypatch, capsys)
    assert error == (f"exodus-lightning test: error: --ckpt_path {unrecorded}: the checkpoint "
                     "does not record the data it was trained with (written by plain Lightning "
                     "or an older exodus-lightning); pass that run's --data (e.g. --data "
                     "my_data.MyDataModule) or its --config\n")
    given = build_cli(["test", *burst, *common, f"--ckpt_path={unrecorded}"])
    assert isinstance(given.datamodule, BurstDataModule)


def test_data_options_given_with_a_checkpoint_change_only_those_settings(workdir, capsys):
    """`predict/test --ckpt_path X --data.init_args.batch_size N` uses the checkpoint's data with
    that one setting changed, as `--model.*` options do: the test split of the checkpoint's run
    (50 Randman samples, not the default 2000), SHD for a checkpoint of configs/shd.yaml (the
    built-in data replaced it, and the shapes did not fit)."""
    from exodus_lightning.data import SHDDataModule

    common = ["--trainer.logger=lightning.pytorch.loggers.CSVLogger",
              f"--trainer.logger.save_dir={workdir}", "--trainer.enable_progress_bar=false",
              "--trainer.accelerator=cpu"]
    fit = build_cli(["fit", *common, "--data.init_args.num_train_samples=64",
                     "--data.init_args.num_val_samples=32", "--data.init_args.num_test_samples=50",
                     "--trainer.max_epochs=1", "--trainer.limit_train_batches=1"])
    checkpoint = last_path(fit.trainer)
    capsys.readouterr()
    cli = build_cli(["predict", *common, f"--ckpt_path={checkpoint}",
                     "--data.init_args.batch_size=7"])
    output = capsys.readouterr()
    assert cli.datamodule.hparams.batch_size == 7
    assert cli.datamodule.hparams.num_test_samples == 50
    path = Path(re.search(r"50 predictions -> (\S+)", output.out).group(1))
    assert len(predictions_from_csv(path)["predicted"]) == 50
    assert ("data as in the checkpoint's run: RandmanDataModule, with the data settings given "
            "here: --data.init_args.batch_size 7 (the checkpoint's: 128)\n") in output.err

    root = workdir / "datasets"
    fabricate.write_shd(root, num_train=20, num_test=20, spikes_per_sample=100)
    shd = ["--config", str(CONFIGS / "shd.yaml"), *data_args("shd", root),
           "--trainer.logger=false", "--trainer.enable_progress_bar=false",
           "--trainer.accelerator=cpu"]
    fit = build_cli(["fit", *shd, "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
                     "--trainer.limit_val_batches=1", f"--trainer.default_root_dir={workdir}"])
    checkpoint = last_path(fit.trainer)
    capsys.readouterr()
    cli = build_cli(["test", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
                     f"--ckpt_path={checkpoint}", "--data.init_args.batch_size=3"])
    assert isinstance(cli.datamodule, SHDDataModule)
    assert cli.datamodule.hparams.batch_size == 3
    assert Path(cli.datamodule.hparams.data_dir) == root  # the rest as recorded
    assert 0 <= float(cli.trainer.callback_metrics["test/acc"]) <= 1
    assert ("data as in the checkpoint's run: SHDDataModule, with the data settings given here: "
            "--data.init_args.batch_size 3 (the checkpoint's: 2)\n") in capsys.readouterr().err


def test_a_data_class_is_named_by_options_or_a_config(tmp_path):
    """What tells `--data RandmanDataModule` (the default class, restated: other data than a
    checkpoint's) from `--data.init_args.batch_size 7` (a setting of the checkpoint's data)."""
    from exodus_lightning.cli_parser import names_class

    named = tmp_path / "named.yaml"
    named.write_text("data:\n  class_path: exodus_lightning.data.RandmanDataModule\n")
    values = tmp_path / "values.yaml"
    values.write_text("data:\n  init_args:\n    batch_size: 7\n")
    for args, expected in [
        (["--data", "RandmanDataModule"], True),
        (["--data=RandmanDataModule"], True),
        (["--data.class_path=RandmanDataModule"], True),
        (["--data.init_args.batch_size", "7"], False),
        (["--config", str(named)], True),
        (["--config", str(values)], False),
        ([f"--config={named}", "--data.init_args.batch_size=7"], True),
        (["--config", "data: SHDDataModule"], True),  # YAML text instead of a file
        (["--model.readout_loss", "spike_count"], False),
    ]:
        assert names_class(args, "data") is expected, args


def test_no_subcommand_lists_every_subcommand_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["exodus-lightning"])
    with pytest.raises(SystemExit) as exit_info:
        cli_main()
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error == ("exodus-lightning: error: give a subcommand: fit, validate, test, predict, "
                     "export or prepare (e.g. `exodus-lightning fit`; `exodus-lightning --help` "
                     "says more)")


def class_defaults(cls: type) -> dict[str, object]:
    """The constructor's defaults, lists for tuples (as a parsed config holds them)."""
    return {
        name: list(p.default) if isinstance(p.default, tuple) else p.default
        for name, p in inspect.signature(cls).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


@pytest.mark.parametrize("how", ["options", "config"])
def test_a_class_switch_starts_from_the_new_class_defaults(how, workdir):
    """`--data DelayedXorDataModule --model.network DelaySNN` (or a --config naming them) runs
    those classes with their own defaults, not the built-in task's values for Randman and
    FeedForwardSNN that they share (num_channels 20, hidden_sizes [128], tau_mem 10,
    spike_threshold 0.5, ...); the values given still win."""
    from exodus_lightning.data import DelayedXorDataModule
    from exodus_lightning.models import DelaySNN

    data = {"num_train_samples": 16, "num_val_samples": 16, "num_test_samples": 16,
            "batch_size": 16}
    network = {"tau_mem": 5.0}
    if how == "options":
        switch = ["--data=DelayedXorDataModule", "--model.network=DelaySNN",
                  *[f"--data.init_args.{k}={v}" for k, v in data.items()],
                  *[f"--model.network.init_args.{k}={v}" for k, v in network.items()]]
    else:
        mine = workdir / "mine.yaml"
        mine.write_text(yaml.safe_dump({
            "data": {"class_path": "exodus_lightning.data.DelayedXorDataModule",
                     "init_args": data},
            "model": {"network": {"class_path": "exodus_lightning.models.DelaySNN",
                                  "init_args": network}},
        }))
        switch = ["--config", str(mine)]
    cli = build_cli(["fit", *switch, "--trainer.fast_dev_run=1", "--trainer.accelerator=cpu"])
    assert cli.trainer.state.finished
    expected_data = class_defaults(DelayedXorDataModule) | data
    assert {k: cli.datamodule.hparams[k] for k in expected_data} == expected_data
    assert cli.datamodule.input_shape == (expected_data["num_channels"],)  # 40, not 20
    used = cli.config.fit.model.network.init_args.as_dict()
    expected_network = class_defaults(DelaySNN) | network
    assert {k: used[k] for k in expected_network} == expected_network
    assert cli.model.network.input_shape == (40,)


@pytest.mark.parametrize("how", ["options", "config"])
def test_model_options_given_with_a_checkpoint_replace_its_settings(
    how, trained_checkpoint, workdir, capsys
):
    """`validate --ckpt_path X --model.readout_loss spike_count` scores with spike_count (the
    checkpoint's is mean_membrane), as the same checkpoint does in Python, and says so."""
    from lightning import Trainer

    from exodus_lightning.data import RandmanDataModule

    common = ["validate", f"--ckpt_path={trained_checkpoint}", "--trainer.logger=false",
              "--trainer.enable_progress_bar=false"]
    if how == "options":
        given = ["--model.readout_loss=spike_count"]
    else:
        mine = workdir / "mine.yaml"
        mine.write_text("model:\n  readout_loss: spike_count\n")
        given = ["--config", str(mine)]
    cli = build_cli([*common, *given])
    assert cli.model.hparams.readout_loss == "spike_count"
    assert capsys.readouterr().err.count("model settings given here replace the checkpoint's: "
                                         "--model.readout_loss spike_count (the checkpoint's: "
                                         "mean_membrane)\n") == 1

    saved = torch.load(trained_checkpoint, weights_only=False)["datamodule_hyper_parameters"]
    data = RandmanDataModule(**{k: v for k, v in saved.items() if not k.startswith("_")})
    model = SpikingClassifier.load_from_checkpoint(trained_checkpoint, map_location="cpu",
                                                   readout_loss="spike_count")
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False,
                      accelerator="cpu")
    trainer.validate(model, datamodule=data, verbose=False)
    assert cli.trainer.callback_metrics["val/loss"] == pytest.approx(
        trainer.callback_metrics["val/loss"].item(), rel=1e-6)

    same = build_cli([*common, "--model.readout_loss=mean_membrane"])  # the checkpoint's own
    assert same.model.hparams.readout_loss == "mean_membrane"
    assert "replace the checkpoint's" not in capsys.readouterr().err


def error_line(error: str) -> str:
    """The one `exodus-lightning <subcommand>: error:` line of a command's output."""
    (line,) = [line for line in error.splitlines() if line.startswith("exodus-lightning ")
               and ": error: " in line]
    return line


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            ["--model.network.init_args.input_shape=[30]"],
            "--model.network.init_args.input_shape: given [30], but it is set from the data "
            "(RandmanDataModule's input_shape: [20]); remove it, or change the data's settings",
        ),
        (
            ["--model.network.init_args.num_classes", "35"],
            "--model.network.init_args.num_classes: given 35, but it is set from the data "
            "(RandmanDataModule's num_classes: 10); remove it",
        ),
        (
            "model:\n  num_classes: 12\n",
            "model.num_classes (in a --config): given 12, but it is set from the data "
            "(RandmanDataModule's num_classes: 10); remove it",
        ),
        (
            "model:\n  network:\n    init_args:\n      input_shape: [20, 1]\n",
            "model.network.init_args.input_shape (in a --config): given [20, 1], but it is set "
            "from the data (RandmanDataModule's input_shape: [20])",
        ),
    ],
    ids=["input-shape", "network-classes", "config-classes", "config-shape"],
)
def test_a_setting_linked_from_the_data_stated_otherwise_fails(
    given, expected, workdir, monkeypatch, capsys
):
    """jsonargparse replaces a link target with the data's value without a word."""
    if isinstance(given, str):
        (workdir / "mine.yaml").write_text(given)
        given = ["--config", "mine.yaml"]
    error = main_error(["fit", "--trainer.logger=false", *given], monkeypatch, capsys)
    assert error_line(error).startswith(f"exodus-lightning fit: error: {expected}"), error


def test_a_setting_linked_from_the_data_stated_as_the_data_gives_it_is_accepted(workdir, capsys):
    (workdir / "mine.yaml").write_text(
        "model:\n  num_classes: 3\n  network:\n    init_args:\n      num_classes: 3\n")
    cli = build_cli(["--config", "mine.yaml", "--data=tests.example_datamodule.BurstDataModule",
                     "--data.init_args.num_classes=3", "--data.init_args.num_channels=5",
                     "--model.network.init_args.input_shape=[5]"], run=False)
    assert cli.model.num_classes == 3 and cli.model.network.input_shape == (5,)
    assert "error" not in capsys.readouterr().err


def test_a_linked_setting_with_a_checkpoint_is_checked_against_the_data(
    trained_checkpoint, workdir, monkeypatch, capsys
):
    """The checkpoint's saved hyperparameters hold the linked values: they never count as
    stated; what the command line states is checked against the data, not the checkpoint."""
    common = ["validate", f"--ckpt_path={trained_checkpoint}", "--trainer.logger=false",
              "--trainer.enable_progress_bar=false"]
    cli = build_cli([*common, "--model.network.init_args.num_classes=10"])
    assert cli.model.num_classes == 10 and "val/acc" in cli.trainer.callback_metrics
    assert "replace the checkpoint's" not in capsys.readouterr().err
    error = main_error([*common, "--model.network.init_args.num_classes=35"], monkeypatch, capsys)
    assert error_line(error).startswith("exodus-lightning validate: error: --model.network."
                                        "init_args.num_classes: given 35, but it is set from the "
                                        "data (RandmanDataModule's num_classes: 10)")
    assert "replace the checkpoint's" not in error  # the data sets it, not this option


def test_model_options_that_change_the_shapes_end_in_the_shape_error(
    trained_checkpoint, workdir, monkeypatch, capsys
):
    error = main_error(["test", f"--ckpt_path={trained_checkpoint}", "--trainer.logger=false",
                        "--model.network.init_args.hidden_sizes=[16]"], monkeypatch, capsys)
    assert ("model settings given here replace the checkpoint's: --model.network.init_args."
            "hidden_sizes [16] (the checkpoint's: [128])") in error
    assert "its network was built for other shapes than this run's" in error
    assert "((128, 20) in the checkpoint, (16, 20) here)" in error
    assert sum(line.startswith("exodus-lightning test: error: --ckpt_path")
               for line in error.splitlines()) == 1


@pytest.mark.parametrize("given, expected", [("1", 1), ("3", 3), ("1.0", 1.0), ("0.25", 0.25)])
def test_batch_limits_keep_ints_as_batch_counts(given, expected, workdir):
    """Lightning reads an int as a number of batches and a float as a fraction: "1" must stay
    the int 1 (one batch), not 1.0 (every batch), from the command line and from a config."""
    cli = build_cli(["--trainer.limit_val_batches", given, "--trainer.limit_train_batches", given],
                    run=False)
    for value in (cli.trainer.limit_val_batches, cli.trainer.limit_train_batches):
        assert value == expected and type(value) is type(expected)
    config = workdir / "limits.yaml"
    config.write_text(f"trainer:\n  limit_val_batches: {given}\n")
    value = build_cli(["--config", str(config)], run=False).trainer.limit_val_batches
    assert value == expected and type(value) is type(expected)
