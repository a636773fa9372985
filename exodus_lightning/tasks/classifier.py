"""LightningModule that trains any spiking network as a classifier."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from exodus_lightning import nn as enn
from exodus_lightning.tasks.readout import (
    ReadoutLoss,
    check_readout_loss,
    readout_logits,
    readout_loss,
)


def default_optimizer(parameters: Iterable) -> torch.optim.Optimizer:
    return torch.optim.Adam(parameters, lr=1e-3)


def _last_layer(network: nn.Module) -> str:
    """Name and type of the last layer that sets a width (out_features / out_channels), else
    of the last leaf module."""
    leaves = [(name, m) for name, m in network.named_modules() if not list(m.children())]
    sized = [(name, m) for name, m in leaves
             if hasattr(m, "out_features") or hasattr(m, "out_channels")]
    name, layer = (sized or leaves or [("", network)])[-1]
    width = getattr(layer, "out_features", getattr(layer, "out_channels", None))
    size = f", {width} outputs" if width is not None else ""
    return f"'{name or type(network).__name__}' ({type(layer).__name__}{size})"


def _sinabs_stateful_layers(network: nn.Module) -> list[nn.Module]:
    """The sinabs.layers StatefulLayers inside network (none when sinabs is not imported: a
    network built from its layers has imported it)."""
    layers = sys.modules.get("sinabs.layers")
    stateful = getattr(layers, "StatefulLayer", None)
    if not isinstance(stateful, type):
        return []
    return [layer for layer in network.modules() if isinstance(layer, stateful)]


def _empty_states(network: nn.Module) -> None:
    """Make every layer state empty, as constructed: the layer's next forward creates it."""
    for layer in network.modules():
        if isinstance(layer, enn.StatefulLayer):
            for name in layer.state_names:
                setattr(layer, name, getattr(layer, name).new_zeros(0))
    for layer in _sinabs_stateful_layers(network):
        # Every buffer of a sinabs StatefulLayer is a state, empty as constructed: its
        # forward sizes it (and resets it its own way, e.g. ALIF's threshold).
        for name, buffer in layer.named_buffers(recurse=False):
            setattr(layer, name, buffer.new_zeros(0))


class SpikingClassifier(L.LightningModule):
    """Classifies (batch, time, *input_shape) spike tensors with `network`.

    The network maps inputs to (batch, time, num_classes); `readout_loss` turns that into a loss
    and class scores (see tasks.readout); its last axis must have num_classes entries. Every
    layer with states (exodus_lightning.nn, and sinabs.layers as sinabs resets them) has them
    reset before each batch; every spiking one
    (``does_spike``: LIF, IAF, ALIF, adLIF, their Squeeze and Recurrent variants; not ExpLeak)
    has its spikes kept in ``layer_spikes`` (name -> (batch, time, *features)) for the
    callbacks, and its spike rate (spikes per neuron per step, the epoch's mean) logged per
    stage as spike_rate/<stage>/<layer name>, stage train, val or test. With
    firing_rate_weight w > 0 the training loss adds

        w · Σ_layers (mean spike rate of the layer − target_firing_rate)²

    (an error at construction if the network has no spiking layer to penalise).

    Logged: train/loss, train/acc, val/loss, val/acc, test/loss, test/acc; after testing the
    confusion matrix is in `test_confusion_matrix` (rows: true class, columns: predicted).
    `Trainer.predict` returns one dict per batch (see predict_step).
    """

    def __init__(
        self,
        network: nn.Module,
        num_classes: int,
        readout_loss: ReadoutLoss = "mean_membrane",
        firing_rate_weight: float = 0.0,
        target_firing_rate: float = 0.0,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_monitor: str = "val/loss",
    ) -> None:
        """optimizer: callable parameters -> Optimizer (a config gives class_path + init_args);
        lr_scheduler: callable optimizer -> scheduler, stepped every epoch (ReduceLROnPlateau
        watches lr_scheduler_monitor).
        """
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(
                f"network must be a torch.nn.Module, got {type(network).__name__}; in a config "
                "give its class_path and init_args"
            )
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"num_classes={num_classes} must be an integer >= 2")
        check_readout_loss(readout_loss)
        if firing_rate_weight < 0:
            raise ValueError(f"firing_rate_weight={firing_rate_weight} must be >= 0 (0 = off)")
        # Built in Python, the network, optimizer and scheduler are objects: the network's
        # weights are in the state dict already, and callables should not be pickled. From a
        # config, LightningCLI hands over its config as the hyperparameters (marked by the
        # "_instantiator" key that load_from_checkpoint reads), the network, optimizer and
        # scheduler as class_path/init_args: keeping those lets load_from_checkpoint rebuild the
        # module from the checkpoint alone.
        self.save_hyperparameters(ignore=["network", "optimizer", "lr_scheduler"])
        if "_instantiator" in self.hparams:
            self.save_hyperparameters()
        self.network = network
        self.num_classes = int(num_classes)
        self.readout_loss = readout_loss
        self.firing_rate_weight = float(firing_rate_weight)
        self.target_firing_rate = float(target_firing_rate)
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.lr_scheduler_monitor = lr_scheduler_monitor
        self.train_accuracy = MulticlassAccuracy(self.num_classes, average="micro")
        self.val_accuracy = MulticlassAccuracy(self.num_classes, average="micro")
        self.test_accuracy = MulticlassAccuracy(self.num_classes, average="micro")
        self.test_confusion = MulticlassConfusionMatrix(self.num_classes)
        self.test_confusion_matrix: Tensor | None = None
        # The spike outputs of every spiking layer in the last forward pass, by layer name.
        self.layer_spikes: dict[str, Tensor] = {}
        self.spiking_layer_names = []
        for name, layer in self.network.named_modules():
            if isinstance(layer, enn.StatefulLayer) and layer.does_spike:
                self.spiking_layer_names.append(name)
                layer.register_forward_hook(self._record_spikes(name))
        # Validation and test loss and spike rates as means over samples, summed over DDP ranks
        # at the epoch's end: sum_i w_i x_i / sum_i w_i with w = batch size. (Lightning's
        # sync_dist averages the ranks' means, which is biased when the ranks hold different
        # numbers of samples, as they do in evaluation.) Rates: one per spiking layer, in order.
        self.evaluation_loss = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})
        self.evaluation_rates = nn.ModuleDict({
            stage: nn.ModuleList(MeanMetric() for _ in self.spiking_layer_names)
            for stage in ("val", "test")
        })
        if self.firing_rate_weight > 0 and not self.spiking_layer_names:
            raise ValueError(
                f"firing_rate_weight={firing_rate_weight} but the network has no spiking layer "
                "to penalise (an exodus_lightning.nn layer whose does_spike is True: LIF, IAF, "
                "ALIF, adLIF or their variants); set firing_rate_weight=0 or use those layers")

    def _record_spikes(self, name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            # The layer's (batch, time, *features) spikes: a Squeeze layer returns them folded
            # to (batch·time, *features), which the callbacks would read as batch rows.
            self.layer_spikes[name] = module.last_output

        return hook

    def setup(self, stage: str) -> None:
        """Start every stage without layer states (they are reset before each batch anyway).

        The states are buffers shaped like the last batch, and under DDP evaluation the ranks'
        last batches can differ in size (every sample is scored once, so the ranks hold
        different numbers). Lightning broadcasts rank 0's buffers when validate, test or
        predict start; states of different shapes would fail that broadcast or garble it.
        """
        _empty_states(self.network)

    def _check_outputs(self, outputs: Tensor) -> None:
        """The network's last axis must hold one entry per class."""
        if outputs.dim() < 1 or outputs.shape[-1] == self.num_classes:
            return
        raise ValueError(
            f"the network returns {outputs.shape[-1]} classes (output shape "
            f"{tuple(outputs.shape)}) but num_classes={self.num_classes}: make the network's "
            f"last layer {_last_layer(self.network)} output {self.num_classes} features, or "
            f"set num_classes={outputs.shape[-1]}")

    def forward(self, x: Tensor) -> Tensor:
        """(batch, time, *input_shape) -> network output (batch, time, num_classes), from rest."""
        # Empty states (no graph kept from the last call): every layer starts from zeros of this
        # batch's size. States zeroed at the last call's size would be resampled to another
        # batch size with torch.randint (sinabs' rule): random draws that depend on the call
        # before (a smaller last batch, a spike raster's single sample), which shift the dropout
        # masks drawn after them, so a resumed fit would not draw the uninterrupted run's.
        _empty_states(self.network)
        self.layer_spikes = {}
        return self.network(x)

    def _step(self, batch: tuple[Tensor, Tensor], stage: str, accuracy: MulticlassAccuracy
              ) -> Tensor:
        x, targets = batch
        outputs = self(x)
        self._check_outputs(outputs)
        loss = readout_loss(outputs, targets, self.readout_loss)
        rates = {name: spikes.mean() for name, spikes in self.layer_spikes.items()}
        if stage == "train" and self.firing_rate_weight > 0:
            penalty = sum((rate - self.target_firing_rate) ** 2 for rate in rates.values())
            loss = loss + self.firing_rate_weight * penalty
        predictions = readout_logits(outputs, self.readout_loss).argmax(-1)
        accuracy(predictions, targets)
        batch_size = len(targets)
        # torchmetrics sync themselves, over every sample of every rank.
        self.log(f"{stage}/acc", accuracy, prog_bar=True, on_step=False, on_epoch=True,
                 batch_size=batch_size)
        if stage == "train":
            # Per step and per epoch; sync_dist averages the ranks' epoch means, which is exact
            # in training: Lightning's sampler gives every rank as many samples.
            self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True,
                     sync_dist=True, batch_size=batch_size)
            for name, rate in rates.items():
                self.log(f"spike_rate/train/{name}", rate.detach(), on_step=False, on_epoch=True,
                         sync_dist=True, batch_size=batch_size)
        else:
            self.evaluation_loss[stage].update(loss.detach(), weight=batch_size)
            self.log(f"{stage}/loss", self.evaluation_loss[stage], prog_bar=True, on_step=False,
                     on_epoch=True)
            for name, mean in zip(self.spiking_layer_names, self.evaluation_rates[stage]):
                if name in rates:
                    mean.update(rates[name].detach(), weight=batch_size)
                    self.log(f"spike_rate/{stage}/{name}", mean, on_step=False, on_epoch=True)
        if stage == "test":
            self.test_confusion(predictions, targets)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train", self.train_accuracy)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "val", self.val_accuracy)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "test", self.test_accuracy)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Layers that keep their parameters in range by projection (adLIF) are projected after
        # every optimizer step, as their authors do.
        enn.apply_parameter_constraints(self.network)

    def on_test_epoch_end(self) -> None:
        self.test_confusion_matrix = self.test_confusion.compute().cpu()
        self.test_confusion.reset()

    def predict_step(self, batch: Tensor | tuple[Tensor, ...], batch_idx: int
                     ) -> dict[str, Tensor]:
        """Per sample of an inputs or (inputs, targets) batch: "predicted" class (batch,),
        its softmax probability "confidence" (batch,), and "target" when the batch has one."""
        has_targets = isinstance(batch, (tuple, list)) and len(batch) > 1
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        outputs = self(x)
        self._check_outputs(outputs)
        logits = readout_logits(outputs, self.readout_loss)
        # The class as validation and test count it (argmax of the logits), its probability.
        predicted = logits.argmax(-1)
        confidence = logits.softmax(-1).gather(-1, predicted[:, None])[:, 0]
        result = {"predicted": predicted, "confidence": confidence}
        if has_targets:
            result["target"] = batch[1]
        return result

    def configure_optimizers(self) -> dict:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.lr_scheduler_monitor},
        }
