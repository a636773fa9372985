"""The `exodus-lightning` command: every config, print_config, plug-ins, resume, DDP, W&B, errors.

Runs in-process through `build_cli(args)` (fast), except where a real process is the point
(the console script, DDP, which relaunches the command line). W&B is always offline and every
file goes under tmp_path.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from exodus_lightning import ops
from exodus_lightning.cli import build_cli
from exodus_lightning.data import fabricate
from exodus_lightning.tasks import SpikingClassifier
from tests.wandb_records import logged_config, logged_history

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
EXPERIMENTS = ["randman", "nmnist", "dvs_gesture", "shd", "ssc"]
NUM_CLASSES = {"randman": 10, "nmnist": 10, "dvs_gesture": 11, "shd": 20, "ssc": 35}
SMALL_RANDMAN = [
    "--data.init_args.num_train_samples=256",
    "--data.init_args.num_val_samples=128",
    "--data.init_args.num_test_samples=128",
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in tmp_path with W&B offline, so logs/ and wandb/ land there."""
    monkeypatch.chdir(tmp_path)
    # LightningCLI warns when both `args` and pytest's own sys.argv are present.
    monkeypatch.setattr(sys, "argv", ["exodus-lightning"])
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path


@pytest.fixture(scope="module")
def fabricated_root(tmp_path_factory) -> Path:
    """All four recorded datasets, tiny, in their real on-disk layouts."""
    root = tmp_path_factory.mktemp("datasets")
    fabricate.write_nmnist(root, num_train_per_class=2, num_test_per_class=1, num_events=100)
    fabricate.write_dvs_gesture(root, num_train_users=1, num_test_users=1, lightings=("led",),
                                num_events=200)
    fabricate.write_shd(root, num_train=20, num_test=10, spikes_per_sample=100)
    fabricate.write_ssc(root, num_train=35, num_valid=35, num_test=35, spikes_per_sample=100)
    return root


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


def run_script(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true",
               PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.run([sys.executable, "-m", "exodus_lightning", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_config_fits_validates_tests_and_predicts(experiment, workdir, fabricated_root):
    common = ["--config", str(CONFIGS / f"{experiment}.yaml"), "--trainer.fast_dev_run=1",
              "--trainer.accelerator=cpu", *data_args(experiment, fabricated_root)]
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
    predictions = torch.cat(cli.trainer.predict_loop.predictions)
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


def test_randman_yaml_spells_out_the_defaults(workdir, capsys):
    defaults = printed_config(["fit"], capsys)
    assert printed_config(["fit", "--config", str(CONFIGS / "randman.yaml")], capsys) == defaults


def test_fragments_compose_with_an_experiment(workdir, capsys):
    printed = printed_config(
        ["fit", "--config", str(CONFIGS / "shd.yaml"),
         "--config", str(CONFIGS / "trainer" / "ddp.yaml"),
         "--config", str(CONFIGS / "logger" / "csv.yaml"), "--trainer.num_nodes=4"],
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
    cli = build_cli([
        "fit", "--trainer.fast_dev_run=1", "--trainer.accelerator=cpu",
        "--model.network=tests.example_network.RecurrentSNN",
        "--model.network.init_args.hidden_size=12",
        "--data=tests.example_datamodule.BurstDataModule",
        "--data.init_args.num_classes=3", "--data.init_args.num_channels=5",
    ])
    network = cli.model.network
    assert type(network).__name__ == "RecurrentSNN"
    # input_shape and num_classes were linked from the user's DataModule.
    assert network.encoder.in_features == 5 and network.decoder.out_features == 3
    assert network.encoder.out_features == 12
    assert cli.model.spiking_layer_names == ["lif"]
    assert "spike_rate/lif" in cli.trainer.callback_metrics


def resume_args(workdir: Path, max_epochs: int, batch_size: int) -> list[str]:
    return [
        "fit", *SMALL_RANDMAN, f"--data.init_args.batch_size={batch_size}",
        "--trainer.accelerator=cpu", f"--trainer.max_epochs={max_epochs}",
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
    last = first.trainer.checkpoint_callback.last_model_path
    assert last.endswith("last.ckpt")
    resumed = build_cli([*resume_args(workdir, 3, batch_size), f"--ckpt_path={last}"])
    assert resumed.trainer.global_step == straight.trainer.global_step == 3 * 256 // batch_size
    assert resumed.trainer.current_epoch == straight.trainer.current_epoch == 3
    # The best checkpoint is chosen on validation accuracy.
    best = resumed.trainer.checkpoint_callback
    assert best.monitor == "val/acc" and best.mode == "max" and Path(best.best_model_path).is_file()
    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_wandb_offline_run_records_metrics_config_and_rasters(workdir):
    cli = build_cli([
        "fit", *SMALL_RANDMAN, "--trainer.max_epochs=2", "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false", "--spike_raster.every_n_epochs=1",
        "--trainer.logger.init_args.save_dir=wandb_logs",
    ])
    run_dir = Path(cli.trainer.logger.experiment.dir).parent
    cli.trainer.logger.experiment.finish()
    assert run_dir.name.startswith("offline-run-")
    run_file = next(run_dir.glob("run-*.wandb"))
    history = logged_history(run_file)
    val_acc = [row["val/acc"] for row in history if "val/acc" in row]
    assert len(val_acc) == 2 and all(0 <= a <= 1 for a in val_acc)
    assert val_acc[-1] == pytest.approx(float(cli.trainer.callback_metrics["val/acc"]))
    assert any("spike_rate/layers.2" in row for row in history)
    rasters = [row for row in history if "spike_raster/_type" in row]
    assert len(rasters) == 2 and rasters[0]["spike_raster/_type"] == "images/separated"
    assert len(list(run_dir.glob("files/media/images/spike_raster_*.png"))) == 2
    config = logged_config(run_file)
    assert config["model"]["network"]["class_path"] == "exodus_lightning.models.FeedForwardSNN"
    assert config["data"]["init_args"]["num_train_samples"] == 256
    saved = yaml.safe_load((run_dir / "files" / "lightning_config.yaml").read_text())
    assert saved["model"]["optimizer"]["init_args"]["lr"] == 0.01


def test_checkpoint_loads_without_passing_the_network(workdir):
    """The CLI saves the network and optimizer configs as hyperparameters, so
    load_from_checkpoint rebuilds the whole module from the file alone."""
    cli = build_cli(["fit", *SMALL_RANDMAN, "--trainer.max_epochs=1", "--trainer.logger=false",
                     "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
                     "--model.optimizer.init_args.lr=0.003"])
    loaded = SpikingClassifier.load_from_checkpoint(cli.trainer.checkpoint_callback.last_model_path)
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
    build_cli(["fit", *SMALL_RANDMAN, "--trainer.fast_dev_run=1", "--trainer.logger=false",
               "--trainer.accelerator=cpu", *flag])
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
    assert "readout_los" in capsys.readouterr().err


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
        result = subprocess.run([str(script), "fit", "--help"], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0 and "--model.network" in result.stdout


def summary_value(output: str, key: str) -> float:
    return float(re.findall(rf"^\s+{re.escape(key)}\s+([0-9.]+)$", output, re.MULTILINE)[-1])


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_syncs_metrics(workdir):
    common = [*SMALL_RANDMAN, "--data.init_args.batch_size=32", "--trainer.accelerator=cpu",
              "--trainer.enable_progress_bar=false",
              "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
              f"--trainer.logger.save_dir={workdir}"]
    ddp = ["--trainer.devices=2", "--trainer.strategy=ddp"]
    fit = run_script(["fit", *common, *ddp, "--trainer.max_epochs=1"], workdir)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "MEMBER: 2/2" in fit.stderr  # rank 1 ran
    checkpoint = re.search(r"last checkpoint: (\S+)", fit.stdout).group(1)
    two = run_script(["validate", *common, *ddp, f"--ckpt_path={checkpoint}"], workdir)
    assert two.returncode == 0, two.stderr[-3000:]
    one = build_cli(["validate", *common, "--trainer.devices=1", f"--ckpt_path={checkpoint}"])
    # Each rank saw half of the 128 validation samples; synced, the accuracy is that of all.
    assert summary_value(two.stdout, "val/acc") == pytest.approx(
        float(one.trainer.callback_metrics["val/acc"]), abs=1e-4)
