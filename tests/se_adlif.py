"""The authors' SE-adLIF (IGITUGraz/SE-adlif) for the adLIF tests: a loop written from their
``SEAdLIF.forward`` in its own arithmetic, and their module itself, imported from a copy of
their repository when there is one (``SE_ADLIF_SRC``: a checkout or a bare git directory)."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

TAU_U, TAU_W, Q = (5.0, 25.0), (60.0, 300.0), 120.0  # the authors' SHD/SSC configs
SLAYER_ALPHA, SLAYER_C = 5.0, 0.4


def slayer(u, threshold):
    """The authors' surrogate c·α/2·exp(−α·|u − θ|), written out (not our SingleExponential)."""
    return SLAYER_C * SLAYER_ALPHA / 2 * torch.exp(-SLAYER_ALPHA * (u - threshold).abs())


def decay(kappa, tau_range):
    """Their TauTrainer: τ by linear interpolation of κ between the bounds, exp(−dt/τ), dt = 1."""
    return torch.exp(-1.0 / (kappa * tau_range[1] + (1.0 - kappa) * tau_range[0]))


def authors_loop(x, kappa_u, kappa_w, a_raw, b_raw, u0, w0, threshold=1.0):
    """SEAdLIF.forward step by step: u with (1 − α)·(x − w), the spike as heaviside plus
    (u − θ − detached)·detached surrogate, u·(1 − detached spike), then w from the new u and
    spike with the factor q outside. Returns spikes, pre-reset u, w trace, u_last, w_last."""
    alpha, beta = decay(kappa_u, TAU_U), decay(kappa_w, TAU_W)
    u, w = u0, w0
    spikes, us, ws = [], [], []
    for x_t in x.unbind(1):
        u = alpha * u + (1.0 - alpha) * (x_t - w)
        us.append(u)
        shifted = u - threshold
        z = (torch.heaviside(shifted, torch.zeros((), dtype=shifted.dtype)).detach()
             + (shifted - shifted.detach()) * slayer(u, threshold).detach())
        u = u * (1 - z.detach())
        w = beta * w + (1.0 - beta) * (a_raw * u + b_raw * z) * Q
        spikes.append(z)
        ws.append(w)
    return torch.stack(spikes, 1), torch.stack(us, 1), torch.stack(ws, 1), u, w


_DEFAULT_SOURCE = "/work/.mirror/IGITUGraz+SE-adlif/repo"  # where the fetch tool puts a copy
_FILES = ("models/alif.py", "models/helpers.py", "module/tau_trainers.py")


def _authors_source(tmp_path: Path) -> Path | None:
    """A directory holding the authors' files: SE_ADLIF_SRC (or the default copy) as a checkout,
    or their files extracted from it as a git directory; None when there is neither."""
    source = Path(os.environ.get("SE_ADLIF_SRC", _DEFAULT_SOURCE))
    if all((source / f).is_file() for f in _FILES):
        return source
    if not (source / "HEAD").is_file():
        return None
    for name in _FILES:
        shown = subprocess.run(["git", f"--git-dir={source}", "show", f"HEAD:{name}"],
                               capture_output=True, text=True)
        if shown.returncode != 0:
            return None
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(shown.stdout)
    return tmp_path


class _Config(dict):
    """What SEAdLIF reads from its hydra config: attributes and .get."""

    __getattr__ = dict.__getitem__


def authors_layer(tmp_path, monkeypatch, inputs: int, neurons: int):
    """Their SEAdLIF (feed-forward, our test settings) in float64, or a skip when there is no
    copy of their code. Their top-level packages ``models`` and ``module`` are imported for this
    test only."""
    source = _authors_source(tmp_path)
    if source is None:
        pytest.skip("no copy of IGITUGraz/SE-adlif (set SE_ADLIF_SRC to a checkout)")
    # Their module imports omegaconf only for a type hint; without it, a stand-in name will do.
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        monkeypatch.setitem(sys.modules, "omegaconf", types.SimpleNamespace(DictConfig=dict))
    for name in ("models", "models.alif", "models.helpers", "module", "module.tau_trainers"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(source))
    try:
        from models.alif import SEAdLIF
    finally:  # keep their package names out of the rest of the session
        for name in [n for n in sys.modules if n.split(".")[0] in ("models", "module")]:
            if str(source) in str(getattr(sys.modules[name], "__file__", "") or ""):
                monkeypatch.delitem(sys.modules, name)
    cfg = _Config(input_size=inputs, n_neurons=neurons, tau_u_range=list(TAU_U),
                  tau_w_range=list(TAU_W), q=Q, alpha=SLAYER_ALPHA, c=SLAYER_C,
                  use_recurrent=False)
    return SEAdLIF(cfg).double()
