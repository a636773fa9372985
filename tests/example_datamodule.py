"""A user-defined DataModule, plugged in by class path without touching the package:

    exodus-lightning fit --data tests.example_datamodule.BurstDataModule

It only needs `num_classes` and `input_shape` attributes (the CLI links them to the model and
network) and (inputs (batch, time, *input_shape), targets) batches.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


class BurstDataModule(L.LightningDataModule):
    """Class c = a burst of spikes on channel c at a random time; other channels are noise."""

    def __init__(self, num_classes: int = 4, num_channels: int = 8, num_time_steps: int = 20,
                 num_samples: int = 64, batch_size: int = 16) -> None:
        super().__init__()
        if num_channels < num_classes:
            raise ValueError(f"num_channels={num_channels} must be >= num_classes={num_classes}")
        self.num_classes = num_classes
        self.input_shape = (num_channels,)
        self.num_time_steps = num_time_steps
        self.num_samples = num_samples
        self.batch_size = batch_size

    def make_dataset(self, seed: int) -> TensorDataset:
        g = torch.Generator().manual_seed(seed)
        targets = torch.arange(self.num_samples) % self.num_classes
        x = (torch.rand(self.num_samples, self.num_time_steps, *self.input_shape, generator=g)
             < 0.02).float()
        start = torch.randint(0, self.num_time_steps - 3, (self.num_samples,), generator=g)
        for i in range(self.num_samples):
            x[i, start[i] : start[i] + 3, targets[i]] = 1.0
        return TensorDataset(x, targets)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.make_dataset(0), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.make_dataset(1), batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.make_dataset(2), batch_size=self.batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
