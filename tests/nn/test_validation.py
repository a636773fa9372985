"""Bad arguments raise errors that name the argument; repr shows the settings."""

from __future__ import annotations

import math

import pytest
import torch

from exodus_lightning import nn as enn
from exodus_lightning.nn import surrogate as sg
from exodus_lightning.ops import _arguments


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: enn.LIF(tau_mem=0.0), "tau_mem must be > 0"),
        (lambda: enn.LIF(tau_mem=torch.tensor([5.0, -1.0])), "tau_mem must be > 0"),
        (lambda: enn.LIF(tau_mem=math.nan), "tau_mem must be > 0"),
        (lambda: enn.LIF(5.0, tau_syn=-2.0), "tau_syn must be > 0"),
        (lambda: enn.IAF(tau_syn=0.0), "tau_syn must be > 0"),
        (lambda: enn.ExpLeak(tau_mem=-3.0), "tau_mem must be > 0"),
        (lambda: enn.LIF(5.0, spike_threshold=0.0), "spike_threshold must be > 0"),
        (lambda: enn.LIF(5.0, spike_threshold=1.0, min_v_mem=1.0), "spike_threshold must be > "
                                                                     "min_v_mem"),
        (lambda: enn.IAF(spike_threshold=torch.tensor([1.0, 0.5]), min_v_mem=0.6),
         "spike_threshold must be > min_v_mem"),
        (lambda: enn.LIF(5.0, max_spikes_per_step=0), "max_spikes_per_step must be None"),
        (lambda: enn.LIF(5.0, max_spikes_per_step=2.5), "max_spikes_per_step must be None"),
        (lambda: enn.LIF(5.0, reset="hard"), "reset must be one of"),
        (lambda: enn.LIF(5.0, gradient="bptt"), "gradient must be one of"),
        (lambda: enn.LIF(5.0, backend="cuda"), "backend must be one of"),
        (lambda: enn.ExpLeak(5.0, backend="fast"), "backend must be one of"),
    ],
)
def test_bad_constructor_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_types():
    with pytest.raises(TypeError, match="surrogate_grad_fn must be a callable"):
        enn.LIF(5.0, surrogate_grad_fn="exp")
    with pytest.raises(TypeError, match="tau_mem must be a float or a floating tensor"):
        enn.LIF("5")
    with pytest.raises(TypeError, match="spike_threshold must be a floating tensor"):
        enn.LIF(5.0, spike_threshold=torch.tensor([True, False]))
    # Integer tensors are numbers, as in sinabs.
    assert enn.IAF(min_v_mem=torch.tensor(-1)).min_v_mem.dtype == torch.float32


@pytest.mark.parametrize(
    ("layer", "name"),
    [
        (enn.LIF(tau_mem=torch.full((4, 1, 1), 5.0)), "tau_mem"),
        (enn.LIF(5.0, tau_syn=torch.full((5,), 5.0)), "tau_syn"),
        (enn.LIF(5.0, spike_threshold=torch.ones(3, 3)), "spike_threshold"),
        (enn.LIF(5.0, min_v_mem=-torch.ones(5)), "min_v_mem"),
        (enn.LIF(torch.full((5,), 5.0), train_alphas=True), "alpha_mem"),
        (enn.ExpLeak(torch.full((4, 1, 1), 5.0)), "tau_mem"),
    ],
)
def test_parameter_shape_must_broadcast_to_features(layer, name):
    with pytest.raises(ValueError, match=f"{name} of shape .* does not broadcast to the feature "
                                         f"shape \\(3, 2, 2\\)"):
        layer(torch.rand(2, 4, 3, 2, 2))
    with pytest.raises(RuntimeError):  # the type of sinabs' broadcasting error
        layer(torch.rand(2, 4, 3, 2, 2))


def test_input_must_have_batch_and_time():
    with pytest.raises(ValueError, match="use LIFSqueeze"):
        enn.LIF(5.0)(torch.rand(6))
    with pytest.raises(TypeError, match="floating tensor"):
        enn.IAF()(torch.ones(2, 3, dtype=torch.int64))


# A layer, the parameter that training moved out of range, its new value, and the error's start.
MOVED = {
    "LIF.tau_mem": (lambda: enn.LIF(5.0), "tau_mem", -3.0, "LIF.tau_mem must be > 0"),
    "LIF.tau_syn": (lambda: enn.LIF(5.0, tau_syn=2.0), "tau_syn", 0.0, "LIF.tau_syn must be > 0"),
    "LIF.alpha_mem": (lambda: enn.LIF(5.0, train_alphas=True), "alpha_mem", 1.2,
                      r"LIF.alpha_mem must lie in \[0, 1\]"),
    "LIF.spike_threshold": (lambda: enn.LIF(5.0, train_threshold=True), "spike_threshold", -0.5,
                            "LIF.spike_threshold must be > 0"),
    "IAF.spike_threshold": (lambda: enn.IAF(min_v_mem=-1.0, train_threshold=True),
                            "spike_threshold", -1.5, "IAF.spike_threshold must be > 0"),
    "ExpLeak.tau_mem": (lambda: enn.ExpLeak(5.0), "tau_mem", -3.0, "ExpLeak.tau_mem must be > 0"),
    "ExpLeak.tau_mem (min_v_mem)": (lambda: enn.ExpLeak(5.0, min_v_mem=-1.0), "tau_mem", math.nan,
                                    "ExpLeak.tau_mem must be > 0"),
}


@pytest.mark.parametrize("case", MOVED.values(), ids=MOVED.keys())
def test_parameter_moved_out_of_range_is_named_at_forward(case):
    """The error names the layer's parameter and its value (not the op's alpha = 1.3956 of
    tau_mem = -3), says that training moved it, and what to do."""
    build, name, value, message = case
    layer = build()
    with torch.no_grad():
        getattr(layer, name).fill_(value)
    with pytest.raises(enn.ParameterRangeError, match=message) as raised:
        layer(torch.rand(1, 2, 3))
    text = str(raised.value)
    assert f"got {value:g}" in text and "training" in text and "learning rate" in text
    assert f"layer.{name}.requires_grad_(False)" in text


@pytest.mark.parametrize("build", [
    lambda: enn.LIFRecurrent(5.0, torch.nn.Linear(4, 4)),
    lambda: enn.IAFRecurrent(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 4))),
    lambda: enn.ALIFRecurrent(5.0, 20.0, torch.nn.Linear(4, 4)),
    lambda: enn.adLIFRecurrent(4),
], ids=["LIFRecurrent", "IAFRecurrent", "ALIFRecurrent", "adLIFRecurrent"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16], ids=["f64", "bf16"])
def test_recurrent_input_in_another_dtype_than_rec_connect_names_the_fix(build, dtype):
    layer = build()
    with pytest.raises(TypeError) as raised:
        layer(torch.rand(2, 5, 4, dtype=dtype))
    text = str(raised.value)
    assert text.startswith(f"{type(layer).__name__}'s rec_connect has torch.float32 parameters")
    assert f"got a {dtype} input" in text
    assert f"layer.to({dtype})" in text and "x.to(torch.float32)" in text
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts for rec_connect itself
        assert layer(torch.rand(2, 5, 4, dtype=torch.bfloat16)).dtype == torch.bfloat16
        if dtype == torch.float64:  # but leaves float64 alone
            with pytest.raises(TypeError, match="got a torch.float64 input"):
                layer(torch.rand(2, 5, 4, dtype=dtype))


@pytest.mark.slow
@pytest.mark.parametrize("case", [MOVED["LIF.tau_mem"], MOVED["LIF.spike_threshold"]],
                         ids=["tau_mem", "spike_threshold"])
def test_compiled_layer_raises_what_eager_raises(case):
    build, name, value, message = case
    layer = build()
    x = torch.rand(1, 2, 3)
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    compiled(x)
    with torch.no_grad():
        getattr(layer, name).fill_(value)
    errors = []
    for run in (layer, compiled):
        layer.reset_states()
        with pytest.raises(enn.ParameterRangeError, match=message) as raised:
            run(x)
        errors.append(str(raised.value))
    assert errors[0] == errors[1]


def test_repr_shows_key_settings():
    text = repr(enn.LIF(torch.full((3, 1, 1), 20.0), tau_syn=5.0, spike_threshold=0.5,
                        min_v_mem=-1.0, max_spikes_per_step=1, reset="zero",
                        surrogate_grad_fn=sg.ArcTan(), gradient="slayer"))
    for part in ("tau_mem=tensor of shape (3, 1, 1)", "tau_syn=5", "spike_threshold=0.5",
                 "min_v_mem=-1", "max_spikes_per_step=1", "reset='zero'", "ArcTan(",
                 "gradient='slayer'", "norm_input=True"):
        assert part in text, (part, text)
    assert repr(enn.IAF()).startswith("IAF(spike_threshold=1,")
    assert repr(enn.ExpLeak(4.0, train_alphas=True)).startswith("ExpLeak(alpha_mem=0.7788")


def test_sinabs_positional_order():
    # sinabs' LIF(tau_mem, tau_syn, spike_threshold, spike_fn, reset_fn, surrogate_grad_fn,
    # min_v_mem, train_alphas, shape, norm_input, record_states)
    layer = enn.LIF(5.0, None, 0.5, enn.activation.SingleSpike, enn.activation.MembraneReset(),
                    sg.Heaviside(), -1.0, True, (2, 3), False, True)
    assert (layer.max_spikes_per_step, layer.reset, layer.train_alphas) == (1, "zero", True)
    assert layer.v_mem.shape == (2, 3) and not layer.norm_input and layer.record_states
    assert layer.min_v_mem.item() == -1.0 and layer.spike_threshold.item() == 0.5
    iaf = enn.IAF(0.5, enn.activation.MaxSpike(3), None, sg.Heaviside(), 4.0, -1.0)
    assert iaf.max_spikes_per_step == 3 and iaf.tau_syn.item() == 4.0
    leak = enn.ExpLeak(5.0, (2, 3), True, -1.0, True, True)
    assert leak.train_alphas and leak.norm_input and leak.record_states


def test_surrogate_module_is_the_ops_one():
    from exodus_lightning.ops import surrogate as ops_surrogate

    for name in sg.__all__:
        assert getattr(sg, name) is getattr(ops_surrogate, name)


def test_infinite_tau_with_input_normalisation_is_rejected():
    """(1 − α) = 0 for τ = inf: the layer would be silent forever; IAF is the leak-free neuron."""
    with pytest.raises(ValueError, match="tau_mem=inf with norm_input=True"):
        enn.LIF(tau_mem=float("inf"))
    assert enn.LIF(tau_mem=float("inf"), norm_input=False)(torch.ones(1, 3, 2)).sum() > 0
    assert enn.IAF()(torch.ones(1, 3, 2)).sum() > 0


@pytest.fixture
def fresh_channel_axis_warnings(monkeypatch):
    """Each test sees the channel-axis warnings anew (they are given once per calling line)."""
    monkeypatch.setattr(_arguments, "_warned_channel_axis", set())


PER_CHANNEL = torch.tensor([2.0, 5.0, 10.0, 40.0])


@pytest.mark.parametrize(("build", "name"), [
    (lambda: enn.LIF(tau_mem=PER_CHANNEL), "tau_mem"),
    (lambda: enn.IAF(spike_threshold=PER_CHANNEL / 10), "spike_threshold"),
    (lambda: enn.ExpLeak(tau_mem=PER_CHANNEL), "tau_mem"),
    (lambda: enn.ALIF(tau_mem=5.0, tau_adapt=PER_CHANNEL), "tau_adapt"),
    (lambda: enn.LIFRecurrent(5.0, torch.nn.Flatten(), spike_threshold=PER_CHANNEL / 10,
                              backend="reference"), "spike_threshold"),
])
def test_a_channel_sized_parameter_that_broadcasts_per_column_warns_once(
        build, name, fresh_channel_axis_warnings):
    """(C,) on (C, H, W) features with W == C: per column, not per channel (W != C: an error)."""
    layer = build()
    x = torch.rand(2, 3, 4, 5, 4)
    with pytest.warns(UserWarning, match=rf"{name} of shape \(4,\) on features \(4, 5, 4\) "
                                         r"broadcasts along feature axis 2 .* for one value per "
                                         r"channel give it shape \(4, 1, 1\), for what it does "
                                         r"now write shape \(1, 1, 4\)") as record:
        for _ in range(2):
            layer(x)
    ours = [w for w in record if "broadcasts along feature axis" in str(w.message)]
    assert len(ours) == 1 and ours[0].filename == __file__  # once, at the caller's line


def test_the_functional_api_warns_about_a_channel_sized_parameter(fresh_channel_axis_warnings):
    from exodus_lightning import ops

    x = torch.rand(2, 3, 4, 5, 4)
    with pytest.warns(UserWarning, match=r"alpha of shape \(4,\) on features \(4, 5, 4\)"):
        ops.lif(x, torch.full((4,), 0.9), 1.0, backend="reference")


@pytest.mark.parametrize(("shape", "features"), [
    ((4, 1, 1), (4, 5, 4)),     # per channel, written out
    ((1, 4, 1, 1), (4, 5, 4)),  # with sinabs' batch axis
    ((1, 1, 4), (4, 5, 4)),     # per column, written out
    ((4,), (4,)),               # 1-d features: one value per neuron
    ((1, 4), (4,)),
    ((4, 5, 4), (4, 5, 4)),     # one value per neuron
    ((1,), (4, 5, 4)),          # one value for all
    ((5,), (5, 3, 5)[1:]),      # (5,) on (3, 5): C = 3, not ambiguous
])
def test_explicit_or_unambiguous_parameter_shapes_do_not_warn(
        shape, features, fresh_channel_axis_warnings, recwarn):
    layer = enn.LIF(tau_mem=torch.full(shape, 5.0))
    layer(torch.rand(2, 3, *features))
    assert not [w for w in recwarn if "broadcasts along feature axis" in str(w.message)]


DEVICE_LAYERS = {
    "LIF": lambda: enn.LIF(5.0, tau_syn=3.0),
    "IAF": lambda: enn.IAF(),
    "ExpLeak": lambda: enn.ExpLeak(5.0),
    "LIFSqueeze": lambda: enn.LIFSqueeze(num_timesteps=4, tau_mem=5.0),
    "ALIF": lambda: enn.ALIF(5.0, 20.0),
    "LIFRecurrent": lambda: enn.LIFRecurrent(5.0, torch.nn.Linear(3, 3)),
    "ALIFRecurrent": lambda: enn.ALIFRecurrent(5.0, 20.0, torch.nn.Linear(3, 3)),
    "adLIF": lambda: enn.adLIF(3),
}


@pytest.mark.parametrize("name", list(DEVICE_LAYERS))
def test_an_input_on_another_device_names_the_layer_and_says_to_move_it(name):
    """Not the op's internal alpha: the user holds the layer (a meta input stands in for a
    GPU one: another device, and no GPU needed)."""
    shape = (8, 3) if name.endswith("Squeeze") else (2, 4, 3)
    layer = DEVICE_LAYERS[name]()
    with pytest.raises(ValueError, match=rf"^{name}'s \w+(\.\w+)? is on cpu but its input is on "
                                         rf"meta; move the layer .*\(layer\.to\(x\.device\)\)"):
        layer(torch.rand(shape, device="meta"))
    if "Recurrent" not in name:  # layer and input on meta: shape inference works
        assert layer.to("meta")(torch.rand(shape, device="meta")).shape == shape


def test_the_op_called_directly_names_its_own_argument():
    from exodus_lightning import ops

    with pytest.raises(ValueError, match="alpha is on cpu but x is on meta"):
        ops.lif(torch.rand(2, 4, 3, device="meta"), torch.tensor(0.9), 1.0)
