"""DelayedLinear: values and gradients against a readable loop, causality, the integer-delay
limit, rounded mode, edge cases, sigma annealing and argument errors."""

from __future__ import annotations

import math

import pytest
import torch

from exodus_lightning import nn as enn
from exodus_lightning.nn.delay import delayed_linear, gaussian_delay_kernel


def loop_reference(x, weight, delays, sigma, max_delay, bias=None):
    """y[b, t, o] = Σ_i Σ_k w[o, i] · K[o, i, k] · x[b, t − k, i] (+ bias), one synapse and
    one lag at a time, with K the Gaussian normalised by its explicit sum."""
    batch, steps, inputs = x.shape
    outputs = weight.shape[0]
    columns = []
    for o in range(outputs):
        column = x.new_zeros(batch, steps)
        for i in range(inputs):
            gauss = [torch.exp(-(k - delays[o, i]) ** 2 / (2 * sigma**2))
                     for k in range(max_delay)]
            total = sum(gauss)
            for k in range(min(max_delay, steps)):
                shifted = torch.cat([x.new_zeros(batch, k), x[:, : steps - k, i]], dim=1)
                column = column + weight[o, i] * gauss[k] / total * shifted
        if bias is not None:
            column = column + bias[o]
        columns.append(column)
    return torch.stack(columns, dim=-1)


def shift_reference(x, weight, lags):
    """y[b, t, o] = Σ_i w[o, i] · x[b, t − lag[o, i], i] for integer lags."""
    batch, steps, _ = x.shape
    y = x.new_zeros(batch, steps, weight.shape[0])
    for o in range(weight.shape[0]):
        for i in range(weight.shape[1]):
            k = int(lags[o, i])
            y[:, k:, o] += weight[o, i] * x[:, : steps - k, i]
    return y


def tiny_case(batch=2, steps=7, inputs=3, outputs=2, max_delay=4, dtype=torch.float64):
    x = torch.randn(batch, steps, inputs, dtype=dtype)
    weight = torch.randn(outputs, inputs, dtype=dtype)
    delays = torch.rand(outputs, inputs, dtype=dtype) * (max_delay - 1)
    bias = torch.randn(outputs, dtype=dtype)
    return x, weight, delays, bias


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("sigma", [0.3, 1.0, 5.0])
def test_values_and_gradients_equal_the_loop(with_bias, sigma):
    x, weight, delays, bias = tiny_case()
    bias = bias if with_bias else None
    leaves = [t.requires_grad_() for t in (x, weight, delays, *([bias] if with_bias else []))]
    y = delayed_linear(x, weight, delays, sigma, 4, bias)
    want = loop_reference(x, weight, delays, sigma, 4, bias)
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
    probe = torch.randn_like(y)
    got_grads = torch.autograd.grad((y * probe).sum(), leaves)
    want_grads = torch.autograd.grad((want * probe).sum(), leaves)
    for got, expected in zip(got_grads, want_grads):
        assert expected.abs().sum() > 0
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_float64_gradcheck_of_every_input():
    x, weight, delays, bias = tiny_case(batch=1, steps=5, inputs=2, outputs=2, max_delay=3)
    inputs = tuple(t.requires_grad_() for t in (x, weight, delays, bias))
    assert torch.autograd.gradcheck(
        lambda *a: delayed_linear(a[0], a[1], a[2], 0.8, 3, a[3]), inputs)
    assert torch.autograd.gradgradcheck(
        lambda *a: delayed_linear(a[0], a[1], a[2], 0.8, 3, a[3]), inputs)


def test_float32_matches_the_float64_loop():
    x, weight, delays, bias = tiny_case(batch=3, steps=20, inputs=5, outputs=4, max_delay=6)
    y = delayed_linear(x.float(), weight.float(), delays.float(), 1.5, 6, bias.float())
    want = loop_reference(x, weight, delays, 1.5, 6, bias)
    torch.testing.assert_close(y, want.float(), rtol=2e-5, atol=2e-5)


def test_kernel_is_a_normalised_gaussian_centred_on_the_delay():
    delays = torch.tensor([[2.0, 2.5]], dtype=torch.float64)
    kernel = gaussian_delay_kernel(delays, 0.7, 5)
    torch.testing.assert_close(kernel.sum(-1), torch.ones(1, 2, dtype=torch.float64))
    assert kernel[0, 0].argmax() == 2
    torch.testing.assert_close(kernel[0, 1, 2], kernel[0, 1, 3])  # half way: symmetric
    # Centred in the window 0 … 4, so no side is cut more than the other.
    mean = (kernel[0, 0] * torch.arange(5.0, dtype=torch.float64)).sum()
    torch.testing.assert_close(mean, torch.tensor(2.0, dtype=torch.float64))


def test_output_at_t_does_not_depend_on_later_inputs():
    x, weight, delays, bias = tiny_case(steps=9, max_delay=5)
    y = delayed_linear(x, weight, delays, 2.0, 5, bias)
    for t0 in range(9):
        changed = x.clone()
        changed[:, t0:] += torch.randn_like(changed[:, t0:])
        y_changed = delayed_linear(changed, weight, delays, 2.0, 5, bias)
        torch.testing.assert_close(y_changed[:, :t0], y[:, :t0], rtol=0, atol=0)
        assert not torch.allclose(y_changed[:, t0:], y[:, t0:])


def test_integer_delays_with_tiny_sigma_shift_the_input():
    x, weight, _, _ = tiny_case(steps=10, inputs=4, outputs=3, max_delay=5)
    lags = torch.randint(0, 5, (3, 4))
    y = delayed_linear(x, weight, lags.double(), 0.05, 5)
    torch.testing.assert_close(y, shift_reference(x, weight, lags), rtol=1e-12, atol=1e-12)


def test_rounded_mode_is_the_small_sigma_limit():
    x, weight, delays, bias = tiny_case(steps=12, inputs=4, outputs=3, max_delay=6)
    # Keep every delay at least 0.1 from a half, where rounding would be a coin toss.
    fraction = delays - delays.floor()
    delays = torch.where((fraction - 0.5).abs() < 0.1, delays.floor() + 0.2, delays)
    hard = delayed_linear(x, weight, delays, 1.0, 6, bias, rounded=True)
    soft = delayed_linear(x, weight, delays, 0.02, 6, bias)
    torch.testing.assert_close(hard, soft, rtol=1e-12, atol=1e-12)
    shifted = shift_reference(x, weight, delays.round()) + bias
    torch.testing.assert_close(hard, shifted, rtol=1e-12, atol=1e-12)


def test_rounded_mode_trains_the_weights_not_the_delays():
    x, weight, delays, _ = tiny_case()
    weight.requires_grad_()
    delays.requires_grad_()
    y = delayed_linear(x, weight, delays, 1.0, 4, rounded=True)
    weight_grad, delay_grad = torch.autograd.grad(y.square().sum(), [weight, delays],
                                                  allow_unused=True)
    assert weight_grad.abs().sum() > 0
    assert delay_grad is None or not delay_grad.any()


@pytest.mark.parametrize(("batch", "steps"), [(1, 9), (2, 2), (1, 1), (3, 0)])
def test_short_sequences_single_batch_and_empty_time(batch, steps):
    layer = enn.DelayedLinear(4, 3, max_delay=5).double()
    x = torch.randn(batch, steps, 4, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (batch, steps, 3) and y.dtype == torch.float64
    want = loop_reference(x, layer.weight, layer.delays, float(layer.sigma), 5, layer.bias)
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
    y.sum().backward()  # an empty output still backpropagates (zero gradients)
    assert layer.weight.grad is not None and layer.weight.grad.shape == (3, 4)


def test_delays_start_uniform_in_range_and_stay_there():
    layer = enn.DelayedLinear(50, 40, max_delay=25)
    assert 0 <= layer.delays.min() and layer.delays.max() <= 24
    assert layer.delays.std() > 5  # spread over the window, not bunched
    assert not enn.DelayedLinear(3, 2, max_delay=25, init_delays="zero").delays.any()
    with torch.no_grad():
        layer.delay_param[0, 0] = -3.0
        layer.delay_param[0, 1] = 40.0
    layer.eval()
    assert layer.delays[0, 0] == 0 and layer.delays[0, 1] == 24  # read clamped
    layer(torch.rand(1, 3, 50))
    assert layer.delay_param[0, 1] == 40.0  # eval leaves the parameter alone
    layer.train()
    layer(torch.rand(1, 3, 50))
    assert layer.delay_param[0, 0] == 0 and layer.delay_param[0, 1] == 24  # projected


def test_delays_on_the_bounds_still_get_gradients():
    layer = enn.DelayedLinear(2, 1, max_delay=5, sigma_init=1.0, bias=False)
    with torch.no_grad():
        layer.delay_param.copy_(torch.tensor([[0.0, 4.0]]))
    x = torch.zeros(1, 10, 2)
    x[0, 2] = 1.0
    layer(x)[0, :, 0].pow(2).mul(torch.arange(10.0)).sum().backward()
    assert (layer.delay_param.grad != 0).all()


def test_round_delays_modes_follow_training_and_eval():
    x = torch.rand(2, 8, 3)
    layer = enn.DelayedLinear(3, 2, max_delay=4, sigma_init=2.0)
    soft = delayed_linear(x, layer.weight, layer.delays, 2.0, 4, layer.bias)
    hard = delayed_linear(x, layer.weight, layer.delays, 2.0, 4, layer.bias, rounded=True)
    with torch.no_grad():
        torch.testing.assert_close(layer.train()(x), soft)
        torch.testing.assert_close(layer.eval()(x), hard)
        layer.round_delays = "never"
        torch.testing.assert_close(layer.eval()(x), soft)
        layer.round_delays = "always"
        torch.testing.assert_close(layer.train()(x), hard)


def test_delay_scale_makes_adam_move_the_delays_that_much_faster():
    layer = enn.DelayedLinear(6, 5, max_delay=25, delay_scale=100.0, bias=False)
    before_delays = layer.delay_param.detach() * 100
    before_weight = layer.weight.detach().clone()
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-3)
    layer(torch.rand(4, 30, 6)).square().sum().backward()
    optimizer.step()
    # Read unclamped: a delay next to 0 or max_delay − 1 may step out of the range.
    moved_delays = (layer.delay_param.detach() * 100 - before_delays).abs()
    moved_weight = (layer.weight.detach() - before_weight).abs()
    # Adam's first step is lr · sign(gradient) for every entry with a gradient.
    torch.testing.assert_close(moved_weight, torch.full_like(moved_weight, 1e-3))
    torch.testing.assert_close(moved_delays, torch.full_like(moved_delays, 0.1))


@pytest.mark.parametrize(
    ("schedule", "progress", "want"),
    [
        ("exponential", 0.0, 12.0),
        ("exponential", 1.0, 0.5),
        ("exponential", 0.5, math.sqrt(12.0 * 0.5)),
        ("exponential", 3.0, 0.5),  # clipped to the end
        ("linear", 0.5, 6.25),
        ("linear", -1.0, 12.0),
    ],
)
def test_sigma_annealing(schedule, progress, want):
    layer = enn.DelayedLinear(2, 2, max_delay=25, sigma_init=12.0, sigma_final=0.5)
    assert layer.anneal_sigma(progress, schedule) == pytest.approx(want)
    assert float(layer.sigma) == pytest.approx(want)


def _authors_kernel_widths(sig_init: float, final_epoch: int, epochs: int) -> list[float]:
    """The DCLS-delays authors' Gaussian width in each training epoch (SNN-delays'
    decrease_sig): SIG starts at sig_init and is multiplied by (0.23 / sig_init)^(1/final_epoch)
    after every epoch before final_epoch while above 0.23; the kernel's width is SIG + 0.27."""
    sig, alpha, widths = sig_init, (0.23 / sig_init) ** (1 / final_epoch), []
    for epoch in range(epochs):
        widths.append(sig + 0.27)
        if epoch < final_epoch and sig > 0.23:
            sig *= alpha
    return widths


@pytest.mark.parametrize(("max_delay", "epochs"), [(25, 150), (31, 60)])  # SHD and SSC
def test_sigma_offset_gives_the_authors_schedule(max_delay, epochs):
    final_epoch = epochs // 4
    theirs = _authors_kernel_widths(max_delay // 2, final_epoch, epochs)
    layer = enn.DelayedLinear(2, 2, max_delay, sigma_init=max_delay // 2 + 0.27, sigma_final=0.5)
    ours = [layer.anneal_sigma(epoch / final_epoch, sigma_offset=0.27) for epoch in range(epochs)]
    assert ours == pytest.approx(theirs, rel=1e-12)
    # Without the offset the width in between is up to 29 % larger (same end points).
    plain = [layer.anneal_sigma(epoch / final_epoch) for epoch in range(epochs)]
    assert max(a / b for a, b in zip(plain, theirs)) > 1.2


def test_sigma_offset_leaves_the_linear_schedule_alone():
    layer = enn.DelayedLinear(2, 2, max_delay=25, sigma_init=12.0, sigma_final=0.5)
    assert layer.anneal_sigma(0.3, "linear", 0.27) == layer.anneal_sigma(0.3, "linear")


def test_sigma_is_saved_and_loaded_with_the_weights():
    layer = enn.DelayedLinear(3, 2, max_delay=5)
    assert float(layer.sigma) == 2.5  # max_delay / 2 by default
    layer.set_sigma(0.7)
    state = layer.state_dict()
    assert set(state) == {"weight", "delay_param", "bias", "sigma"}
    fresh = enn.DelayedLinear(3, 2, max_delay=5)
    fresh.load_state_dict(state)
    assert float(fresh.sigma) == pytest.approx(0.7)
    assert "sigma=0.7" in repr(fresh) and "max_delay=5" in repr(fresh)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: enn.DelayedLinear(0, 2, 5), "in_features must be an integer >= 1"),
        (lambda: enn.DelayedLinear(3, 2.5, 5), "out_features must be an integer >= 1"),
        (lambda: enn.DelayedLinear(3, 2, 0), "max_delay must be an integer >= 1"),
        (lambda: enn.DelayedLinear(3, 2, 5, sigma_init=0.0), "sigma_init must be a finite"),
        (lambda: enn.DelayedLinear(3, 2, 5, sigma_final=-1.0), "sigma_final must be a finite"),
        (lambda: enn.DelayedLinear(3, 2, 5, delay_scale=math.inf), "delay_scale must be"),
        (lambda: enn.DelayedLinear(3, 2, 5, round_delays="test"), "round_delays must be one of"),
        (lambda: enn.DelayedLinear(3, 2, 5, init_delays="normal"), "init_delays must be one of"),
        (lambda: enn.DelayedLinear(3, 2, 5).set_sigma(0.0), "sigma must be a finite"),
        (lambda: enn.DelayedLinear(3, 2, 5).anneal_sigma(0.5, "cosine"), "schedule must be one"),
        (lambda: enn.DelayedLinear(3, 2, 5).anneal_sigma(0.5, sigma_offset=0.5),
         "sigma_offset must be a finite number below sigma_init and sigma_final"),
        (lambda: enn.DelayedLinear(3, 2, 5).anneal_sigma(0.5, sigma_offset=math.nan),
         "sigma_offset must be a finite number"),
    ],
)
def test_bad_arguments_name_the_argument(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_round_delays_is_checked_when_set_too():
    layer = enn.DelayedLinear(3, 2, max_delay=4)
    with pytest.raises(ValueError, match="round_delays must be one of"):
        layer.round_delays = "sometimes"
    assert layer.round_delays == "eval"


def test_autocast_runs_in_bfloat16():
    layer = enn.DelayedLinear(3, 2, max_delay=4)
    x = torch.rand(2, 6, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x.bfloat16())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), layer(x), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (torch.rand(2, 5, 4), ValueError, r"\(batch, time, 3\), got \(2, 5, 4\).*in_features=4"),
        (torch.rand(5, 3), ValueError, r"\(batch, time, 3\), got \(5, 3\)"),
        (torch.ones(2, 5, 3, dtype=torch.long), TypeError, "floating tensor.*x.float"),
        (torch.rand(2, 5, 3, dtype=torch.float64), TypeError, "float32 parameters.*float64"),
    ],
)
def test_bad_inputs_say_what_to_change(x, error, match):
    with pytest.raises(error, match=match):
        enn.DelayedLinear(3, 2, max_delay=4)(x)
