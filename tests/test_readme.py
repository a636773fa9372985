"""The README's examples do what the README says."""

from __future__ import annotations

import re
import sys
import warnings

import pytest

from exodus_lightning.callbacks import SpikeActivityWarning
from exodus_lightning.cli import build_cli
from tests.test_cli import REPO

README = (REPO / "README.md").read_text()


def readme_block(first_line: str) -> str:
    """The fenced code block of the README whose first line is `first_line`."""
    for block in re.findall(r"```\w*\n(.*?)```", README, re.DOTALL):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"no README code block starts with {first_line!r}")


@pytest.mark.slow
def test_readme_network_trains_and_its_layer_spikes(workdir, monkeypatch):
    (workdir / "my_nets.py").write_text(readme_block("# my_nets.py"))
    monkeypatch.syspath_prepend(str(workdir))
    monkeypatch.delitem(sys.modules, "my_nets", raising=False)
    command = next(line for line in readme_block("exodus-lightning fit --model.network")
                   .splitlines() if "--config" not in line)
    args = command.split()[1:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = build_cli([*args, "--trainer.max_epochs=4", "--trainer.logger=false",
                         "--data.init_args.num_train_samples=2000",
                         "--data.init_args.num_val_samples=500", "--data.init_args.batch_size=32"])
    assert not [w for w in caught if issubclass(w.category, SpikeActivityWarning)]
    assert type(cli.model.network).__name__ == "TwoLayerSNN"
    assert cli.model.network.layers[1].out_features == 32  # --model.network.init_args.hidden 32
    assert float(cli.trainer.callback_metrics["spike_rate/layers.2"]) > 0.01
    assert float(cli.trainer.callback_metrics["val/acc"]) > 0.25  # chance: 0.1
