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


def test_keys_name_plain_settings_only():
    """The op's key stands for one (model, settings): equal settings share it, other settings
    get another, and settings holding a callable get none."""
    settings = LIFSettings(0, 0, 0, 1, (0.5, 1.0), None, False, True)
    values = [getattr(settings, f.name) for f in dataclasses.fields(settings)]
    key = recurrent._scan_key(LIFNeuron, LIFSettings, *values)
    assert key and key == recurrent._scan_key(LIFNeuron, LIFSettings, *values)
    assert recurrent._SCANS[key] == (LIFNeuron, settings)
    other = recurrent._scan_key(LIFNeuron, LIFSettings, *values[:4], (0.5, 2.0), *values[5:])
    assert other and other != key
    assert recurrent._scan_key(LIFNeuron, LIFSettings, *values[:5], abs, *values[6:]) == ""
    assert recurrent._scan_key(LIFNeuron, LIFSettings, *values[:4], (float("nan"), 1.0),
                               *values[5:]) == ""


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
        SCAN("no.such:Model|x:Y|()", *fresh(args, False)[1:])


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
    key, x, weight, bias, states, params, present, _ = fresh(args, True)
    neuron, settings = recurrent._SCANS[key]
    if not train_params:
        params = [p.detach() for p in params]
    given = iter(params)
    param_list = [next(given) if here else None for here in present]
    wanted = [p is not None and p.requires_grad for p in param_list]
    op_bytes, op_out = saved_bytes(lambda: SCAN(key, x, weight, bias, states, params, present,
                                                wanted))
    fn_bytes, fn_out = saved_bytes(lambda: recurrent._Scan.apply(
        neuron, settings, x, weight, bias, *states, *param_list))
    assert op_bytes == fn_bytes
    for a, b in zip(op_out, fn_out):
        assert torch.equal(a, b)
