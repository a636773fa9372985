"""Delayed XOR: a built-in task that needs memory across a long silent gap.

Two cues, each one of K spike patterns on the same channels, are separated by a gap of G silent
steps; the class is (first cue + second cue) mod K (for K = 2, their XOR). Neither cue alone
says anything about the class, so a network must hold the first cue for G steps: feed-forward
LIF neurons with τ ≪ G cannot, adaptive thresholds, recurrence or synaptic delays longer than
the gap can.

    steps [0, W)              first cue:  pattern p₁ (the pattern's channels, a random subset,
                                           each spike with probability cue_rate per step)
    steps [W, W + G)          silence (background noise only)
    steps [W + G, 2W + G)     second cue: pattern p₂
    steps [2W + G, T)         silence; T = 2W + G + tail
    label                     (p₁ + p₂) mod K

Patterns are drawn from `pattern_seed` (shared by every split), samples from `seed` (a different
stream per split). Background noise: every channel spikes at every step with probability
`noise_rate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from exodus_lightning.data.base import GeneratedDataModule

SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}


def cue_patterns(num_patterns: int, num_channels: int, active_fraction: float, seed: int
                 ) -> np.ndarray:
    """Which channels each pattern drives: bool (K, N), each pattern at least one channel."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xDE1A7]))
    active = rng.random((num_patterns, num_channels)) < active_fraction
    active[np.arange(num_patterns), rng.integers(0, num_channels, num_patterns)] = True
    return active


def delayed_xor_samples(patterns: np.ndarray, num_samples: int, cue_steps: int, gap: int,
                        tail: int, cue_rate: float, noise_rate: float, seed: int, stream: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced samples: inputs float32 (S, T, N) and labels int64 (S,)."""
    num_patterns, num_channels = patterns.shape
    time_steps = 2 * cue_steps + gap + tail
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream, 0x0C0E]))
    # Every (first, second) pair equally often.
    pairs = np.arange(num_samples) % (num_patterns * num_patterns)
    first, second = pairs // num_patterns, pairs % num_patterns
    x = rng.random((num_samples, time_steps, num_channels)) < noise_rate
    for cue, offset in ((first, 0), (second, cue_steps + gap)):
        drawn = rng.random((num_samples, cue_steps, num_channels)) < cue_rate
        x[:, offset:offset + cue_steps] |= drawn & patterns[cue][:, None, :]
    x = x.astype(np.float32)
    labels = (first + second) % num_patterns
    return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))


class DelayedXorDataModule(GeneratedDataModule):
    """Delayed XOR batches (see the module docstring): inputs (batch, T, N), no download needed.

    Defaults (K = 2 patterns, 40 channels, cue windows of 10 steps, a gap of 80, T = 110) give a
    task on which feed-forward LIF networks stay at chance (50 %) while networks with memory
    longer than the gap (ALIF, adLIF, recurrence, delays) learn it; see
    experiments/temporal_memory.py. All splits are generated in setup() and kept in memory.
    `data_dir` and `download` are accepted for a uniform DataModule interface and are unused.
    """

    def __init__(
        self,
        *,
        data_dir: str | Path | None = None,
        download: bool = True,
        batch_size: int = 128,
        num_patterns: int = 2,
        num_channels: int = 40,
        cue_steps: int = 10,
        gap: int = 80,
        tail: int = 10,
        active_fraction: float = 0.5,
        cue_rate: float = 0.5,
        noise_rate: float = 0.01,
        num_train_samples: int = 4096,
        num_val_samples: int = 1024,
        num_test_samples: int = 1024,
        pattern_seed: int = 0,
        **loader_settings: Any,
    ) -> None:
        """The task's settings; `loader_settings` go to SpikeDataModule.

        Args:
            data_dir: unused (nothing is read from disk).
            download: unused (nothing is downloaded).
            batch_size: samples per batch.
            num_patterns: K, patterns per cue and number of classes (≥ 2).
            num_channels: N, input channels shared by both cues.
            cue_steps: W, steps of each cue window (≥ 1).
            gap: G, silent steps between the cues (≥ 0): the memory the task needs.
            tail: silent steps after the second cue (≥ 0), time for the network to answer.
            active_fraction: fraction of channels a pattern drives, in (0, 1].
            cue_rate: spike probability per step of a driven channel during a cue, in (0, 1].
            noise_rate: background spike probability per channel and step, in [0, 1).
            num_train_samples, num_val_samples, num_test_samples: samples per split.
            pattern_seed: seed of the cue patterns (samples are drawn from `seed`).
        """
        super().__init__(batch_size=batch_size, **loader_settings)
        integers = dict(num_patterns=(num_patterns, 2), num_channels=(num_channels, 1),
                        cue_steps=(cue_steps, 1), gap=(gap, 0), tail=(tail, 0),
                        num_train_samples=(num_train_samples, 1),
                        num_val_samples=(num_val_samples, 1),
                        num_test_samples=(num_test_samples, 1))
        for name, (value, low) in integers.items():
            if int(value) != value or value < low:
                raise ValueError(f"{name}={value} must be an integer >= {low}")
        if not 0 < active_fraction <= 1:
            raise ValueError(f"active_fraction={active_fraction} must lie in (0, 1]")
        if not 0 < cue_rate <= 1:
            raise ValueError(f"cue_rate={cue_rate} must lie in (0, 1] (a probability per "
                             f"channel and step)")
        if not 0 <= noise_rate < 1:
            raise ValueError(f"noise_rate={noise_rate} must lie in [0, 1) (a probability per "
                             f"channel and step)")
        self.patterns = cue_patterns(int(num_patterns), int(num_channels),
                                     float(active_fraction), int(pattern_seed))
        self.cue_steps, self.gap, self.tail = int(cue_steps), int(gap), int(tail)
        self.cue_rate, self.noise_rate = float(cue_rate), float(noise_rate)
        self.split_sizes = {"train": int(num_train_samples), "val": int(num_val_samples),
                            "test": int(num_test_samples)}
        self.num_classes = int(num_patterns)
        self.input_shape = (int(num_channels),)
        self.num_time_steps = 2 * self.cue_steps + self.gap + self.tail

    def make_dataset(self, split: str) -> TensorDataset:
        """All samples of `split` ('train', 'val' or 'test') as a TensorDataset (x (T, N), y)."""
        if split not in SPLIT_STREAMS:
            raise ValueError(f"unknown split {split!r}; choose from {list(SPLIT_STREAMS)}")
        x, y = delayed_xor_samples(self.patterns, self.split_sizes[split], self.cue_steps,
                                   self.gap, self.tail, self.cue_rate, self.noise_rate, self.seed,
                                   SPLIT_STREAMS[split])
        return TensorDataset(x, y)
