"""Spiking and readout layers built from names, so a config can switch neuron kind and gradient."""

from __future__ import annotations

from torch import nn

from exodus_lightning import nn as enn
from exodus_lightning.ops import check_choice

NEURONS = ("lif", "iaf", "alif", "adlif")
READOUTS = ("exp_leak", "lif", "linear")


def spiking_layer(
    neuron: str,
    tau_mem: float,
    tau_syn: float | None,
    spike_threshold: float,
    max_spikes_per_step: int | None,
    norm_input: bool,
    gradient: str,
    backend: str,
    tau_adapt: float = 200.0,
    adapt_scale: float = 1.8,
    recurrent_size: int | None = None,
    num_neurons: int | None = None,
) -> nn.Module:
    """An LIF, IAF, ALIF or adLIF layer on (batch, time, *features); IAF ignores tau_mem and
    norm_input, only ALIF uses tau_adapt and adapt_scale. adLIF (SE-adLIF) has its own trained
    per-neuron parameters in the authors' ranges and needs num_neurons (the layer's width); it
    uses only gradient, backend and recurrent_size of the arguments here.

    max_spikes_per_step is the spike mode: None = multi-spike, 1 = single spike, K = at most K.
    gradient: "exodus" (exact, through the reset) or "slayer" (reset ignored).
    backend: "extension" (fused kernels), "reference" (BPTT through an autograd loop) or "auto".
    recurrent_size: the layer's width, to make it recurrent (its spikes feed back through an
    nn.Linear(recurrent_size, recurrent_size, bias=False) at the next step); None: feed-forward.
    """
    check_choice("neuron", neuron, NEURONS)
    if neuron == "adlif":
        if num_neurons is None:
            raise ValueError("neuron='adlif' needs num_neurons (its per-neuron parameters)")
        if recurrent_size is not None:
            return enn.adLIFRecurrent(num_neurons, gradient=gradient, backend=backend)
        return enn.adLIF(num_neurons, gradient=gradient, backend=backend)
    common = dict(
        tau_syn=tau_syn,
        spike_threshold=spike_threshold,
        max_spikes_per_step=max_spikes_per_step,
        gradient=gradient,
        backend=backend,
    )
    if recurrent_size is not None:
        common["rec_connect"] = nn.Linear(recurrent_size, recurrent_size, bias=False)
    if neuron == "iaf":
        return (enn.IAFRecurrent if recurrent_size else enn.IAF)(**common)
    if neuron == "alif":
        return (enn.ALIFRecurrent if recurrent_size else enn.ALIF)(
            tau_mem=tau_mem, tau_adapt=tau_adapt, adapt_scale=adapt_scale,
            spike_fn=enn.activation.MultiSpike, norm_input=norm_input, **common)
    return (enn.LIFRecurrent if recurrent_size else enn.LIF)(
        tau_mem=tau_mem, norm_input=norm_input, **common)


def readout_layer(
    readout: str,
    tau_mem: float,
    spike_threshold: float,
    gradient: str,
    backend: str,
    norm_input: bool = False,
    train_tau: bool = True,
) -> nn.Module:
    """Neurons after the last linear layer: the network output over time, (batch, time, classes).

    "exp_leak": non-spiking leaky membrane (for the *_membrane losses); "lif": spiking (for the
    spike_count loss); "linear": no neurons, the linear layer's output at every step.
    norm_input scales the neurons' input by (1 − α): v_t = α·v_{t−1} + (1 − α)·x_t, a membrane
    1/(1 − α) times smaller (the leaky integrator readout of SE-adLIF, for instance).
    train_tau: whether tau_mem is a trained parameter (sinabs' default) or stays fixed.
    """
    check_choice("readout", readout, READOUTS)
    if readout == "linear":
        if norm_input:
            raise ValueError("readout_norm_input=True needs neurons in the readout: readout "
                             "'exp_leak' or 'lif' (readout 'linear' has no decay to normalise "
                             "by)")
        if not train_tau:
            raise ValueError("train_readout_tau=False needs neurons in the readout: readout "
                             "'exp_leak' or 'lif' (readout 'linear' has no time constant to "
                             "freeze)")
        return nn.Identity()
    if readout == "exp_leak":
        layer = enn.ExpLeak(tau_mem=tau_mem, norm_input=norm_input, backend=backend)
    else:
        layer = enn.LIF(
            tau_mem=tau_mem,
            spike_threshold=spike_threshold,
            norm_input=norm_input,
            gradient=gradient,
            backend=backend,
        )
    layer.tau_mem.requires_grad_(train_tau)
    return layer
