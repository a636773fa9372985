"""The recurrent scan as one custom op: opcheck of its forward and backward ops, one graph node
under torch.compile whatever the sequence length, and the autograd-function form it falls
back to for settings that are not plain values (a custom surrogate)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from exodus_lightning import nn as enn
from exodus_lightning import ops
from exodus_lightning.ops import recurrent
from exodus_lightning.ops.recurrent_lif import LIFNeuron, LIFSettings
from exodus_lightning.ops.surrogate import SingleExponential

SCAN = torch.ops.exodus_lightning.recurrent_scan.default
SCAN_BACKWARD = torch.ops.exodus_lightning.recurrent_scan_backward.default


class Calls(TorchDispatchMode):
    """The arguments of every call of the given ops, by op."""

    def __init__(self, *watched):
        super().__init__()
        self.calls = {op: [] for op in watched}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.calls:
            self.calls[func].append(args)
        return func(*args, **(kwargs or {}))


def leaf(*shape, scale=1.0, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed + sum(shape))
    return (torch.rand(*shape, generator=g, dtype=torch.float64) * scale + shift
            ).requires_grad_()


def lif_call(**options):
    x = (torch.randn(2, 7, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
         + 0.6).requires_grad_()
    extra = {}
    if "beta" in options:
        extra["i_init"] = leaf(2, 4, scale=0.3, seed=5)
    return ops.lif_recurrent(x, leaf(4, 4, shift=-0.3), leaf(4, scale=0.2),
                             leaf(4, scale=0.2, shift=0.7), leaf(4, scale=0.3, shift=0.8),
                             leaf(2, 4, scale=0.4, seed=3), **extra, **options)


def alif_call(**options):
    x = (torch.randn(2, 7, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
         * 1.5 + 0.8).requires_grad_()
    return ops.alif_recurrent(x, leaf(4, 4, shift=-0.3), None, leaf(4, scale=0.2, shift=0.7),
                              leaf(4, scale=0.1, shift=0.85, seed=1),
                              leaf(4, scale=0.5, shift=1.0, seed=2),
                              leaf(4, scale=0.3, shift=0.8, seed=3), **options)


def adlif_call(**options):
    x = (torch.randn(2, 7, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
         * 3 + 4).requires_grad_()
    return ops.adlif_recurrent(x, leaf(4, 4, shift=-0.3), leaf(4, scale=0.2),
                               leaf(4, scale=0.2, shift=0.7), leaf(4, scale=0.2, shift=0.7, seed=1),
                               leaf(4, scale=0.5, seed=2), leaf(4, scale=0.5, seed=3), **options)


CALLS = {
    "lif": lambda: lif_call(),
    "lif_syn_norm": lambda: lif_call(beta=0.7, norm_input=True, min_v_mem=-0.3),
    "lif_syn_late_zero": lambda: lif_call(beta=0.6, decay_early=False, reset="zero",
                                          max_spikes=1),
    "lif_subtract_slayer": lambda: lif_call(subtract=0.8, max_spikes=2, gradient="slayer"),
    "alif": lambda: alif_call(),
    "alif_syn_norm": lambda: alif_call(syn_decay=0.7, norm_input=True, min_v_mem=-0.2),
    "adlif": lambda: adlif_call(),
}


def scan_calls(name: str, grad: bool = True):
    """Run CALLS[name] (and its backward): the recorded args of the forward and backward ops."""
    with Calls(SCAN, SCAN_BACKWARD) as calls:
        outputs = [o for o in CALLS[name]() if o is not None]
        assert outputs[0].sum() > 3
        if grad:
            sum((o * (k + 1)).sum() for k, o in enumerate(outputs)).backward()
    return calls.calls[SCAN], calls.calls[SCAN_BACKWARD]


def fresh(args, requires_grad: bool):
    """args with its tensors copied (leaves, requiring grad where floating and asked)."""
    def copy(value):
        if isinstance(value, torch.Tensor):
            return value.detach().clone().requires_grad_(requires_grad)
        if isinstance(value, list):
            return [copy(v) for v in value]
        return value
    return tuple(copy(a) for a in args)


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("name", list(CALLS))
def test_opcheck_recurrent_scan(name, requires_grad):
    (args,), _ = scan_calls(name, grad=False)
    torch.library.opcheck(SCAN, fresh(args, requires_grad))


@pytest.mark.parametrize("name", list(CALLS))
def test_opcheck_recurrent_scan_backward(name):
    """The backward op with the arguments autograd gives it (None for the upstream gradients
    of outputs the loss does not use is covered by the layers' tests)."""
    _, (args,) = scan_calls(name)
    torch.library.opcheck(SCAN_BACKWARD, fresh(args, False))


def test_second_order_gradients_raise():
    x = (torch.rand(2, 5, 3, dtype=torch.float64) * 2).requires_grad_()
    weight = leaf(3, 3, shift=-0.3)
    spikes, v_mem, *_ = ops.lif_recurrent(x, weight, None, 0.9, 1.0)
    (g,) = torch.autograd.grad((v_mem ** 2).sum() + spikes.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="second-order gradients .* backend='reference'"):
        g.sum().backward()


def graph_ops(layer: torch.nn.Module, time: int) -> list[str]:
    """The call targets of the graph torch.compile traces for layer on (2, time, 6) inputs."""
    targets = []

    def backend(gm, example_inputs):
        targets.extend(str(node.target) for node in gm.graph.nodes
                       if node.op == "call_function")
        return gm

    torch._dynamo.reset()
    layer.reset_states()
    torch.compile(layer, fullgraph=True, backend=backend)(torch.rand(2, time, 6) * 2)
    return targets


@pytest.mark.parametrize("name", ["LIFRecurrent", "ALIFRecurrent", "adLIFRecurrent"])
def test_compiled_graph_holds_one_scan_whatever_the_length(name):
    """torch.compile sees the whole sequence as one op: the traced graph is the same for 3 steps
    and for 40 (tracing T steps made compile time grow with T: 140 s at T = 100 with
    inductor)."""
    make = {
        "LIFRecurrent": lambda: enn.LIFRecurrent(10.0, torch.nn.Linear(6, 6), tau_syn=5.0),
        "ALIFRecurrent": lambda: enn.ALIFRecurrent(10.0, 50.0, torch.nn.Linear(6, 6)),
        "adLIFRecurrent": lambda: enn.adLIFRecurrent(6, torch.nn.Linear(6, 6)),
    }[name]
    layer = make()
    short, long = graph_ops(layer, 3), graph_ops(layer, 40)
    assert short == long
    assert sum("recurrent_scan" in target for target in long) == 1, long


def test_custom_surrogate_runs_the_autograd_function_and_compiles():
    """A Python callable is not a value the op can carry: the scan runs as an autograd function
    (traced step by step under torch.compile) with the same results."""
    def surrogate(v, th):
        return 1 / (1 + (v - th).abs()) ** 2

    torch.manual_seed(0)
    eager = enn.LIFRecurrent(10.0, torch.nn.Linear(6, 6), surrogate_grad_fn=surrogate)
    compiled_layer = enn.LIFRecurrent(10.0, torch.nn.Linear(6, 6), surrogate_grad_fn=surrogate)
    compiled_layer.load_state_dict(eager.state_dict())
    x = torch.rand(2, 12, 6) * 20
    out = eager(x)
    assert any("_Scan" in type(fn).__name__ for fn in [out.grad_fn, *(
        f for f, _ in out.grad_fn.next_functions)] if fn is not None)
    out.sum().backward()
    torch._dynamo.reset()
    got = torch.compile(compiled_layer, fullgraph=True, backend="aot_eager")(x)
    got.sum().backward()
    assert out.sum() > 0
    torch.testing.assert_close(got, out)
    for (key, p), q in zip(compiled_layer.named_parameters(), eager.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=key)


def test_keys_name_the_model_and_its_plain_values():
    """The op's key stands for the model and its settings' non-float values: equal settings
    share it, other values get another, floats travel beside it (a surrogate's width may change
    without a new key), and settings holding a callable get none."""
    settings = LIFSettings(0, 0, 0, 1, (0.5, 1.0), None, False, True)
    values = [getattr(settings, f.name) for f in dataclasses.fields(settings)]

    def key_of(*values):
        floats = []
        layout = [recurrent._float_slots(value, floats) for value in values]
        return recurrent._scan_key(LIFNeuron, LIFSettings, *layout), floats

    key, floats = key_of(*values)
    assert key and floats == [0.5, 1.0]
    assert key_of(*values[:4], (0.7, 2.0), *values[5:]) == (key, [0.7, 2.0])
    assert key_of(*values[:6], True, *values[7:])[0] not in ("", key)
    assert key_of(*values[:5], abs, *values[6:])[0] == ""
    neuron, got, _ = recurrent._unpack(key, floats, [], [])
    assert neuron is LIFNeuron and got == settings


def test_a_key_this_process_has_not_met_is_rebuilt_from_itself():
    """An exported or cached graph calls the op with a key that a fresh process has not
    registered: the key names the classes and holds the values, so the op still runs."""
    (args,), _ = scan_calls("lif_syn_norm", grad=False)
    key = args[0]
    want = SCAN(*fresh(args, False))
    registered = recurrent._SCANS.pop(key)
    try:
        got = SCAN(*fresh(args, False))
        assert recurrent._SCANS[key] == registered
    finally:
        recurrent._SCANS[key] = registered
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="cannot rebuild the neuron model of key"):
        SCAN("no.such:Model|x:Y|[]", *fresh(args, False)[1:])


def saved_bytes(run) -> int:
    """Bytes of the storages autograd keeps for backward while run() records its graph."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        outputs = run()
    return sum(storages.values()), outputs


@pytest.mark.parametrize("train_params", [True, False], ids=["params", "fixed"])
@pytest.mark.parametrize("name", list(CALLS))
def test_op_keeps_what_the_autograd_function_keeps(name, train_params):
    """The op path saves the same tensors for backward as the autograd-function form (no trace
    the adjoint does not read, e.g. the synaptic current with β fixed) and gives its results."""
    (args,), _ = scan_calls(name, grad=False)
    key, floats, x, weight, bias, states, params, present, _ = fresh(args, True)
    neuron, settings, _ = recurrent._unpack(key, floats, [], [])
    if not train_params:
        params = [p.detach() for p in params]
    given = iter(params)
    param_list = [next(given) if here else None for here in present]
    wanted = [p is not None and p.requires_grad for p in param_list]
    op_bytes, op_out = saved_bytes(lambda: SCAN(key, floats, x, weight, bias, states, params,
                                                present, wanted))
    fn_bytes, fn_out = saved_bytes(lambda: recurrent._Scan.apply(
        neuron, settings, x, weight, bias, *states, *param_list))
    assert op_bytes == fn_bytes
    for a, b in zip(op_out, fn_out):
        assert torch.equal(a, b)


# --- a model of the user's own (docs/adding_a_neuron_model.md) ------------------------------

@dataclasses.dataclass(frozen=True)
class DecaySettings:
    decay: float
    gain: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "decay", self.decay ** 0.5)  # given as the decay of 2 steps


def decay_neuron(gain_of_x: float = 1.0, state_is_input: bool = False):
    """A RecurrentNeuron class (a new one per call, all named DecayNeuron): v = d·v + g·x̃,
    spike above 1, subtracting reset; state_is_input: its state is x̃ itself."""
    class DecayNeuron(recurrent.RecurrentNeuron):
        param_names = ()
        state_names = ("v",)
        trace_names = ("v",)

        def step(self, x, states):
            if state_is_input:
                return (x > 1).to(x.dtype), [x], [x]
            v = self.settings.decay * states[0] + gain_of_x * self.settings.gain * x
            s = (v > 1).to(x.dtype)
            return s, [v - s], [v]

        def saved_traces(self, wanted):
            return {"v"}

    return DecayNeuron


def run_decay(neuron, settings, time=3):
    x = torch.ones(1, time, 1)
    spikes, traces, last = recurrent.recurrent_scan(
        neuron, settings, x, torch.zeros(1, 1), None, [torch.zeros(1, 1)], [])
    return traces[0].flatten().tolist(), last[0]


def test_a_users_model_runs_its_own_code_and_settings():
    """Two classes of one name (a notebook cell run again, or a factory) each run their own
    step; settings whose __post_init__ changes a value run with the value they hold."""
    first, second = decay_neuron(1.0), decay_neuron(10.0)
    settings = DecaySettings(0.25)
    assert settings.decay == 0.5
    assert run_decay(first, settings)[0] == [1.0, 1.5, 1.25]
    assert run_decay(second, settings)[0] == [10.0, 14.5, 16.75]
    assert run_decay(first, settings)[0] == [1.0, 1.5, 1.25]


def test_a_state_that_is_a_view_of_the_input_is_copied_out():
    """An op may not return its input: a state equal to x̃_1 = x[:, 0] comes back as a copy."""
    x = torch.ones(1, 1, 1)
    _, _, last = recurrent.recurrent_scan(decay_neuron(state_is_input=True), DecaySettings(1.0),
                                          x, torch.zeros(1, 1), None, [torch.zeros(1, 1)], [])
    x.add_(1)
    assert last[0].tolist() == [[1.0]]


@pytest.mark.parametrize("time", [0, 3])
def test_outputs_are_contiguous_whatever_the_states_layout(time):
    """Transposed initial states (and T = 0, where the last state is the initial one): the op's
    outputs and gradients are contiguous, as its fake kernels say (checked by opcheck)."""
    x = torch.rand(4, time, 3, dtype=torch.float64) + 0.5
    v0, i0 = (torch.rand(3, 4, dtype=torch.float64).t() for _ in range(2))
    with Calls(SCAN, SCAN_BACKWARD) as calls:
        outputs = ops.lif_recurrent(x.requires_grad_(), leaf(3, 3, shift=-0.3), None, 0.9, 1.0,
                                    v0.requires_grad_(), beta=0.7, i_init=i0.requires_grad_(),
                                    decay_early=False)
        sum((o * (k + 1)).sum() for k, o in enumerate(outputs) if o is not None).backward()
    assert all(o.is_contiguous() for o in outputs if o is not None)
    torch.library.opcheck(SCAN, fresh(calls.calls[SCAN][0], True))
    torch.library.opcheck(SCAN_BACKWARD, fresh(calls.calls[SCAN_BACKWARD][0], False))


def layer_of(name: str, width: float = 0.5) -> torch.nn.Module:
    surrogate = SingleExponential(width)
    return {
        "LIFRecurrent": lambda: enn.LIFRecurrent(10.0, torch.nn.Linear(4, 4), tau_syn=5.0,
                                                 surrogate_grad_fn=surrogate),
        "adLIFRecurrent": lambda: enn.adLIFRecurrent(4, torch.nn.Linear(4, 4)),
    }[name]()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["LIFRecurrent", "adLIFRecurrent"])  # floats: one path for all
def test_compiles_with_dynamic_shapes_and_changing_surrogate_widths(name):
    """fullgraph with dynamic=True (floats symbolic too), and a second layer whose surrogate
    width differs (automatic dynamic makes it symbolic): both compile and equal eager."""
    torch.manual_seed(0)
    for dynamic, widths in ((True, (0.5,)), (None, (0.5, 0.3))):
        torch._dynamo.reset()
        for width in widths:
            layer = layer_of(name, width)
            compiled = torch.compile(layer, fullgraph=True, dynamic=dynamic, backend="aot_eager")
            for batch, time in ((2, 3), (3, 5)):
                x = torch.rand(batch, time, 4) * (20 if name == "adLIFRecurrent" else 3)
                layer.reset_states()
                got = compiled(x)
                got.sum().backward()
                layer.reset_states()
                assert torch.equal(got, layer(x))


@pytest.mark.parametrize("model", ["lif", "alif", "adlif"])
def test_an_empty_batch_gives_empty_outputs_and_zero_weight_gradients(model):
    """Batch 0 on the fused path and on the reference loop (whose reshape of the spikes for the
    feedback could not infer a size from no elements)."""
    x = torch.randn(0, 5, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(3, 3, dtype=torch.float64, requires_grad=True)
    call = {"lif": lambda backend: ops.lif_recurrent(x, weight, None, 0.9, 1.0, backend=backend),
            "alif": lambda backend: ops.alif_recurrent(x, weight, None, 0.9, 0.95, 1.8, 1.0,
                                                       backend=backend),
            "adlif": lambda backend: ops.adlif_recurrent(x, weight, None, 0.9, 0.9, 0.5, 0.5,
                                                         backend=backend)}[model]
    for backend in ("extension", "reference"):
        outputs = [o for o in call(backend) if o is not None]
        assert all(o.shape[0] == 0 for o in outputs), backend
        grad_x, grad_weight = torch.autograd.grad(sum(o.sum() for o in outputs), [x, weight])
        assert grad_x.shape == x.shape and torch.equal(grad_weight, torch.zeros_like(weight))
