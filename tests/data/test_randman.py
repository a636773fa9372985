"""The built-in random-manifold task: determinism, one spike per channel, timing-only classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from exodus_lightning.data import RandmanDataModule, RandomManifolds


def arrays(module: RandmanDataModule, split: str) -> tuple[np.ndarray, np.ndarray]:
    dataset = module.make_dataset(split)
    inputs, labels = dataset.tensors
    return inputs.numpy(), labels.numpy()


def first_spike_steps(inputs: np.ndarray) -> np.ndarray:
    """(S, T, N) spikes -> (S, N) step of each channel's first spike."""
    return inputs.argmax(axis=1).astype(np.float64)


def linear_accuracy(train: tuple, test: tuple) -> float:
    scaler = StandardScaler().fit(train[0])
    model = LogisticRegression(max_iter=500).fit(scaler.transform(train[0]), train[1])
    return model.score(scaler.transform(test[0]), test[1])


def test_every_channel_fires_exactly_once_per_sample() -> None:
    module = RandmanDataModule(num_train_samples=300, jitter=2.0)
    inputs, labels = arrays(module, "train")
    assert inputs.shape == (300, 50, 20) and inputs.dtype == np.float32
    assert set(np.unique(inputs)) == {0.0, 1.0}
    np.testing.assert_array_equal(inputs.sum(axis=1), np.ones((300, 20)))
    np.testing.assert_array_equal(np.bincount(labels), np.full(10, 30))


def test_same_seeds_same_data_and_other_seeds_other_data() -> None:
    def train(seed: int, manifold_seed: int = 0) -> np.ndarray:
        module = RandmanDataModule(seed=seed, manifold_seed=manifold_seed, num_train_samples=50)
        return arrays(module, "train")[0]

    np.testing.assert_array_equal(train(1), train(1))
    assert not np.array_equal(train(1), train(2))
    assert not np.array_equal(train(1, manifold_seed=0), train(1, manifold_seed=1))


def test_splits_share_the_class_maps_but_not_the_samples() -> None:
    module = RandmanDataModule(num_train_samples=200, num_val_samples=200, num_test_samples=200)
    train, val, test = (arrays(module, split)[0] for split in ("train", "val", "test"))
    assert not np.array_equal(train, val) and not np.array_equal(val, test)
    # Same maps: a 1-nearest-neighbour on first-spike times transfers across splits far above
    # chance, which it could not if each split had its own maps.
    other_maps = RandmanDataModule(num_test_samples=200, manifold_seed=7)
    assert _nearest_neighbour_accuracy(module, module) > 0.5
    assert _nearest_neighbour_accuracy(module, other_maps) < 0.25


def _nearest_neighbour_accuracy(reference: RandmanDataModule, query: RandmanDataModule) -> float:
    train_x, train_y = arrays(reference, "train")
    test_x, test_y = arrays(query, "test")
    distances = torch.cdist(
        torch.as_tensor(first_spike_steps(test_x)), torch.as_tensor(first_spike_steps(train_x))
    )
    predicted = train_y[distances.argmin(dim=1).numpy()]
    return float((predicted == test_y).mean())


def test_maps_are_normalised_on_reference_points_not_on_the_batch() -> None:
    manifolds = RandomManifolds(3, 5, 2, 3, 2.0, seed=0)
    latent = np.random.default_rng(1).uniform(size=(6, 2))
    alone = manifolds(latent[:2], 0)
    in_batch = manifolds(latent, 0)[:2]
    np.testing.assert_allclose(alone, in_batch)
    wide = manifolds(np.random.default_rng(2).uniform(size=(5000, 2)), 1)
    assert wide.min() < 0.05 and wide.max() > 0.95


def test_counts_are_at_chance_while_first_spike_times_separate_an_easy_setting() -> None:
    easy = RandmanDataModule(
        num_classes=3, latent_dim=1, num_train_samples=900, num_test_samples=600
    )
    train_x, train_y = arrays(easy, "train")
    test_x, test_y = arrays(easy, "test")
    counts = linear_accuracy((train_x.sum(axis=1), train_y), (test_x.sum(axis=1), test_y))
    timing = linear_accuracy(
        (first_spike_steps(train_x), train_y), (first_spike_steps(test_x), test_y)
    )
    assert counts < 1 / 3 + 0.06
    assert timing > 0.9


def test_default_task_is_not_linearly_solvable_from_spike_times() -> None:
    # The default data (10000 training, 2000 validation samples), as the README and the
    # DataModule's docstring measure it: ~32 %.
    module = RandmanDataModule()
    train_x, train_y = arrays(module, "train")
    val_x, val_y = arrays(module, "val")
    timing = linear_accuracy(
        (first_spike_steps(train_x), train_y), (first_spike_steps(val_x), val_y)
    )
    assert abs(timing - 0.32) < 0.03
    assert "on first-spike times gets ~32 %" in " ".join(RandmanDataModule.__doc__.split())


def test_setup_generates_once_and_batches_are_float_time_major() -> None:
    module = RandmanDataModule(
        batch_size=16, num_train_samples=64, num_val_samples=32, num_test_samples=32
    )
    assert (module.num_classes, module.input_shape, module.num_time_steps) == (10, (20,), 50)
    module.setup("fit")
    train = module.train_dataset
    module.setup("fit")
    module.setup("test")
    assert module.train_dataset is train
    inputs, targets = next(iter(module.train_dataloader()))
    assert inputs.shape == (16, 50, 20) and inputs.dtype == torch.float32
    assert targets.dtype == torch.int64
    assert len(module.test_dataset) == 32


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loaders_cover_every_sample(num_workers: int) -> None:
    module = RandmanDataModule(
        batch_size=32, num_workers=num_workers, num_train_samples=100, num_val_samples=40
    )
    module.setup("fit")
    seen = sum(len(targets) for _, targets in module.train_dataloader())
    assert seen == 100
    assert sum(len(targets) for _, targets in module.val_dataloader()) == 40
