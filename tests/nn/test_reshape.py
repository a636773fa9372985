"""FlattenTime/UnflattenTime and the Squeeze layers on (batch·time, ...) input."""

from __future__ import annotations

import pytest
import torch

from exodus_lightning import nn as enn


def test_flatten_unflatten_round_trip():
    x = torch.rand(3, 5, 2, 4, 4)
    flat = enn.FlattenTime()(x)
    assert flat.shape == (15, 2, 4, 4)
    torch.testing.assert_close(enn.UnflattenTime(batch_size=3)(flat), x)
    torch.testing.assert_close(enn.UnflattenTime(num_timesteps=5)(flat), x)
    # batch-major: sample 1, time step 0 is row 5
    torch.testing.assert_close(flat[5], x[1, 0])


SQUEEZED = {
    "LIF": (enn.LIF, enn.LIFSqueeze, {"tau_mem": 5.0, "tau_syn": 2.0}),
    "IAF": (enn.IAF, enn.IAFSqueeze, {"max_spikes_per_step": 2}),
    "ExpLeak": (enn.ExpLeak, enn.ExpLeakSqueeze, {"tau_mem": 4.0, "min_v_mem": -0.1}),
}


@pytest.mark.parametrize("name", list(SQUEEZED))
@pytest.mark.parametrize("size", ["batch_size", "num_timesteps"])
def test_squeeze_layer_equals_layer(name, size):
    plain_cls, squeeze_cls, kwargs = SQUEEZED[name]
    x = torch.randn(3, 6, 2, 4, 4) * 3
    plain = plain_cls(**kwargs)
    squeezed = squeeze_cls(**kwargs, **{size: 3 if size == "batch_size" else 6})
    expected = plain(x)
    got = squeezed(x.flatten(0, 1))
    assert got.shape == (18, 2, 4, 4)
    torch.testing.assert_close(got.unflatten(0, (3, 6)), expected)
    torch.testing.assert_close(squeezed.v_mem, plain.v_mem)
    assert isinstance(squeezed, plain_cls) and size in repr(squeezed)


def test_squeeze_in_a_conv_stack():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), enn.LIFSqueeze(tau_mem=5.0, batch_size=2),
        torch.nn.AvgPool2d(2), torch.nn.Conv2d(4, 4, 3, padding=1),
        enn.IAFSqueeze(num_timesteps=7), enn.UnflattenTime(batch_size=2),
    )
    out = net(enn.FlattenTime()(torch.rand(2, 7, 2, 8, 8) * 5))
    assert out.shape == (2, 7, 4, 4, 4)


def test_squeeze_needs_a_size():
    # A ValueError, and the TypeError sinabs raises.
    for build in (lambda: enn.LIFSqueeze(tau_mem=5.0), lambda: enn.UnflattenTime()):
        with pytest.raises(ValueError, match="needs batch_size or num_timesteps"):
            build()
        with pytest.raises(TypeError):
            build()


def test_squeeze_with_both_sizes_checks_both():
    layer = enn.IAFSqueeze(batch_size=2, num_timesteps=3)
    assert layer(torch.rand(6, 4)).shape == (6, 4)
    with pytest.raises(ValueError, match="must equal batch_size=2 \\* num_timesteps=3"):
        layer(torch.rand(8, 4))


@pytest.mark.parametrize(("sizes", "advice", "not_advised"), [
    ({"num_timesteps": 4}, "set num_timesteps to the data's number of time steps",
     "set_batch_size"),
    ({"batch_size": 4}, "set_batch_size(model, n)", "num_timesteps"),
])
def test_a_wrong_frame_count_gets_advice_about_the_size_given(sizes, advice, not_advised):
    with pytest.raises(enn.ShapeError) as error:
        enn.LIFSqueeze(**sizes, tau_mem=5.0)(torch.rand(10, 3))
    assert advice in str(error.value) and not_advised not in str(error.value)


def test_squeeze_rejects_bad_sizes():
    with pytest.raises(ValueError, match="num_timesteps must be an int >= 1"):
        enn.IAFSqueeze(num_timesteps=-3)
    layer = enn.ExpLeakSqueeze(tau_mem=3.0, batch_size=4)
    # A ValueError, and the RuntimeError of sinabs' reshape.
    with pytest.raises(ValueError, match="divisible by batch_size=4"):
        layer(torch.rand(10, 3))
    with pytest.raises(RuntimeError):
        layer(torch.rand(10, 3))


def test_set_batch_size_and_sinabs_size_convention():
    net = torch.nn.Sequential(enn.IAFSqueeze(batch_size=2), enn.UnflattenTime(batch_size=2))
    assert net[0].num_timesteps == -1 and net[0].arg_dict["batch_size"] == 2
    enn.set_batch_size(net, 5)
    assert net(torch.rand(5 * 3, 4)).shape == (5, 3, 4)
    # sinabs writes the size not given as -1; the constructor takes it back.
    copy = enn.IAFSqueeze(**net[0].arg_dict)
    assert (copy.batch_size, copy.num_timesteps) == (5, -1)


@pytest.mark.parametrize("name", list(SQUEEZED))
def test_a_smaller_last_batch_with_only_batch_size_warns_once(name):
    """2 samples × 6 steps = 12 frames read by batch_size=4 as 4 × 3 (sinabs does the same):
    a warning names num_timesteps= as the robust choice."""
    plain_cls, squeeze_cls, kwargs = SQUEEZED[name]
    layer = squeeze_cls(batch_size=4, **kwargs)
    x = torch.rand(4, 6, 3) * 8
    layer(x.flatten(0, 1))
    with pytest.warns(UserWarning, match=rf"{name}Squeeze\(batch_size=4\) read its input of 12 "
                                         r"frames as 4 samples of 3 steps, but its first input "
                                         r"had 6 steps .* Give num_timesteps=6 instead of "
                                         r"batch_size") as record:
        layer(x[:2].flatten(0, 1))
        layer(x[:2].flatten(0, 1))
    ours = [w for w in record if "num_timesteps=6" in str(w.message)]
    assert len(ours) == 1 and ours[0].filename == __file__  # at the caller's line


def test_squeeze_sizes_that_keep_the_time_steps_do_not_warn(recwarn):
    by_time = enn.LIFSqueeze(num_timesteps=6, tau_mem=5.0)
    by_batch = enn.IAFSqueeze(batch_size=4)
    unflatten = enn.UnflattenTime(batch_size=4)
    for module in (by_time, by_batch, unflatten):
        module(torch.rand(4 * 6, 3))
    by_time(torch.rand(2 * 6, 3))  # a smaller last batch, unfolded right
    enn.set_batch_size(by_batch, 2)
    by_batch(torch.rand(2 * 6, 3))
    unflatten(torch.rand(4 * 6, 3))
    assert not [w for w in recwarn if "steps per sample" in str(w.message)]
    with pytest.warns(UserWarning, match=r"UnflattenTime\(batch_size=4\) .* of 3 steps"):
        unflatten(torch.rand(2 * 6, 3))
