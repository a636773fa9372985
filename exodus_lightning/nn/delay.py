"""Linear layer with a learnable synaptic delay per synapse (DCLS delays, Hammouamri et al. 2024).

Every synapse i -> o has a weight w[o, i] and a real-valued delay d[o, i] in [0, D − 1] time
steps (D = max_delay). The delay is spread over the integer lags k = 0 … D − 1 by a normalised
Gaussian of width σ, so the output is a causal convolution over time:

    K[o, i, k] = exp(−(k − d[o, i])² / (2σ²)) / Σ_k' exp(−(k' − d[o, i])² / (2σ²))
    y[b, t, o] = Σ_i Σ_k w[o, i] · K[o, i, k] · x[b, t − k, i]  (+ bias[o]),   x[b, t < 0] = 0

The gradient reaches d through K. σ is large at first (every delay feels the whole window) and
is sharpened during training (callbacks.SigmaAnnealing); at σ → 0 the kernel becomes one-hot at
round(d) and the layer shifts each input by an integer delay (the "rounded" mode, used for
evaluation as in the paper). See docs/delays.md for the parametrisation and its sources.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from exodus_lightning.ops import check_choice

ROUND_DELAYS = ("eval", "always", "never")
SIGMA_SCHEDULES = ("exponential", "linear")


def gaussian_delay_kernel(delays: Tensor, sigma: float | Tensor, max_delay: int) -> Tensor:
    """(out, in) delays -> (out, in, max_delay) kernel K[o, i, k], each row summing to 1.

        K[o, i, k] = softmax_k(−(k − d[o, i])² / (2σ²))

    A softmax, so that a σ much smaller than the distance to the nearest lag cannot underflow
    into 0 / 0.
    """
    lags = torch.arange(max_delay, device=delays.device, dtype=delays.dtype)
    logits = -0.5 * ((lags - delays[..., None]) / sigma) ** 2
    return torch.softmax(logits, dim=-1)


def rounded_delay_kernel(weight: Tensor, delays: Tensor, max_delay: int) -> Tensor:
    """(out, in, max_delay) kernel holding w[o, i] at lag round(d[o, i]) and 0 elsewhere
    (the σ → 0 limit of w · K, differentiable in w only)."""
    lags = delays.detach().round().clamp(0, max_delay - 1).long()
    kernel = weight.new_zeros(*weight.shape, max_delay)
    return kernel.scatter(-1, lags[..., None], weight[..., None])


def delayed_linear(
    x: Tensor,
    weight: Tensor,
    delays: Tensor,
    sigma: float | Tensor,
    max_delay: int,
    bias: Tensor | None = None,
    rounded: bool = False,
) -> Tensor:
    """y[b, t, o] = Σ_i Σ_k w[o, i] · K[o, i, k] · x[b, t − k, i] + bias[o] on (batch, time, in).

    K is the Gaussian kernel of gaussian_delay_kernel, or the one-hot kernel at round(d) when
    rounded. Runs as one conv1d with max_delay − 1 zeros padded on the left of time (causal);
    conv1d correlates, so the kernel is flipped: its tap j holds lag max_delay − 1 − j.
    """
    batch, steps, _ = x.shape
    if steps == 0:
        # conv1d needs at least max_delay padded steps; an empty linear keeps the graph.
        return F.linear(x, weight, bias)
    if rounded:
        kernel = rounded_delay_kernel(weight, delays, max_delay)
    else:
        kernel = weight[..., None] * gaussian_delay_kernel(delays, sigma, max_delay)
    padded = F.pad(x.transpose(1, 2), (max_delay - 1, 0))
    y = F.conv1d(padded, kernel.flip(-1), bias)
    return y.transpose(1, 2)


def _positive_int(name: str, value: int, example: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}; e.g. {name}={example}")
    return int(value)


def _positive_float(name: str, value: float, example: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or (
            math.isinf(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}; e.g. "
                         f"{name}={example}")
    return float(value)


class DelayedLinear(nn.Module):
    """Linear map over (batch, time, in_features) with a learnable delay per synapse.

        y[b, t, o] = Σ_i Σ_k w[o, i] · K[o, i, k] · x[b, t − k, i] + bias[o]

    with K the normalised Gaussian over lags k = 0 … max_delay − 1 centred on the delay
    d[o, i] with width ``sigma`` (see the module docstring). Output (batch, time, out_features),
    causal: y at step t depends on x up to t only; inputs before the first step count as zero
    (the layer keeps no state across calls).

    ``sigma`` is a buffer (saved in checkpoints): set it with ``set_sigma`` or let
    ``callbacks.SigmaAnnealing`` move it from sigma_init to sigma_final over training
    (``anneal_sigma(progress)``). With rounded delays (``round_delays``) the kernel is one-hot at
    round(d): integer delays, the paper's evaluation mode; the weights still get gradients, the
    delays do not.

    The delays are stored as ``delay_param = d / delay_scale``. Adam moves every parameter by
    about lr per step whatever its gradient's scale, so with delay_scale = s the delays move
    s times faster than the weights: the paper's 100 × larger learning rate for the delays,
    with one optimizer. In training mode each forward call first projects delay_param back
    into [0, max_delay − 1] (in place, without gradient, as the authors clamp after every
    optimizer step); otherwise momentum could carry delay_param far out of range, where the
    delay reads clamped and stops responding until it has walked back.

    Args:
        in_features: number of input channels.
        out_features: number of output channels.
        max_delay: D, the number of lags 0 … D − 1; delays lie in [0, D − 1] time steps.
        bias: add a learnable bias per output (the paper: no bias).
        sigma_init: σ at the start of training, in time steps (None: max_delay / 2).
        sigma_final: σ at the end of the annealing (the paper: 0.5).
        round_delays: "eval" (rounded delays in eval mode, Gaussian ones in training: the
            paper), "always" or "never".
        delay_scale: s > 0 in d = s · delay_param (see above; the paper's ratio: 100).
        init_delays: "uniform" (d uniform in [0, D − 1], the paper) or "zero".
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        max_delay: int,
        bias: bool = True,
        sigma_init: float | None = None,
        sigma_final: float = 0.5,
        round_delays: str = "eval",
        delay_scale: float = 1.0,
        init_delays: str = "uniform",
    ) -> None:
        super().__init__()
        self.in_features = _positive_int("in_features", in_features, "700")
        self.out_features = _positive_int("out_features", out_features, "256")
        self.max_delay = _positive_int("max_delay", max_delay, "25")
        if sigma_init is None:
            sigma_init = self.max_delay / 2
        self.sigma_init = _positive_float("sigma_init", sigma_init, str(self.max_delay / 2))
        self.sigma_final = _positive_float("sigma_final", sigma_final, "0.5")
        self.round_delays = round_delays
        self.delay_scale = _positive_float("delay_scale", delay_scale, "100.0")
        check_choice("init_delays", init_delays, ("uniform", "zero"))
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features))
        self.delay_param = nn.Parameter(torch.empty(self.out_features, self.in_features))
        self.bias = nn.Parameter(torch.empty(self.out_features)) if bias else None
        self.register_buffer("sigma", torch.tensor(self.sigma_init))
        self.reset_parameters(init_delays)

    def reset_parameters(self, init_delays: str = "uniform") -> None:
        """Weights and bias as nn.Linear (Kaiming-uniform); delays uniform in [0, D − 1] or 0."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)
        with torch.no_grad():
            if init_delays == "uniform":
                self.delay_param.uniform_(0, self.max_delay - 1)
            else:
                self.delay_param.zero_()
            self.delay_param /= self.delay_scale

    @property
    def delays(self) -> Tensor:
        """The delays d[o, i] in time steps, read clamped into [0, max_delay − 1].

        The clamp passes the gradient through unchanged: torch.clamp's gradient is zero at the
        bounds themselves, where the projection puts a delay that left the range, and such a
        delay could never move back.
        """
        delays = self.delay_param * self.delay_scale
        return delays + (delays.clamp(0, self.max_delay - 1) - delays).detach()

    @property
    def round_delays(self) -> str:
        """When to use rounded delays: "eval", "always" or "never"."""
        return self._round_delays

    @round_delays.setter
    def round_delays(self, value: str) -> None:
        check_choice("round_delays", value, ROUND_DELAYS)
        self._round_delays = value

    @property
    def rounded(self) -> bool:
        """Whether the next forward call uses integer (rounded) delays."""
        return self.round_delays == "always" or (self.round_delays == "eval"
                                                 and not self.training)

    def clamp_delays_(self) -> None:
        """Project the stored delays into [0, max_delay − 1], in place."""
        with torch.no_grad():
            self.delay_param.clamp_(0, (self.max_delay - 1) / self.delay_scale)

    def set_sigma(self, sigma: float) -> None:
        """Set the Gaussian's width σ > 0 (time steps)."""
        self.sigma.fill_(_positive_float("sigma", sigma, "0.5"))

    def anneal_sigma(self, progress: float, schedule: str = "exponential",
                     sigma_offset: float = 0.0) -> float:
        """Set σ for a point of the annealing, progress in [0, 1] (clipped), and return it.

            exponential:  σ = c + (σ_init − c) · ((σ_final − c) / (σ_init − c))^progress
            linear:       σ = σ_init + (σ_final − σ_init) · progress

        c = sigma_offset < min(σ_init, σ_final): the exponential shrinks σ − c (the linear
        schedule is the same for every c). The authors' code anneals SIG exponentially and
        their kernel's width is SIG + 0.27: c = 0.27 gives their σ at every epoch.
        """
        check_choice("schedule", schedule, SIGMA_SCHEDULES)
        offset = self.check_sigma_offset(sigma_offset)
        progress = min(max(float(progress), 0.0), 1.0)
        if schedule == "exponential":
            ratio = (self.sigma_final - offset) / (self.sigma_init - offset)
            sigma = offset + (self.sigma_init - offset) * ratio ** progress
        else:
            sigma = self.sigma_init + (self.sigma_final - self.sigma_init) * progress
        self.set_sigma(sigma)
        return sigma

    def check_sigma_offset(self, sigma_offset: float) -> float:
        """sigma_offset as a float, if it is a finite number below sigma_init and sigma_final."""
        lowest = min(self.sigma_init, self.sigma_final)
        if (isinstance(sigma_offset, bool) or not isinstance(sigma_offset, (int, float))
                or not math.isfinite(sigma_offset) or not sigma_offset < lowest):
            raise ValueError(f"sigma_offset must be a finite number below sigma_init and "
                             f"sigma_final ({lowest:g} for this layer), got {sigma_offset!r}; "
                             f"e.g. 0 (the whole σ annealed) or 0.27 (the authors' kernel)")
        return float(sigma_offset)

    def forward(self, x: Tensor) -> Tensor:
        """(batch, time, in_features) -> (batch, time, out_features)."""
        self._check_input(x)
        if self.training and torch.is_grad_enabled():
            self.clamp_delays_()
        return delayed_linear(x, self.weight, self.delays, self.sigma, self.max_delay,
                              self.bias, self.rounded)

    def _check_input(self, x: Tensor) -> None:
        name = type(self).__name__
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"{name} expects a floating tensor (batch, time, in_features), got "
                            f"{got}; convert the input with x.float()")
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f"{name} expects input of shape (batch, time, {self.in_features}), "
                             f"got {tuple(x.shape)}; flatten the features first (nn.Flatten("
                             f"start_dim=2)) or set in_features={x.shape[-1] if x.dim() else 0}")
        # Under autocast conv1d casts both operands itself.
        if x.dtype != self.weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f"{name} has {self.weight.dtype} parameters but got a {x.dtype} "
                            f"input; convert one of them (layer.to({x.dtype}) or "
                            f"x.to({self.weight.dtype}))")

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"max_delay={self.max_delay}, bias={self.bias is not None}, "
                f"sigma={float(self.sigma):g}, round_delays={self.round_delays!r}, "
                f"delay_scale={self.delay_scale:g}")
