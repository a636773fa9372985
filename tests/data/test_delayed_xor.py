"""The built-in delayed-XOR task: layout in time, balance, determinism, and that neither cue
alone (nor anything outside the cue windows) carries the class."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from exodus_lightning.data import DelayedXorDataModule


def arrays(module: DelayedXorDataModule, split: str = "train"):
    inputs, labels = module.make_dataset(split).tensors
    return inputs.numpy(), labels.numpy()


def test_cues_sit_in_their_windows_and_the_gap_is_silent_without_noise():
    module = DelayedXorDataModule(num_train_samples=64, cue_steps=6, gap=20, tail=4,
                                  noise_rate=0.0, cue_rate=0.7)
    x, y = arrays(module)
    assert x.shape == (64, 36, 40) and module.num_time_steps == 36
    assert set(np.unique(x)) <= {0.0, 1.0}
    assert x[:, 6:26].sum() == 0 and x[:, 32:].sum() == 0
    assert x[:, :6].sum() > 0 and x[:, 26:32].sum() > 0


def test_each_cue_drives_only_its_patterns_channels_and_the_class_is_their_sum():
    module = DelayedXorDataModule(num_patterns=3, num_channels=60, num_train_samples=90,
                                  noise_rate=0.0, cue_rate=1.0, cue_steps=8, gap=5,
                                  active_fraction=0.3)
    x, y = arrays(module)
    patterns = module.patterns.astype(np.float32)
    assert len({tuple(p) for p in patterns}) == 3  # three different channel sets

    def pattern_of(window):
        # cue_rate = 1: every driven channel spikes at every step of the window.
        matches = [i for i, p in enumerate(patterns) if np.array_equal(window, np.tile(p, (8, 1)))]
        assert len(matches) == 1
        return matches[0]

    for sample, label in zip(x, y):
        assert label == (pattern_of(sample[:8]) + pattern_of(sample[13:21])) % 3
    np.testing.assert_array_equal(np.bincount(y), [30, 30, 30])


def test_neither_cue_alone_predicts_the_class():
    module = DelayedXorDataModule(num_train_samples=2000, num_test_samples=1000, gap=10)
    (x_train, y_train), (x_test, y_test) = arrays(module, "train"), arrays(module, "test")
    windows = {"first": slice(0, 10), "second": slice(20, 30)}
    for name, window in windows.items():
        features = x_train[:, window].reshape(len(x_train), -1)
        model = LogisticRegression(max_iter=300).fit(features, y_train)
        score = model.score(x_test[:, window].reshape(len(x_test), -1), y_test)
        assert score < 0.6, f"the {name} cue alone gives {score:.2f}"


def test_same_seeds_same_data_other_seeds_other_data():
    def train(seed, pattern_seed=0):
        return arrays(DelayedXorDataModule(seed=seed, pattern_seed=pattern_seed,
                                           num_train_samples=40))[0]

    np.testing.assert_array_equal(train(1), train(1))
    assert not np.array_equal(train(1), train(2))
    assert not np.array_equal(train(1, 0), train(1, 1))
    module = DelayedXorDataModule(num_train_samples=40, num_val_samples=40)
    assert not np.array_equal(arrays(module, "train")[0], arrays(module, "val")[0])


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(num_patterns=1), "num_patterns=1 must be an integer >= 2"),
    (dict(gap=-1), "gap=-1"),
    (dict(cue_steps=0), "cue_steps=0"),
    (dict(noise_rate=1.0), "noise_rate"),
    (dict(active_fraction=0.0), "active_fraction"),
    (dict(cue_rate=0.0), "cue_rate"),
])
def test_bad_settings_are_named(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        DelayedXorDataModule(**kwargs)


def test_setup_and_loaders_give_batches_of_the_announced_shape():
    module = DelayedXorDataModule(batch_size=16, num_train_samples=64, num_val_samples=32,
                                  num_test_samples=32)
    module.setup("fit")
    inputs, targets = next(iter(module.train_dataloader()))
    assert inputs.shape == (16, module.num_time_steps, *module.input_shape)
    assert targets.max() < module.num_classes
