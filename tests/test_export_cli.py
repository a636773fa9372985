"""`exodus-lightning export`: a checkpoint written by `fit` becomes a .nir file whose network,
read back, computes what the trained network computes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from exodus_lightning import nn as enn
from exodus_lightning.callbacks import NIRExport, NIRExportWarning
from exodus_lightning.cli import build_cli
from exodus_lightning.cli import main as cli_main
from exodus_lightning.tasks import SpikingClassifier
from tests.test_cli import SMALL_RANDMAN, last_path, run_script

nir = pytest.importorskip("nir")
from exodus_lightning.nir import NIRLossWarning, from_nir  # noqa: E402


@pytest.fixture
def checkpoint(workdir) -> Path:
    cli = build_cli(["fit", *SMALL_RANDMAN, "--trainer.max_epochs=1", "--trainer.logger=false",
                     "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"])
    return Path(last_path(cli.trainer))


def test_export_writes_a_graph_that_computes_what_the_checkpoint_does(checkpoint, workdir,
                                                                       monkeypatch, capsys):
    output = workdir / "deploy" / "model.nir"
    monkeypatch.setattr(sys, "argv", ["exodus-lightning", "export", "--ckpt_path",
                                      str(checkpoint), "--output", str(output)])
    # The default network is multi-spike, which NIR neurons are not: the warning says so.
    with pytest.warns(NIRLossWarning, match="max_spikes_per_step=None"):
        cli_main()
    assert f"Wrote {output}" in capsys.readouterr().err
    network = SpikingClassifier.load_from_checkpoint(checkpoint, map_location="cpu").network
    loaded = from_nir(output)
    x = (torch.rand(4, 50, *network.input_shape) < 0.2).float()
    enn.reset_states(network)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), network.eval()(x), rtol=0, atol=0)


def test_readme_network_exports_from_its_checkpoint_without_input_shape(workdir, monkeypatch,
                                                                          capsys):
    """README's "Add your own network" TwoLayerSNN (an nn.Module holding an nn.Sequential, no
    input_shape attribute): its checkpoint exports with the input_shape `fit` saved, through
    the NIRExport callback and `exodus-lightning export`, and both files compute what the
    network computes."""
    from tests.test_readme import readme_block

    (workdir / "my_nets.py").write_text(readme_block("# my_nets.py"))
    monkeypatch.syspath_prepend(str(workdir))
    monkeypatch.delitem(sys.modules, "my_nets", raising=False)
    with pytest.warns(NIRLossWarning, match="reset='subtract'"):  # the callback exports
        cli = build_cli(["fit", *SMALL_RANDMAN, "--model.network=my_nets.TwoLayerSNN",
                         "--trainer.max_epochs=1", "--trainer.logger=false",
                         "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
                         "--trainer.callbacks+=exodus_lightning.callbacks.NIRExport"])
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, NIRExport)]
    checkpoint = Path(cli.trainer.checkpoint_callback.best_model_path)
    output = workdir / "my_nets.nir"
    monkeypatch.setattr(sys, "argv", ["exodus-lightning", "export", "--ckpt_path",
                                      str(checkpoint), "--output", str(output)])
    with pytest.warns(NIRLossWarning, match="reset='subtract'"):
        cli_main()
    assert f"Wrote {output}" in capsys.readouterr().err
    network = SpikingClassifier.load_from_checkpoint(checkpoint, map_location="cpu").network
    assert type(network).__name__ == "TwoLayerSNN" and not hasattr(network, "input_shape")
    network.eval()
    x = (torch.rand(4, 50, 20, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    for path in (output, callback.path):
        loaded = from_nir(path)
        enn.reset_states(network)
        with torch.no_grad():
            expected = network(x)
            assert expected.abs().sum() > 0
            torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)


def test_export_of_an_unusable_file_ends_with_one_line(workdir, monkeypatch, capsys):
    bad = workdir / "empty.ckpt"
    bad.write_bytes(b"")
    monkeypatch.setattr(sys, "argv", ["exodus-lightning", "export", "--ckpt_path", str(bad)])
    with pytest.raises(SystemExit) as exit_info:
        cli_main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("exodus-lightning export: error:") and "empty.ckpt" in err


def test_export_without_nir_ends_with_one_line_saying_what_to_install(workdir, monkeypatch,
                                                                       capsys):
    monkeypatch.setitem(sys.modules, "nir", None)  # as if not installed: importing it fails
    for name in [m for m in sys.modules if m.startswith("exodus_lightning.nir")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "argv", ["exodus-lightning", "export", "--ckpt_path", "x.ckpt"])
    with pytest.raises(SystemExit) as exit_info:
        cli_main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("exodus-lightning export: error:") and "Traceback" not in err
    assert "pip install 'exodus-lightning[nir]'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_export_runs_as_a_command(checkpoint, workdir):
    result = run_script(["export", "--ckpt_path", str(checkpoint), "--output", "model.nir",
                         "--dt", "0.001"], cwd=workdir)
    assert result.returncode == 0, result.stderr
    graph = nir.read(workdir / "model.nir")
    network = SpikingClassifier.load_from_checkpoint(checkpoint, map_location="cpu").network
    steps = [float(m.tau_mem) for m in network.modules() if isinstance(m, enn.LIF)]
    # dt = 1 ms: a τ_mem of n steps is n / 1000 in the graph.
    taus = [float(node.tau.flat[0]) for node in graph.nodes.values()
            if isinstance(node, nir.LIF)]
    assert len(taus) == len(steps) > 0
    assert taus == pytest.approx([n * 1e-3 for n in steps], rel=1e-9)


@pytest.mark.parametrize("logger", ["false", "default"], ids=["no_logger", "wandb_offline"])
def test_callback_writes_model_nir_beside_the_best_checkpoint(logger, workdir):
    args = ["fit", *SMALL_RANDMAN, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1", "--model.network.init_args.max_spikes_per_step=1",
            "--trainer.callbacks+=exodus_lightning.callbacks.NIRExport"]
    if logger == "false":
        args.append("--trainer.logger=false")
    cli = build_cli(args)
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, NIRExport)]
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    assert callback.path == best.with_name("model.nir") and callback.path.exists()
    network = SpikingClassifier.load_from_checkpoint(best, map_location="cpu").network.eval()
    loaded = from_nir(callback.path)
    x = (torch.rand(2, 30, *network.input_shape) < 0.2).float()
    enn.reset_states(network)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), network(x), rtol=0, atol=0)


def test_callback_refuses_a_bad_dt_before_training():
    for dt in (0, -1.0, float("inf"), True):
        with pytest.raises(ValueError, match="NIRExport: dt must be a positive number"):
            NIRExport(dt=dt)


@pytest.mark.parametrize("failure", ["to_nir", "write"])
def test_callback_warns_instead_of_raising_when_the_export_fails(failure, tmp_path,
                                                                 monkeypatch):
    """Training is over when the callback runs: whatever goes wrong (here a plain ValueError
    from to_nir, as nir's own checks raise, or a write that fails half-way) is a warning, and
    no file is left."""
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import ModelCheckpoint

    import exodus_lightning.nir

    network = torch.nn.Sequential(torch.nn.Linear(4, 3), enn.LIF(tau_mem=5.0, reset="zero",
                                                                 max_spikes_per_step=1))
    best = tmp_path / "best.ckpt"
    torch.save({"state_dict": {f"network.{k}": v for k, v in network.state_dict().items()}},
               best)
    checkpoint = ModelCheckpoint(dirpath=tmp_path)
    checkpoint.best_model_path = str(best)
    trainer = SimpleNamespace(checkpoint_callbacks=[checkpoint], loggers=[])

    def fail(*args, **kwargs):
        if failure == "write":
            Path(args[0]).write_text("half a file")
            raise OSError("no space left on device")
        raise ValueError("Type inference failed")

    if failure == "write":
        monkeypatch.setattr(nir, "write", fail)
    else:
        monkeypatch.setattr(exodus_lightning.nir, "to_nir", fail)
    callback = NIRExport(input_shape=(4,))
    problem = "OSError: no space left" if failure == "write" else "ValueError: Type inference"
    with pytest.warns(NIRExportWarning, match=f"no model.nir written: {problem}"):
        callback.on_fit_end(trainer, SimpleNamespace(network=network))
    assert callback.path is None and not (tmp_path / "model.nir").exists()


def test_readme_nir_snippet_round_trips_a_checkpoint(checkpoint, workdir):
    """docs/nir.md's Python block, run as written on a real checkpoint: after its reset, the
    loaded graph computes what the network computes."""
    from tests.test_readme import readme_block

    code = readme_block("import nir\n", "docs/nir.md")
    code = code.replace("logs/.../best.ckpt", str(checkpoint))
    namespace = {}  # the block defines everything it uses
    with pytest.warns(NIRLossWarning):
        exec(compile(code, "docs/nir.md", "exec"), namespace)
    network, loaded = namespace["network"], namespace["loaded"]
    x = (torch.rand(4, 30, 20, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), network.eval()(x), rtol=0, atol=0)
