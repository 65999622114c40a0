"""The classification task: plain hyperparameters, encoder and head, the fitted SVM head, every
model config of `--help` trained as a newcomer runs it."""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from conftest import TINY_DATA
from mgr import MGRError
from mgr.models import GenreClassifier

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


def test_fitted_head_takes_no_optimizer_steps_but_the_trainable_one_does():
    svm = task({"name": "stats"}, head={"name": "linear_svm"})
    assert not svm.automatic_optimization and svm.configure_optimizers().param_groups[0]["lr"] == 0.0
    cnn = task({"name": "cnn", "channels": [8, 16, 32], "hidden": 32}, optimizer={"name": "adamw", "lr": 0.01})
    cnn.trainer = pl.Trainer(max_epochs=5, logger=False)
    assert type(cnn.configure_optimizers()).__name__ == "AdamW"
    cosine = task({"name": "cnn"}, scheduler={"name": "cosine"})
    cosine.trainer = pl.Trainer(max_epochs=5, logger=False)
    assert cosine.configure_optimizers()["lr_scheduler"]["scheduler"].T_max == 5


def test_unknown_optimizer_scheduler_or_head_is_one_clear_error():
    model = task({"name": "cnn"}, optimizer={"name": "lion"})
    with pytest.raises(MGRError, match="Unknown optimizer.name='lion'; choose one of adam, adamw, sgd"):
        model.configure_optimizers()
    with pytest.raises(MGRError, match="Unknown model.head.name='mlp'"):
        task({"name": "cnn"}, head={"name": "mlp"})


# --- every model of `--help`, as a newcomer runs it -------------------------------------------
MODEL_CONFIGS = sorted(p.name[:-5] for p in files("mgr.conf").joinpath("model").iterdir() if p.name.endswith(".yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_every_model_config_trains_with_the_default_data_and_feature(name, data_dir, tmp_path):
    """`python -m mgr.train model=<name>`: default sizes, default feature, default sample rate and chunk
    length; only the amount of data and the budget are cut (one batch of each stage, no plots)."""
    from hydra import compose, initialize_config_module

    from mgr.train import train

    with initialize_config_module("mgr.conf", version_base="1.3"):
        cfg = compose("train", overrides=[
            f"model={name}", *TINY_DATA[:2], "data.batch_size=2", "data.eval_batch_size=2", "debug=fast_dev_run",
            "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "callbacks=none",
            f"paths.data_dir={data_dir}", f"paths.output_dir={tmp_path}",
        ])
    train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["test/track_acc"] <= 1.0
