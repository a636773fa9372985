"""W&B sweeps (configs/sweeps/*.yaml): every swept key is a valid override of its experiment,
and trials run the way `wandb agent` runs them, offline (no W&B server).

The agent runs `command` with `${args}` replaced by one `--key=value` per sampled parameter
(wandb.sdk.launch.sweeps.utils.create_sweep_command_args, used here too), with WANDB_RUN_ID and
WANDB_SWEEP_PARAM_PATH set; the sweep server's choice of values is replaced by a fixed one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

from exodus_lightning.cli import build_cli
from tests.test_cli import REPO, SMALL_RANDMAN
from tests.wandb_records import (
    child_environment,
    finished_run_file,
    logged_config,
    logged_history,
)

SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))
LOGGED_METRICS = {"val/acc", "val/loss", "train/acc", "train/loss"}


def load_sweep(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def trial_values(sweep: dict, trial: int) -> dict:
    """A value per parameter for trial number `trial` (the server would sample them)."""
    values = {}
    for key, spec in sweep["parameters"].items():
        if "value" in spec:
            values[key] = spec["value"]
        elif "values" in spec:
            values[key] = spec["values"][trial % len(spec["values"])]
        else:
            values[key] = spec["min"] if trial % 2 == 0 else spec["max"]
    return values


def agent_command(sweep: dict, values: dict, extra: list[str] = ()) -> list[str]:
    """The command line `wandb agent` runs for a trial (wandb_agent.Agent._command_run), with
    this interpreter for ${interpreter} (the agent's is "python" on PATH) and `extra` arguments
    before the sampled ones (test-sized data)."""
    variables = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    variables.update(
        env=["/usr/bin/env"], interpreter=[sys.executable], program=[sweep.get("program", "")]
    )
    command = []
    for chunk in create_sweep_command(list(sweep["command"])):
        chunk = str(chunk)
        if chunk == "${args}":
            command += list(extra)
        if chunk.startswith("${") and chunk.endswith("}"):
            command += variables.get(chunk[2:-1]) or []
        else:
            command.append(chunk)
    return command


def nested(config: dict, key: str):
    """config["a"]["init_args"]["b"] for key "a.init_args.b"."""
    for part in key.split("."):
        config = config[part]
    return config


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_is_complete_and_every_key_is_a_valid_override(path, workdir, capsys):
    sweep = load_sweep(path)
    assert sweep["metric"] == {"name": "val/acc", "goal": "maximize"}
    assert sweep["metric"]["name"] in LOGGED_METRICS
    assert sweep["method"] in ("grid", "random", "bayes")
    assert sweep["command"][-1] == "${args}"
    command = agent_command(sweep, trial_values(sweep, 0))
    fit = command.index("fit")
    assert command[fit - 2 : fit] == ["-m", "exodus_lightning"]
    # The experiment's config, relative to the repository root (none: the built-in task).
    configs = [command[i + 1] for i, arg in enumerate(command) if arg == "--config"]
    assert all((REPO / config).is_file() for config in configs), configs
    swept_keys = set(sweep["parameters"])
    for trial in (0, 1):
        values = trial_values(sweep, trial)
        command = agent_command(sweep, values)
        args = [str(REPO / a) if a in configs else a for a in command[fit + 1 :]]
        with pytest.raises(SystemExit) as exit_info:
            build_cli(["fit", *args, "--print_config"])
        assert exit_info.value.code in (0, None), capsys.readouterr().err
        printed = yaml.safe_load(capsys.readouterr().out)
        for key in swept_keys:
            assert nested(printed, key) == values[key], key


@pytest.mark.slow
def test_two_randman_trials_run_as_the_agent_runs_them(tmp_path):
    sweep = load_sweep(REPO / "configs" / "sweeps" / "randman.yaml")
    small = [
        *SMALL_RANDMAN,
        "--trainer.max_epochs=2",
        "--data.init_args.batch_size=64",
        "--trainer.logger.init_args.save_dir=logs",
    ]
    for trial in (0, 1):
        values = trial_values(sweep, trial)
        run_id = f"trial{trial}"
        params = tmp_path / f"config-{run_id}.yaml"
        params.write_text(yaml.safe_dump({k: {"value": v} for k, v in values.items()}))
        env = child_environment(
            WANDB_MODE="offline",
            WANDB_SILENT="true",
            WANDB_RUN_ID=run_id,
            WANDB_SWEEP_PARAM_PATH=str(params),
            WANDB_DIR=str(tmp_path),
            PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        )
        command = agent_command(sweep, values, extra=small)
        # The agent runs from the folder it was started in: the repository root. Logs go to
        # tmp_path through save_dir (absolute below) so the checkout stays clean.
        command = [a.replace("save_dir=logs", f"save_dir={tmp_path / 'logs'}") for a in command]
        result = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
        run_dir = next((tmp_path / "logs" / "wandb").glob(f"offline-run-*-{run_id}"))
        config = logged_config(finished_run_file(run_dir))
        saved = yaml.safe_load((run_dir / "files" / "lightning_config.yaml").read_text())
        for key, value in values.items():
            assert nested(config, key) == value, key  # the trial's W&B config
            assert nested(saved, key) == value, key  # and its config file
        history = logged_history(finished_run_file(run_dir))
        val_acc = [row["val/acc"] for row in history if "val/acc" in row]
        assert len(val_acc) == 2 and all(0 <= a <= 1 for a in val_acc)
        summary = json.loads((run_dir / "files" / "summary.json").read_text())["fit"]
        assert summary["final"]["val/acc"] == pytest.approx(val_acc[-1])
        assert summary["best"]["val/acc"]["value"] == pytest.approx(max(val_acc))
