"""from_sinabs / to_sinabs: module trees converted both ways give the same outputs and grads."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch
from torch import nn

from exodus_lightning import convert
from exodus_lightning import nn as enn

sl = pytest.importorskip("sinabs.layers")
sa = pytest.importorskip("sinabs.activation")


class Block(nn.Module):
    """A nested, non-Sequential module: conversion walks any tree."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.spike = sl.IAFSqueeze(batch_size=2, spike_threshold=0.7, min_v_mem=-0.5,
                                   spike_fn=sa.MaxSpike(2))

    def forward(self, x):
        return self.spike(self.conv(x))


def sinabs_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        sl.FlattenTime(), Block(), sl.UnflattenTime(batch_size=2), nn.Flatten(2),
        nn.Linear(48, 8),
        sl.LIF(torch.linspace(5, 20, 8), tau_syn=4.0, min_v_mem=0.1, record_states=True,
               surrogate_grad_fn=sa.PeriodicExponential(), reset_fn=sa.MembraneSubtract(0.8)),
        nn.Linear(8, 6),
        sl.LIFRecurrent(10.0, nn.Linear(6, 6), norm_input=False, train_alphas=True,
                        reset_fn=sa.MembraneReset(), surrogate_grad_fn=sa.MultiGaussian()),
        nn.Linear(6, 3), sl.ExpLeak(6.0, min_v_mem=-1.0),
    )


def forward_backward(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_()
    out = model(x)
    g = torch.Generator().manual_seed(2)
    (out * torch.randn(out.shape, generator=g)).sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return [out.detach(), x.grad, *grads]


def assert_all_close(got: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_round_trip_keeps_outputs_gradients_and_states():
    original = sinabs_model()
    x = torch.rand(2, 10, 2, 4, 4) * 3
    with torch.no_grad():
        original(x)  # states to carry over
    ours = convert.from_sinabs(original)
    back = convert.to_sinabs(ours)

    kinds = [type(m) for m in ours.modules()]
    assert enn.IAFSqueeze in kinds and enn.LIF in kinds and enn.LIFRecurrent in kinds
    assert enn.ExpLeak in kinds and not any(t.__module__.startswith("sinabs.layers.lif")
                                            for t in kinds)
    assert type(original[5]) is sl.LIF  # the original is left as it was
    assert type(back[5]) is sl.LIF and type(back[7]) is sl.LIFRecurrent
    assert isinstance(ours[5].surrogate_grad_fn, enn.surrogate.PeriodicExponential)  # fused
    assert ours[7].reset == "zero" and ours[1].spike.max_spikes_per_step == 2
    torch.testing.assert_close(ours[5].v_mem, original[5].v_mem)

    expected = forward_backward(original, x)
    assert expected[0].abs().sum() > 0
    assert_all_close(forward_backward(ours, x), expected)
    assert_all_close(forward_backward(back, x), expected)


def test_requires_grad_and_dtype_carry_over():
    layer = sl.LIF(10.0, tau_syn=3.0).double()
    layer.tau_syn.requires_grad_(False)
    ours = convert.from_sinabs(layer)
    assert isinstance(ours, enn.LIF) and ours.tau_mem.dtype == torch.float64
    assert ours.tau_mem.requires_grad and not ours.tau_syn.requires_grad
    assert not convert.to_sinabs(ours).tau_syn.requires_grad


def test_unsupported_activation_names_the_layer():
    class CustomSpike(torch.autograd.Function):
        required_states = ["v_mem"]

    model = nn.Sequential(nn.Linear(2, 2), sl.IAF(spike_fn=CustomSpike))
    with pytest.raises(enn.UnsupportedActivationError, match=r"^1 \(sinabs.*IAF\): spike_fn"):
        convert.from_sinabs(model)


def test_subclasses_are_left_alone():
    class MyLIF(sl.LIF):
        pass

    model = nn.Sequential(MyLIF(5.0))
    assert type(convert.from_sinabs(model)[0]) is MyLIF


def _fake_exodus(name: str, base: type) -> type:
    """A class that looks like sinabs-exodus' (which needs CUDA to install)."""
    return type(name, (base,), {"__module__": "sinabs.exodus.layers.fake"})


def test_sinabs_exodus_layers_are_recognised():
    lif = _fake_exodus("LIF", sl.LIF)(8.0, tau_syn=3.0, min_v_mem=-0.5)
    lif.decay_early = False
    leak = _fake_exodus("ExpLeak", sl.ExpLeak)(5.0, min_v_mem=-0.2)
    with pytest.warns(UserWarning) as records:
        ours = convert.from_sinabs(nn.Sequential(lif, leak))
    messages = " ".join(str(r.message) for r in records)
    assert "clips at min_v_mem before spiking" in messages and "ignores min_v_mem" in messages
    assert isinstance(ours[0], enn.LIF) and ours[0].decay_early is False
    assert ours[1].min_v_mem is None


def test_to_sinabs_refuses_what_sinabs_cannot_compute():
    with pytest.raises(convert.ConversionError, match="decay_early=False"):
        convert.to_sinabs(nn.Sequential(enn.LIF(5.0, tau_syn=2.0, decay_early=False)))
    with pytest.raises(convert.ConversionError, match="ExpLeak decay_early=True"):
        convert.to_sinabs(enn.ExpLeak(5.0, decay_early=True))
    with pytest.warns(UserWarning, match="gradient='slayer'"):
        convert.to_sinabs(enn.LIF(5.0, gradient="slayer"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert.to_sinabs(enn.LIF(5.0, reset="zero"))  # sinabs' own gradient: no warning


@pytest.mark.skipif("sinabs.exodus" in sys.modules, reason="sinabs-exodus is installed")
def test_to_sinabs_exodus_needs_the_package():
    try:
        import sinabs.exodus  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("sinabs-exodus is installed")
    with pytest.raises(ImportError, match="sinabs-exodus"):
        convert.to_sinabs(enn.LIF(5.0), exodus=True)


F = 4


def _alif_case(name: str) -> tuple[nn.Module, torch.Tensor]:
    """A sinabs model with one ALIF-family layer, and an input that makes it spike (several
    spikes raise the threshold) and pushes the membrane onto min_v_mem where one is set."""
    from sinabs.layers.alif import ALIFSqueeze  # sinabs 3.1.3 does not export it

    torch.manual_seed(0)
    per_neuron = dict(tau_mem=torch.linspace(5, 20, F), tau_adapt=torch.linspace(10, 40, F),
                      adapt_scale=torch.linspace(0.5, 2.0, F))
    cases = {
        "scalar": lambda: sl.ALIF(8.0, 25.0),
        "per_neuron_tau_syn": lambda: sl.ALIF(**per_neuron, tau_syn=3.0,
                                              surrogate_grad_fn=sa.PeriodicExponential()),
        "min_v_mem_reset_zero": lambda: sl.ALIF(6.0, 20.0, min_v_mem=-0.3,
                                                reset_fn=sa.MembraneReset()),
        "train_alphas_multi_spike": lambda: sl.ALIF(6.0, 20.0, train_alphas=True,
                                                    norm_input=False, spike_fn=sa.MultiSpike),
        "trained_b0_and_adapt_scale": lambda: sl.ALIF(
            6.0, 20.0, spike_threshold=nn.Parameter(torch.tensor(0.8)),
            adapt_scale=nn.Parameter(torch.full((F,), 1.2))),
        "squeeze": lambda: ALIFSqueeze(batch_size=2, **per_neuron),
        "recurrent": lambda: sl.ALIFRecurrent(**per_neuron, rec_connect=nn.Linear(F, F),
                                              min_v_mem=-0.5),
    }
    model = nn.Sequential(nn.Linear(3, F), cases[name]())
    with torch.no_grad():
        model[0].weight.uniform_(0.1, 0.6)  # every neuron driven up
    scale = 3.0 if name == "train_alphas_multi_spike" else 12.0
    x = (torch.rand(2, 12, 3) + 0.2) * scale
    if name == "squeeze":
        model.insert(0, nn.Flatten(0, 1))
    return model, x


def _named_forward_backward(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Output, every state of the spiking layer after the call, and every gradient by name."""
    x = x.clone().requires_grad_()
    out = model(x)
    g = torch.Generator().manual_seed(2)
    (out * torch.randn(out.shape, generator=g)).sum().backward()
    layer = model[-1]
    result = {"out": out, "grad_x": x.grad}
    result |= {name: getattr(layer, name) for name in ("v_mem", "b", "spike_threshold")}
    # None and zeros alike: with a reset to zero sinabs' graph never reaches tau_adapt, ours
    # gives it a zero gradient.
    result |= {f"grad_{n}": torch.zeros_like(p) if p.grad is None else p.grad
               for n, p in model.named_parameters() if p.requires_grad}
    return {name: value.detach() for name, value in result.items()}


def _assert_same(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-4, atol=1e-5, msg=name)


ALIF_CASES = ["scalar", "per_neuron_tau_syn", "min_v_mem_reset_zero", "train_alphas_multi_spike",
              "trained_b0_and_adapt_scale", "squeeze", "recurrent"]


@pytest.mark.parametrize("name", ALIF_CASES)
def test_alif_family_round_trip_keeps_outputs_states_and_gradients(name):
    original, x = _alif_case(name)
    with torch.no_grad():
        original(x)  # states to carry over: the next call continues from them
    ours = convert.from_sinabs(original)
    back = convert.to_sinabs(ours)
    kind = type(original[-1]).__name__
    assert type(ours[-1]) is getattr(enn, kind)
    assert type(back[-1]) is type(original[-1])
    for state in ("v_mem", "b", "spike_threshold"):
        torch.testing.assert_close(getattr(ours[-1], state), getattr(original[-1], state))
    assert {n: p.requires_grad for n, p in ours.named_parameters()} == {
        n: p.requires_grad for n, p in original.named_parameters()}

    expected = _named_forward_backward(original, x)
    assert expected["out"].sum() >= 8 and expected["grad_x"].abs().sum() > 0
    _assert_same(_named_forward_backward(ours, x), expected)
    _assert_same(_named_forward_backward(back, x), expected)


def test_from_sinabs_leaves_the_sinabs_alif_untouched():
    """sinabs' arg_dict detaches a train_alphas ALIF's α parameters in place: not called."""
    original, _ = _alif_case("train_alphas_multi_spike")
    convert.from_sinabs(original)
    assert original[-1].alpha_mem.requires_grad and original[-1].alpha_adapt.requires_grad


@pytest.mark.parametrize("build", [
    lambda: enn.adLIF(3),
    lambda: enn.adLIFRecurrent(3),
    lambda: type("MyLIF", (enn.LIF,), {})(5.0),
], ids=["adLIF", "adLIFRecurrent", "subclass"])
def test_to_sinabs_refuses_a_layer_sinabs_has_no_class_for(build):
    layer = build()
    model = nn.Sequential(nn.Linear(2, 3), nn.Sequential(layer))
    kind = type(layer).__name__
    with pytest.raises(convert.ConversionError, match=rf"^1\.0 \(.*{kind}\): sinabs has no such"):
        convert.to_sinabs(model)


def test_to_sinabs_exodus_refuses_alif(monkeypatch):
    import types

    # sinabs-exodus needs CUDA to install: a stand-in module (it has no ALIF layers).
    fake = types.ModuleType("sinabs.exodus.layers")
    monkeypatch.setitem(sys.modules, "sinabs.exodus", types.ModuleType("sinabs.exodus"))
    monkeypatch.setitem(sys.modules, "sinabs.exodus.layers", fake)
    for layer in (enn.ALIF(5.0, 20.0), enn.ALIFRecurrent(5.0, 20.0, nn.Linear(3, 3))):
        with pytest.raises(convert.ConversionError, match="sinabs-exodus has none"):
            convert.to_sinabs(nn.Sequential(layer), exodus=True)
