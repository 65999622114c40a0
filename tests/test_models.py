"""Architectures: any feature size, clear errors for impossible chunk lengths, a learning step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mgr import MGRError
from mgr.models import CNN, CRNN, load_model

SR = 8000
FEATURES = [
    {"name": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 32},
    {"name": "stft", "n_fft": 256, "hop_length": 128},
    {"name": "mfcc", "n_fft": 256, "hop_length": 128, "n_mels": 32, "n_mfcc": 13},
]
SMALL = {CRNN: {"channels": [8, 16, 16, 16], "rnn_hidden": 16}, CNN: {"channels": [8, 16, 32], "hidden": 32}}


def build(cls, feature, chunk_seconds=1.0, **kwargs):
    return cls(class_names=["a", "b", "c"], feature=feature, sample_rate=SR, chunk_seconds=chunk_seconds,
               **{**SMALL[cls], **kwargs})


@pytest.mark.parametrize("cls", [CRNN, CNN])
@pytest.mark.parametrize("feature", FEATURES, ids=lambda f: f["name"])
def test_output_shape_and_a_step_lowers_the_loss(cls, feature):
    torch.manual_seed(0)
    model = build(cls, feature, dropout=0.0)  # no dropout: the before/after losses are comparable
    wave = torch.randn(8, SR)
    target = torch.arange(8) % 3
    assert model(wave).shape == (8, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    before = F.cross_entropy(model(wave), target).item()
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(model(wave), target).backward()
        optimizer.step()
    assert F.cross_entropy(model(wave), target).item() < before


def test_hyperparameters_are_plain_values():
    model = build(CRNN, FEATURES[0], rnn="lstm", rnn_layers=2)
    hp = dict(model.hparams)
    assert hp["rnn"] == "lstm" and hp["class_names"] == ["a", "b", "c"] and hp["feature"]["name"] == "mel"
    assert isinstance(model.rnn, torch.nn.LSTM) and model.rnn.num_layers == 2
    assert all(isinstance(v, (str, int, float, bool, list, tuple, dict, type(None))) for v in hp.values())


def test_too_short_chunk_names_the_minimum():
    with pytest.raises(MGRError, match="needs at least 16 feature frames"):
        build(CRNN, FEATURES[0], chunk_seconds=0.1)


def test_load_model_errors_are_clear(tmp_path):
    with pytest.raises(MGRError, match="does not exist"):
        load_model(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(MGRError, match="not an mgr checkpoint"):
        load_model(tmp_path / "other.ckpt")
