"""The classification task: plain hyperparameters, encoder and head, the fitted SVM head, the track
aggregation its checkpoint carries, padding chunks that count in no metric."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from conftest import save_checkpoint
from mgr import MGRError
from mgr.labels import PADDING_LABEL
from mgr.models import Ensemble, GenreClassifier, load_model
from mgr.models.aggregation import TrackAggregation
from mgr.models.task import FittedClassifier, TrainedClassifier


SR = 8000


MEL = {"name": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 32}


MFCC = {"name": "mfcc", "n_fft": 256, "hop_length": 128, "n_mels": 32, "n_mfcc": 13}


def task(net: dict, feature: dict = MEL, **kwargs) -> GenreClassifier:
    return GenreClassifier(["a", "b", "c"], feature, SR, 1.0, net, **kwargs)


def test_hyperparameters_are_plain_values_and_the_head_fits_the_encoder():
    model = task({"name": "crnn", "channels": [8, 16, 16, 16], "rnn": "lstm", "rnn_layers": 2, "rnn_hidden": 16})
    hp = dict(model.hparams)
    assert hp["net"]["rnn"] == "lstm" and hp["class_names"] == ["a", "b", "c"] and hp["feature"]["name"] == "mel"
    assert isinstance(model.encoder.net.rnn, torch.nn.LSTM) and model.encoder.net.rnn.num_layers == 2
    plain = (str, int, float, bool, list, tuple, dict, type(None))
    assert all(isinstance(v, plain) for v in hp.values())
    wave = torch.randn(4, SR)
    assert model.embed(wave).shape == (4, 16) and model(wave).shape == (4, 3)
    assert (model.head.in_features, model.head.out_features) == (16, 3)


def test_fcn_checkpoint_holds_the_pools_built(tmp_path):
    model = task({"name": "fcn", "channels": [8, 16, 16, 16, 8]})
    assert model.hparams.net["pools"] == [[2, 2], [2, 2], [2, 2], [3, 3], [4, 2]]
    assert GenreClassifier(**model.hparams).hparams.net == model.hparams.net


def test_too_short_chunk_is_one_clear_error():
    with pytest.raises(MGRError, match="CRNN needs at least 16 feature frames"):
        GenreClassifier(["a", "b"], MEL, SR, 0.1, {"name": "crnn"})


def test_svm_head_reproduces_sklearn_and_separates_a_fixed_batch():
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    torch.manual_seed(0)
    model = task({"name": "stats"}, MFCC, head={"name": "linear_svm"}).eval()
    assert isinstance(model.encoder.input_norm, torch.nn.Identity)  # raw dB statistics
    # Three classes of noise that differ in loudness and colour.
    wave = torch.randn(30, SR) * torch.tensor([0.01, 0.1, 1.0]).repeat(10)[:, None]
    wave[1::3] = torch.cumsum(wave[1::3], dim=1) * 0.05
    target = torch.arange(30) % 3
    x = model.embed(wave)
    assert x.shape == (30, 2 * 13)  # mean and std of each MFCC
    assert model.head.fit(x, target) == 1.0
    with torch.no_grad():
        logits = model(wave)
    assert (logits.argmax(1) == target).all()
    x = x.double().numpy()
    scaler = StandardScaler().fit(x)
    svm = LinearSVC(max_iter=10000, random_state=0).fit(scaler.transform(x), target.numpy())
    assert np.allclose(logits.numpy(), svm.decision_function(scaler.transform(x)), atol=1e-3)


def test_the_head_chooses_the_task_and_every_task_is_a_genre_classifier():
    svm, cnn = task({"name": "stats"}, head={"name": "linear_svm"}), task({"name": "cnn", "channels": [4, 8, 8], "hidden": 8})
    probe_head = task({"name": "stats"}, head="rbf_svm")  # a head by name, as conf/model/probe.yaml gives it
    assert type(svm) is FittedClassifier and type(probe_head) is FittedClassifier and type(cnn) is TrainedClassifier
    for model in (svm, cnn):
        assert isinstance(model, GenreClassifier)
        assert type(GenreClassifier(**model.hparams)) is type(model) is type(copy.deepcopy(model))
    assert not hasattr(svm, "_mixup") and not hasattr(cnn, "_fit_head")  # each holds its own way of training only
    # A subclass builds itself, whatever its head: mgr.eval's ensemble (evaluation only) of fitted members too.
    assert type(Ensemble(**svm.hparams)) is Ensemble
    with pytest.raises(MGRError, match="Unknown model.head.name='transformer'"):
        task({"name": "cnn"}, head={"name": "transformer"})
    with pytest.raises(TypeError, match="unexpected keyword argument 'heads'"):
        GenreClassifier(["a", "b"], MEL, SR, 1.0, {"name": "cnn"}, heads=None)


def test_fitted_head_takes_no_optimizer_steps_but_the_trainable_one_does():
    svm = task({"name": "stats"}, head={"name": "linear_svm"})
    assert not svm.automatic_optimization and svm.configure_optimizers().param_groups[0]["lr"] == 0.0
    cnn = task({"name": "cnn", "channels": [8, 16, 32], "hidden": 32}, optimizer={"name": "adamw", "lr": 0.01})
    cnn.trainer = pl.Trainer(max_epochs=5, logger=False)
    assert type(cnn.configure_optimizers()).__name__ == "AdamW"
    cosine = task({"name": "cnn"}, scheduler={"name": "cosine"})
    cosine.trainer = pl.Trainer(max_epochs=5, logger=False)
    assert cosine.configure_optimizers()["lr_scheduler"]["scheduler"].T_max == 5


def test_onecycle_warms_up_to_the_learning_rate_and_anneals_per_step():
    from mgr.models.optim import build_optimizer, build_scheduler

    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = build_optimizer({"name": "adamw", "lr": 0.01}, params)
    entry = build_scheduler({"name": "onecycle", "pct_start": 0.25}, optimizer, 5, total_steps=100)
    assert entry["interval"] == "step"
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        entry["scheduler"].step()
    peak = int(np.argmax(rates))
    assert rates[0] < 0.001 and abs(max(rates) - 0.01) < 1e-6 and 20 <= peak <= 26 and rates[-1] < 1e-5
    assert all(a <= b for a, b in zip(rates[:peak], rates[1:peak + 1]))  # rises, then
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:]))   # falls
    with pytest.raises(MGRError, match="scheduler=onecycle needs a bounded run"):
        build_scheduler({"name": "onecycle"}, optimizer, -1, total_steps=float("inf"))


def test_mixup_mixes_each_example_with_another_and_keeps_its_own_label_ahead():
    torch.manual_seed(0)
    model = task({"name": "cnn", "channels": [4, 8, 8], "hidden": 8}, mixup_alpha=0.4)
    wave, target = torch.randn(16, SR), torch.arange(16) % 3
    mixed, other, weight = model._mixup(wave, target)
    assert 0.5 <= weight < 1.0 and sorted(other.tolist()) == sorted(target.tolist())
    # Each mix is weight * its own example + (1 - weight) * the example whose label is `other`.
    partner = [next(j for j in range(16) if torch.allclose(mixed[i], weight * wave[i] + (1 - weight) * wave[j], atol=1e-6))
               for i in range(16)]
    assert [target[j].item() for j in partner] == other.tolist()
    plain = task({"name": "cnn", "channels": [4, 8, 8], "hidden": 8})
    assert plain._mixup(wave, target)[2] == 1.0 and plain._mixup(wave, target)[0] is wave
    assert plain.hparams["mixup_alpha"] == 0.0 and plain.hparams["label_smoothing"] == 0.0  # a checkpoint's defaults
    with pytest.raises(MGRError, match="label_smoothing must lie in"):
        task({"name": "cnn"}, label_smoothing=1.0)


def test_unknown_optimizer_scheduler_or_head_is_one_clear_error():
    model = task({"name": "cnn"}, optimizer={"name": "lion"})
    with pytest.raises(MGRError, match="Unknown optimizer.name='lion'; choose one of adam, adamw, sgd"):
        model.configure_optimizers()
    with pytest.raises(MGRError, match="Unknown model.head.name='transformer'; choose one of linear, mlp"):
        task({"name": "cnn"}, head={"name": "transformer"})


def _tiny_cnn() -> GenreClassifier:
    return GenreClassifier(["a", "b", "c"], {"name": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 32}, 8000, 1.0,
                           {"name": "cnn", "channels": [4, 8, 8], "hidden": 8})


def test_the_checkpoint_carries_the_aggregation_and_old_ones_mean_logits(tmp_path):
    model = _tiny_cnn()
    assert model.track_aggregation == TrackAggregation("mean_logits", 0.5)
    model.set_track_aggregation("majority_vote", 0.7)
    assert model.val_tracks.aggregation == model.test_tracks.aggregation == TrackAggregation("majority_vote", 0.7)
    model.set_track_aggregation(vote_threshold=0.6)  # None keeps the name
    save_checkpoint(model, tmp_path / "vote.ckpt")
    stored = torch.load(tmp_path / "vote.ckpt", weights_only=True)["hyper_parameters"]
    assert stored["track_aggregation"] == "majority_vote" and stored["vote_threshold"] == 0.6  # plain values
    for restored in (load_model(tmp_path / "vote.ckpt"), GenreClassifier.load_from_checkpoint(tmp_path / "vote.ckpt")):
        assert restored.track_aggregation == TrackAggregation("majority_vote", 0.6)
        assert restored.test_tracks.aggregation == restored.val_tracks.aggregation == restored.track_aggregation
    # A checkpoint written before the option existed scores as it did then: mean of logits.
    checkpoint = torch.load(tmp_path / "vote.ckpt", weights_only=True)
    del checkpoint["hyper_parameters"]["track_aggregation"], checkpoint["hyper_parameters"]["vote_threshold"]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    assert load_model(tmp_path / "old.ckpt").test_tracks.aggregation == TrackAggregation("mean_logits", 0.5)
    with pytest.raises(MGRError, match="track_aggregation='mean'"):
        model.set_track_aggregation("mean")


def test_a_padding_chunk_counts_in_no_metric():
    torch.manual_seed(0)
    model = GenreClassifier(["a", "b"], {"name": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 32}, SR, 1.0,
                            {"name": "cnn", "channels": [8, 16, 32], "hidden": 32}).eval()
    reference = copy.deepcopy(model)
    wave = torch.randn(3, SR)
    with torch.no_grad():
        model.test_step((wave, torch.tensor([0, 1, PADDING_LABEL]), torch.tensor([0, 1, 1])), 0)
        model.test_step((wave[:1], torch.tensor([PADDING_LABEL]), torch.tensor([0])), 1)  # a padding-only batch
        reference.test_step((wave[:2], torch.tensor([0, 1]), torch.tensor([0, 1])), 0)
    for name in ("test_loss", "test_metrics", "test_tracks", "test_confusion"):
        got, want = getattr(model, name).compute(), getattr(reference, name).compute()
        if not isinstance(want, dict):
            got, want = {name: got}, {name: want}
        assert all(torch.equal(got[k], want[k]) for k in want), name
