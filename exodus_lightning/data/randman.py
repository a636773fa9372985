"""Random-manifold ("Randman") task of Zenke & Vogels (2021): class only in spike *timing*.

Class c owns a smooth random map f_c : [0, 1]^D -> [0, 1]^N (D latent dims, N channels),

    g_{c,n}(z) = sum_{d=1..D} sum_{k=1..K} a_{c,n,d,k} k^(-alpha) sin(2 pi k z_d + phi_{c,n,d,k})
    f_{c,n}(z) = clip((g_{c,n}(z) - min_n) / (max_n - min_n), 0, 1)

with a ~ U(0, 1), phi ~ U(0, 2 pi), and min_n / max_n taken over a fixed seeded set of
reference points (not over the samples drawn). Larger alpha = smoother maps = easier task.
A sample of class c is a latent point z ~ U[0, 1]^D; channel n fires exactly once, at step
round(f_{c,n}(z) * (T - 1) + jitter * N(0, 1)) clipped to [0, T - 1]. Every channel fires once
in every sample, so spike counts carry no class information.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from exodus_lightning.data.base import GeneratedDataModule

NUM_REFERENCE_POINTS = 4096
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}


class RandomManifolds:
    """The class maps f_c of the Randman task; see the module docstring for the formula."""

    def __init__(
        self,
        num_classes: int,
        num_channels: int,
        latent_dim: int,
        num_frequencies: int,
        alpha: float,
        seed: int,
    ) -> None:
        for name, value in (
            ("num_classes", num_classes),
            ("num_channels", num_channels),
            ("latent_dim", latent_dim),
            ("num_frequencies", num_frequencies),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name}={value} must be a positive integer")
        if alpha < 0:
            raise ValueError(f"alpha={alpha} must be >= 0 (larger = smoother, easier)")
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes} must be at least 2")
        self.num_classes = num_classes
        self.num_channels = num_channels
        self.latent_dim = latent_dim
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC1A55]))
        shape = (num_classes, num_channels, latent_dim, num_frequencies)
        decay = np.arange(1, num_frequencies + 1, dtype=np.float64) ** (-alpha)
        self.amplitudes = rng.uniform(0.0, 1.0, shape) * decay
        self.phases = rng.uniform(0.0, 2 * np.pi, shape)
        self.frequencies = np.arange(1, num_frequencies + 1, dtype=np.float64)
        reference = rng.uniform(0.0, 1.0, (NUM_REFERENCE_POINTS, latent_dim))
        raw = np.stack([self._raw(reference, c) for c in range(num_classes)])  # (C, R, N)
        self.minimum = raw.min(axis=1)  # (C, N)
        self.span = np.maximum(raw.max(axis=1) - self.minimum, 1e-12)

    def _raw(self, latent: np.ndarray, label: int) -> np.ndarray:
        """g_c(z) for latent (S, D) -> (S, N)."""
        angles = 2 * np.pi * latent[:, None, :, None] * self.frequencies + self.phases[label]
        return (self.amplitudes[label] * np.sin(angles)).sum(axis=(2, 3))

    def __call__(self, latent: np.ndarray, label: int) -> np.ndarray:
        """f_c(z) in [0, 1]: latent (S, D) -> (S, N)."""
        values = (self._raw(latent, label) - self.minimum[label]) / self.span[label]
        return np.clip(values, 0.0, 1.0)

    def sample_spike_steps(
        self, num_samples: int, num_time_steps: int, jitter: float, seed: int, stream: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Balanced draw: steps (S, N) int64 in [0, T), labels (S,) int64 = 0, 1, ..., C-1, 0, ...

        (seed, stream) pick the random stream; different streams give independent samples.
        """
        rng = np.random.default_rng(np.random.SeedSequence([seed, stream, 0x5A3D]))
        labels = np.arange(num_samples) % self.num_classes
        latent = rng.uniform(0.0, 1.0, (num_samples, self.latent_dim))
        coordinates = np.empty((num_samples, self.num_channels))
        for label in range(self.num_classes):
            rows = labels == label
            coordinates[rows] = self(latent[rows], label)
        steps = coordinates * (num_time_steps - 1) + jitter * rng.standard_normal(coordinates.shape)
        steps = np.clip(np.rint(steps), 0, num_time_steps - 1).astype(np.int64)
        return steps, labels.astype(np.int64)


def spike_steps_to_tensor(steps: np.ndarray, num_time_steps: int) -> torch.Tensor:
    """One spike per channel: (S, N) steps -> float32 (S, T, N) with x[s, steps[s, n], n] = 1."""
    one_hot = torch.nn.functional.one_hot(torch.as_tensor(steps), num_time_steps)  # (S, N, T)
    return one_hot.transpose(1, 2).to(torch.float32).contiguous()


class RandmanDataModule(GeneratedDataModule):
    """Randman batches: inputs (batch, T, N) with one spike per channel, no download needed.

    Maps are drawn from `manifold_seed`, samples from `seed` (a different stream per split), so
    train, val and test share the class maps but not the samples. All splits are generated once
    in setup() and kept in memory (10000 x 50 x 20 floats = 40 MB).
    Defaults (10 classes, 20 channels, T = 50, 2-D latent) are a task a 20-128-10 LIF network
    solves to >= 95 % in minutes on CPU while a linear model (logistic regression) on first-spike
    times gets ~32 %.
    `data_dir` and `download` are accepted for a uniform DataModule interface and are unused.
    """

    def __init__(
        self,
        *,
        data_dir: str | Path | None = None,
        download: bool = True,
        batch_size: int = 128,
        num_classes: int = 10,
        num_channels: int = 20,
        num_time_steps: int = 50,
        latent_dim: int = 2,
        num_frequencies: int = 3,
        alpha: float = 2.0,
        jitter: float = 0.0,
        num_train_samples: int = 10000,
        num_val_samples: int = 2000,
        num_test_samples: int = 2000,
        manifold_seed: int = 0,
        **loader_settings: Any,
    ) -> None:
        """Randman's settings; `loader_settings` go to SpikeDataModule.

        Args:
            data_dir: unused (nothing is read from disk).
            download: unused (nothing is downloaded).
            batch_size: samples per batch.
            num_classes: number of classes, one random manifold each.
            num_channels: N, input channels (one spike each per sample).
            num_time_steps: T, time steps per sample (at least 2).
            latent_dim: dimension of each manifold (harder when larger).
            num_frequencies: sine terms per manifold coordinate (rougher when larger).
            alpha: decay of the sine amplitudes with frequency (smoother when larger).
            jitter: std of the spike-time noise in steps.
            num_train_samples: training samples.
            num_val_samples: validation samples.
            num_test_samples: test samples.
            manifold_seed: seed of the class manifolds (samples are drawn from `seed`).
        """
        super().__init__(batch_size=batch_size, **loader_settings)
        if int(num_time_steps) != num_time_steps or num_time_steps < 2:
            raise ValueError(f"num_time_steps={num_time_steps} must be an integer >= 2")
        if jitter < 0:
            raise ValueError(f"jitter={jitter} must be >= 0 (std of spike-time noise in steps)")
        for name, value in (
            ("num_train_samples", num_train_samples),
            ("num_val_samples", num_val_samples),
            ("num_test_samples", num_test_samples),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name}={value} must be a positive integer")
        self.manifolds = RandomManifolds(
            num_classes, num_channels, latent_dim, num_frequencies, alpha, manifold_seed
        )
        self.jitter = float(jitter)
        self.split_sizes = {
            "train": int(num_train_samples),
            "val": int(num_val_samples),
            "test": int(num_test_samples),
        }
        self.num_classes = int(num_classes)
        self.input_shape = (int(num_channels),)
        self.num_time_steps = int(num_time_steps)

    def make_dataset(self, split: str) -> TensorDataset:
        """All samples of `split` ('train', 'val' or 'test') as a TensorDataset (x (T, N), y)."""
        if split not in SPLIT_STREAMS:
            raise ValueError(f"unknown split {split!r}; choose from {list(SPLIT_STREAMS)}")
        steps, labels = self.manifolds.sample_spike_steps(
            self.split_sizes[split],
            self.num_time_steps,
            self.jitter,
            seed=self.seed,
            stream=SPLIT_STREAMS[split],
        )
        return TensorDataset(
            spike_steps_to_tensor(steps, self.num_time_steps), torch.as_tensor(labels)
        )
