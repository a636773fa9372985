"""SpikingClassifier and the readout losses."""

from __future__ import annotations

import functools

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from exodus_lightning import nn as enn
from exodus_lightning.models import FeedForwardSNN
from exodus_lightning.tasks import READOUT_LOSSES, SpikingClassifier, readout_logits, readout_loss
from tests.example_datamodule import BurstDataModule


def test_readout_logits_follow_their_definitions():
    outputs = torch.tensor([[[1.0, 0.0], [3.0, 1.0], [2.0, 5.0]]])  # (1, 3, 2)
    assert readout_logits(outputs, "spike_count").tolist() == [[6.0, 6.0]]
    assert readout_logits(outputs, "max_membrane").tolist() == [[3.0, 5.0]]
    assert readout_logits(outputs, "mean_membrane").tolist() == [[2.0, 2.0]]
    assert readout_logits(outputs, "per_step").tolist() == [[2.0, 2.0]]


def test_per_step_loss_is_the_mean_of_step_losses():
    outputs = torch.randn(3, 5, 4)
    targets = torch.tensor([0, 3, 1])
    expected = torch.stack([F.cross_entropy(outputs[:, t], targets) for t in range(5)]).mean()
    torch.testing.assert_close(readout_loss(outputs, targets, "per_step"), expected)
    torch.testing.assert_close(readout_loss(outputs, targets, "max_membrane"),
                               F.cross_entropy(outputs.max(1).values, targets))


def test_softmax_sum_sums_the_class_probabilities_of_every_step():
    outputs = torch.randn(3, 5, 4)
    targets = torch.tensor([0, 3, 1])
    summed = sum(outputs[:, t].softmax(-1) for t in range(5))
    torch.testing.assert_close(readout_logits(outputs, "softmax_sum"), summed)
    torch.testing.assert_close(readout_loss(outputs, targets, "softmax_sum"),
                               F.cross_entropy(summed, targets))


def test_readout_needs_batch_time_classes():
    with pytest.raises(ValueError, match=r"\(batch, time, classes\)"):
        readout_logits(torch.randn(3, 4), "mean_membrane")


def make_classifier(**kwargs) -> SpikingClassifier:
    network = FeedForwardSNN((6,), 3, hidden_sizes=(16, 8), spike_threshold=0.3)
    return SpikingClassifier(network, num_classes=3, **kwargs)


def test_states_are_reset_for_every_batch():
    model = make_classifier()
    x = (torch.rand(4, 10, 6) < 0.4).float()
    first = model(x)
    # Without the reset, the second call would start from the first call's membranes.
    torch.testing.assert_close(model(x), first)
    assert set(model.layer_spikes) == {"layers.2", "layers.4"}
    assert model.layer_spikes["layers.2"].shape == (4, 10, 16)


def test_a_sinabs_network_trains_like_the_same_network_of_our_layers(tmp_path):
    """A network of sinabs.layers has its states reset (and detached) before every batch as
    ours are: it trains (its second step failed with "backward through the graph a second
    time") and ends with the weights of the same network converted to our layers."""
    sl = pytest.importorskip("sinabs.layers")
    from exodus_lightning.convert import from_sinabs

    data = BurstDataModule(num_classes=3, num_channels=6, num_time_steps=20, num_samples=64,
                           batch_size=16)
    torch.manual_seed(0)
    sinabs_network = nn.Sequential(
        nn.Flatten(start_dim=2), nn.Linear(6, 16),
        sl.LIF(tau_mem=5.0, spike_threshold=0.5, norm_input=False),
        nn.Linear(16, 3), sl.ExpLeak(tau_mem=5.0))
    ours = from_sinabs(sinabs_network)
    assert not any(isinstance(m, sl.StatefulLayer) for m in ours.modules())
    initial = {n: p.detach().clone() for n, p in sinabs_network.named_parameters()}
    trained = []
    for network in (sinabs_network, ours):
        L.seed_everything(0)
        # SGD: Adam would amplify float rounding in gradients near zero.
        model = SpikingClassifier(network, data.num_classes,
                                  optimizer=functools.partial(torch.optim.SGD, lr=0.5))
        trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False,
                            enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False)
        trainer.fit(model, data)
        trained.append(({n: p.detach() for n, p in network.named_parameters()},
                        float(trainer.callback_metrics["val/loss"])))
    (sinabs_weights, sinabs_loss), (our_weights, our_loss) = trained
    assert trainer.global_step == 8
    assert not torch.equal(sinabs_weights["1.weight"], initial["1.weight"])
    shared = sinabs_weights.keys() & our_weights.keys()
    assert {"1.weight", "1.bias", "3.weight", "3.bias"} <= shared
    for name in shared:
        torch.testing.assert_close(sinabs_weights[name], our_weights[name], rtol=1e-4,
                                   atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    assert sinabs_loss == pytest.approx(our_loss, rel=1e-4)


def test_a_forward_draws_no_random_numbers_whatever_the_batch_before():
    """States start empty at every forward: zeros of the last call's batch size were resampled
    to the new size with torch.randint, draws that shifted the dropout masks after a smaller
    batch (a spike raster's single sample, a partial last batch)."""
    model = make_classifier()
    with torch.no_grad():
        model((torch.rand(1, 10, 6) < 0.4).float())
        before = torch.get_rng_state()
        outputs = model(torch.ones(4, 10, 6))
        assert torch.equal(torch.get_rng_state(), before)
        model.setup("fit")  # empty states, as a new stage starts
        torch.testing.assert_close(model(torch.ones(4, 10, 6)), outputs, rtol=0, atol=0)


def test_firing_rate_regulariser_adds_its_penalty():
    torch.manual_seed(0)
    plain = make_classifier()
    regularised = make_classifier(firing_rate_weight=2.0, target_firing_rate=0.05)
    regularised.load_state_dict(plain.state_dict())
    batch = ((torch.rand(4, 10, 6) < 0.4).float(), torch.tensor([0, 1, 2, 0]))
    for model in (plain, regularised):
        model.log = lambda *args, **kwargs: None  # no Trainer attached
    base = plain.training_step(batch, 0)
    total = regularised.training_step(batch, 0)
    rates = [s.mean() for s in regularised.layer_spikes.values()]
    penalty = sum((rate - 0.05) ** 2 for rate in rates)
    torch.testing.assert_close(total, base + 2.0 * penalty)
    assert penalty > 0


@pytest.mark.parametrize("neuron", ["iaf", "alif", "adlif"])
@pytest.mark.parametrize("recurrent", [False, True])
def test_every_kind_of_spiking_layer_is_recorded_and_penalised(neuron, recurrent):
    """Not only LIF: ALIF and adLIF networks get the rate penalty and the spike records."""
    torch.manual_seed(0)
    network = FeedForwardSNN((6,), 3, hidden_sizes=(16,), neuron=neuron, recurrent=recurrent,
                             spike_threshold=0.3)
    plain = SpikingClassifier(network, num_classes=3)
    regularised = SpikingClassifier(network, num_classes=3, firing_rate_weight=2.0)
    assert regularised.spiking_layer_names == ["layers.2"]  # the readout is an ExpLeak
    batch = ((torch.rand(4, 10, 6) < 0.6).float() * 3, torch.tensor([0, 1, 2, 0]))
    for model in (plain, regularised):
        model.log = lambda *args, **kwargs: None  # no Trainer attached
    base = plain.training_step(batch, 0)
    total = regularised.training_step(batch, 0)
    rate = regularised.layer_spikes["layers.2"].mean()
    assert regularised.layer_spikes["layers.2"].shape == (4, 10, 16)
    assert rate > 0
    torch.testing.assert_close(total, base + 2.0 * rate**2)


def test_squeeze_layers_are_recorded_as_batch_time_features():
    network = nn.Sequential(enn.FlattenTime(), nn.Linear(6, 5),
                            enn.LIFSqueeze(num_timesteps=10, tau_mem=5.0),
                            enn.UnflattenTime(num_timesteps=10), nn.Linear(5, 3))
    model = SpikingClassifier(network, num_classes=3)
    model(torch.rand(4, 10, 6))
    assert model.layer_spikes["2"].shape == (4, 10, 5)


def test_a_rate_penalty_without_spiking_layers_is_an_error():
    network = nn.Sequential(nn.Linear(6, 3), enn.ExpLeak(tau_mem=5.0))
    SpikingClassifier(network, num_classes=3)  # without the penalty: fine
    with pytest.raises(ValueError, match="firing_rate_weight=0.5 but the network has no spiking "
                                         "layer"):
        SpikingClassifier(network, num_classes=3, firing_rate_weight=0.5)


@pytest.mark.parametrize("outputs", [2, 4])
def test_the_network_must_output_num_classes(outputs):
    network = nn.Sequential(nn.Linear(6, outputs), enn.ExpLeak(tau_mem=5.0))
    model = SpikingClassifier(network, num_classes=3)
    model.log = lambda *args, **kwargs: None
    batch = (torch.rand(4, 10, 6), torch.tensor([0, 1, 0, 1]))
    message = (rf"the network returns {outputs} classes .* but num_classes=3: make the "
               rf"network's last layer '0' \(Linear, {outputs} outputs\) output 3 features")
    for step in (model.training_step, model.validation_step, model.test_step,
                 model.predict_step):
        with pytest.raises(ValueError, match=message):
            step(batch, 0)


def test_predict_step_returns_classes_confidences_and_targets():
    model = make_classifier(readout_loss="max_membrane")
    x = torch.rand(5, 8, 6)
    logits = model(x).max(1).values
    expected = logits.argmax(-1)
    alone = model.predict_step(x, 0)
    assert set(alone) == {"predicted", "confidence"}
    assert torch.equal(alone["predicted"], expected)
    torch.testing.assert_close(alone["confidence"], logits.softmax(-1).max(-1).values)
    targets = torch.tensor([0, 1, 2, 0, 1])
    paired = model.predict_step((x, targets), 0)
    assert torch.equal(paired["predicted"], expected) and torch.equal(paired["target"], targets)


def test_classifier_is_importable_from_the_package():
    import exodus_lightning

    assert exodus_lightning.SpikingClassifier is SpikingClassifier
    from exodus_lightning import SpikingClassifier as top_level

    assert top_level is SpikingClassifier
    with pytest.raises(AttributeError, match="no attribute 'Missing'"):
        exodus_lightning.Missing  # noqa: B018


def test_optimizer_and_scheduler_come_from_callables():
    model = make_classifier(
        optimizer=functools.partial(torch.optim.SGD, lr=0.5),
        lr_scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=3),
    )
    configured = model.configure_optimizers()
    assert isinstance(configured["optimizer"], torch.optim.SGD)
    assert configured["optimizer"].param_groups[0]["lr"] == 0.5
    assert isinstance(configured["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert configured["lr_scheduler"]["monitor"] == "val/loss"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"readout_loss": "softmax"}, ValueError, "readout_loss must be one of .*got 'softmax'"),
        ({"firing_rate_weight": -1.0}, ValueError, "firing_rate_weight"),
        ({"num_classes": 1}, ValueError, "num_classes"),
        ({"network": "FeedForwardSNN"}, TypeError, "class_path"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, message):
    arguments = {"network": torch.nn.Identity(), "num_classes": 3, **kwargs}
    with pytest.raises(error, match=message):
        SpikingClassifier(**arguments)


@pytest.mark.slow
@pytest.mark.parametrize("readout", READOUT_LOSSES)
def test_learns_a_burst_task_with_every_readout(readout, tmp_path):
    # Class c = a 3-step burst on channel c amid noise; chance is 1/3.
    data = BurstDataModule(num_classes=3, num_channels=6, num_time_steps=20, num_samples=96,
                           batch_size=32)
    network = FeedForwardSNN(data.input_shape, data.num_classes, hidden_sizes=(16,),
                             tau_mem=5.0, spike_threshold=0.5, readout_tau_mem=5.0,
                             readout="lif" if readout == "spike_count" else "exp_leak")
    model = SpikingClassifier(network, data.num_classes, readout_loss=readout,
                              optimizer=functools.partial(torch.optim.Adam, lr=0.03))
    trainer = L.Trainer(max_epochs=8, accelerator="cpu", logger=CSVLogger(tmp_path),
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, log_every_n_steps=1)
    trainer.fit(model, data)
    metrics = trainer.callback_metrics
    assert metrics["val/acc"] >= 0.8, (readout, float(metrics["val/acc"]))
    assert 0 < metrics["spike_rate/train/layers.2"] < 1
    assert 0 < metrics["spike_rate/val/layers.2"] < 1
    trainer.test(model, data)
    matrix = model.test_confusion_matrix
    assert matrix.shape == (3, 3) and matrix.sum() == 96
    assert trainer.callback_metrics["test/acc"] == pytest.approx(
        float(matrix.diag().sum() / matrix.sum()))


def test_trainer_predict_on_a_spike_datamodule_covers_its_test_split(tmp_path):
    """Plain Lightning, no CLI: SpikeDataModule.predict_dataloader serves the test split."""
    from exodus_lightning.data import RandmanDataModule

    data = RandmanDataModule(num_train_samples=20, num_val_samples=10, num_test_samples=25,
                             batch_size=8, num_channels=6, num_classes=3)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, default_root_dir=tmp_path)
    model = make_classifier()
    predictions = torch.cat([batch["predicted"]
                             for batch in trainer.predict(model, datamodule=data)])
    inputs = torch.cat([x for x, _ in data.test_dataloader()])
    assert predictions.shape == (25,)
    with torch.no_grad():
        assert torch.equal(predictions, model.predict_step(inputs, 0)["predicted"])


def test_hyperparameters_of_a_module_built_in_python_leave_out_the_objects(recwarn):
    """The network is in the state dict, callables are not pickled: only plain settings stay."""
    model = make_classifier(firing_rate_weight=0.5)
    assert set(model.hparams) == {"num_classes", "readout_loss", "firing_rate_weight",
                                  "target_firing_rate", "lr_scheduler_monitor"}
    assert model.hparams.firing_rate_weight == 0.5
    assert not [w for w in recwarn if "nn.Module" in str(w.message)]


def test_hyperparameters_of_a_module_built_from_a_config_keep_the_objects_configs(workdir):
    """LightningCLI's instantiator hands over the config: network and optimizer stay in it, so
    load_from_checkpoint can rebuild them."""
    from lightning.pytorch.cli import LightningCLI

    network = {"class_path": "exodus_lightning.models.FeedForwardSNN",
               "init_args": {"input_shape": [4], "num_classes": 3, "hidden_sizes": [5]}}
    cli = LightningCLI(SpikingClassifier, run=False, args=[
        f"--model.network={network}".replace("'", '"'), "--model.num_classes=3",
        "--trainer.logger=false", "--trainer.accelerator=cpu"])
    assert cli.model.hparams["network"]["class_path"] == network["class_path"]
    assert cli.model.hparams["num_classes"] == 3 and "optimizer" in cli.model.hparams


def test_projected_parameters_are_projected_after_every_training_batch():
    """adLIF keeps κ_u, κ_w, a, b in range by projection after each optimizer step (SE-adLIF)."""
    network = nn.Sequential(nn.Linear(3, 4), enn.adLIF(4), nn.Linear(4, 2))
    with torch.no_grad():
        network[1].a.fill_(5.0)  # far out of range, as a large step would leave it
    model = SpikingClassifier(network, num_classes=2)
    data = torch.utils.data.TensorDataset(torch.rand(8, 6, 3), torch.randint(0, 2, (8,)))
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=4))
    assert network[1].a.max() <= network[1].a_range[1]


def test_spike_rates_are_logged_per_stage_as_the_epochs_means(tmp_path):
    """spike_rate/train/<layer>, spike_rate/val/<layer> and spike_rate/test/<layer>: each the mean
    over its split's samples (lr 0: the weights the hand computation uses); one key per stage,
    so the training and validation values of an epoch are not two values of one key."""
    import csv

    data = BurstDataModule(num_classes=3, num_channels=6, num_time_steps=20, num_samples=40,
                           batch_size=8)
    network = FeedForwardSNN(data.input_shape, data.num_classes, hidden_sizes=(16,),
                             tau_mem=5.0, spike_threshold=0.3)
    model = SpikingClassifier(network, data.num_classes,
                              optimizer=functools.partial(torch.optim.SGD, lr=0.0))
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=CSVLogger(tmp_path),
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, data)
    rates = {stage: float(trainer.callback_metrics[f"spike_rate/{stage}/layers.2"])
             for stage in ("train", "val")}
    assert "spike_rate/layers.2" not in trainer.callback_metrics
    trainer.test(model, data)
    rates["test"] = float(trainer.callback_metrics["spike_rate/test/layers.2"])

    def hand(dataset) -> float:
        with torch.no_grad():
            model(dataset.tensors[0])
        return float(model.layer_spikes["layers.2"].mean())

    expected = {"train": hand(data.make_dataset(0)), "val": hand(data.make_dataset(1)),
                "test": hand(data.make_dataset(2))}
    assert rates == pytest.approx(expected, rel=1e-5)
    assert len(set(expected.values())) == 3  # the splits' rates differ: keys must tell them apart
    with open(next(tmp_path.rglob("metrics.csv"))) as rows:
        logged = [row for row in csv.DictReader(rows)]
    for stage in ("train", "val", "test"):
        (value,) = [float(row[f"spike_rate/{stage}/layers.2"]) for row in logged
                    if row.get(f"spike_rate/{stage}/layers.2")]
        assert value == pytest.approx(expected[stage], rel=1e-5), stage
