"""Random LIF test cases shared by the nn tests: a layer and the same model as a sinabs loop."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from exodus_lightning import nn as enn
from exodus_lightning.nn import surrogate as sg
from tests.nn.sinabs_loop import lif_loop

FEATURES = [(5,), (3, 2, 2)]

configs = st.fixed_dictionaries({
    "seed": st.integers(0, 2**16),
    "batch": st.integers(1, 3),
    "time": st.integers(1, 12),
    "features": st.sampled_from(FEATURES),
    "param_shape": st.sampled_from(["scalar", "channel", "neuron"]),
    "max_spikes": st.sampled_from([None, 1, 2]),
    "reset": st.sampled_from(["subtract", "zero"]),
    "gradient": st.sampled_from(["exodus", "slayer"]),
    "tau_syn": st.booleans(),
    "clip": st.booleans(),
    "norm_input": st.booleans(),
    "train_alphas": st.booleans(),
})


@dataclass
class Case:
    layer: enn.LIF
    x: torch.Tensor
    v0: torch.Tensor
    i0: torch.Tensor | None
    cfg: dict


def param_shape(kind: str, features: tuple[int, ...]) -> tuple[int, ...]:
    if kind == "scalar":
        return ()
    if kind == "channel":
        return (features[0],) + (1,) * (len(features) - 1)
    return features


def make_case(cfg: dict, dtype=torch.float64, surrogate=None, backend="extension") -> Case:
    """A LIF layer with random parameters (in dtype), an input and initial states."""
    g = torch.Generator().manual_seed(cfg["seed"])
    features = cfg["features"]
    shape = param_shape(cfg["param_shape"], features)

    def uniform(lo, hi, size=shape):
        return lo + (hi - lo) * torch.rand(size, generator=g, dtype=dtype)

    layer = enn.LIF(
        tau_mem=uniform(4.0, 30.0),
        tau_syn=uniform(2.0, 8.0) if cfg["tau_syn"] else None,
        spike_threshold=uniform(0.6, 1.4),
        min_v_mem=-uniform(0.2, 1.0) if cfg["clip"] else None,
        max_spikes_per_step=cfg["max_spikes"],
        reset=cfg["reset"],
        gradient=cfg["gradient"],
        norm_input=cfg["norm_input"],
        train_alphas=cfg["train_alphas"],
        surrogate_grad_fn=sg.SingleExponential() if surrogate is None else surrogate,
        record_states=True,
        train_threshold=True,
        backend=backend,
    ).to(dtype)
    size = (cfg["batch"], cfg["time"], *features)
    # Normalised input is scaled by (1 - alpha) ~ 0.1: make it large enough to spike, and some
    # steps large enough for several spikes.
    scale = 12.0 if cfg["norm_input"] else 1.2
    x = (torch.randn(size, generator=g, dtype=dtype) + 0.4) * scale
    v0 = uniform(-0.3, 0.9, (cfg["batch"], *features))
    i0 = uniform(-0.5, 0.5, (cfg["batch"], *features)) if cfg["tau_syn"] else None
    return Case(layer, x, v0, i0, cfg)


def run_layer(case: Case, weights: list[torch.Tensor]) -> dict:
    """Forward + backward through the layer; outputs and gradients by name."""
    layer = case.layer
    x = case.x.clone().requires_grad_()
    v0 = case.v0.clone().requires_grad_()
    layer.v_mem = v0
    i0 = None
    if case.i0 is not None:
        i0 = case.i0.clone().requires_grad_()
        layer.i_syn = i0
    spikes = layer(x)
    out = {"spikes": spikes, "v_mem": layer.recordings["v_mem"], "v_last": layer.v_mem}
    if i0 is not None:
        out["i_last"] = layer.i_syn
    loss = sum((out[k] * w).sum() for k, w in zip(out, weights, strict=False))
    loss.backward()
    grads = {"x": x.grad, "v0": v0.grad}
    if i0 is not None:
        grads["i0"] = i0.grad
    grads |= {name: param.grad for name, param in layer.named_parameters()}
    return {k: v.detach() for k, v in out.items()} | {"grad_" + k: v for k, v in grads.items()}


def run_loop(case: Case, weights: list[torch.Tensor]) -> dict:
    """The same forward + backward through the sinabs loop, on copies of the layer's tensors."""
    layer, cfg = case.layer, case.cfg
    params = {name: param.detach().clone().requires_grad_()
              for name, param in layer.named_parameters()}
    if cfg["train_alphas"]:
        alpha_mem, alpha_syn = params["alpha_mem"], params.get("alpha_syn")
    else:
        alpha_mem = torch.exp(-1 / params["tau_mem"])
        alpha_syn = torch.exp(-1 / params["tau_syn"]) if "tau_syn" in params else None
    x = case.x.clone().requires_grad_()
    v0 = case.v0.clone().requires_grad_()
    i0 = None if case.i0 is None else case.i0.clone().requires_grad_()
    min_v = layer.min_v_mem
    spikes, _, v_post, v_last, i_last = lif_loop(
        x, alpha_mem, alpha_syn, params["spike_threshold"], v0, i0, min_v_mem=min_v,
        max_spikes=cfg["max_spikes"], surrogate=layer.surrogate_grad_fn, reset=cfg["reset"],
        gradient=cfg["gradient"], norm_input=cfg["norm_input"],
    )
    out = {"spikes": spikes, "v_mem": v_post, "v_last": v_last}
    if i0 is not None:
        out["i_last"] = i_last
    loss = sum((out[k] * w).sum() for k, w in zip(out, weights, strict=False))
    loss.backward()
    grads = {"x": x.grad, "v0": v0.grad}
    if i0 is not None:
        grads["i0"] = i0.grad
    grads |= {name: param.grad for name, param in params.items()}
    return {k: v.detach() for k, v in out.items()} | {"grad_" + k: v for k, v in grads.items()}


def loss_weights(case: Case) -> list[torch.Tensor]:
    """Random upstream gradients for spikes, the (post-reset) v_mem trace, v_last and i_last."""
    g = torch.Generator().manual_seed(case.cfg["seed"] + 1)
    full, state = case.x.shape, case.v0.shape
    return [torch.randn(s, generator=g, dtype=case.x.dtype) for s in (full, full, state, state)]
