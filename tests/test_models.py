"""Architectures: any feature size, clear errors for impossible chunk lengths, a learning step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mgr import MGRError
from mgr.models import (CNN, CNN3, CNN5, CRNN, FCN, MFCCSVM, CNNLSTMParallel, CRNNArtist, Musicnn, ShortChunkCNN,
                        ShortChunkResNet, load_model)

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


# --- the model zoo --------------------------------------------------------------
# Tiny sizes that keep each architecture's structure (layer count, pooling pattern).
ZOO = {
    CNN3: {"channels": [8, 16, 16], "hidden": 16},
    CNN5: {"channels": [4, 8, 8, 16, 16], "linear": [32, 32, 16, 16]},
    CNNLSTMParallel: {"channels": [4, 8, 8], "pools": [2, 2, 4], "lstm_hidden": 16},
    CRNNArtist: {"channels": [8, 16, 16], "rnn_hidden": 16, "conv_dropout": 0.0},
    FCN: {"channels": [8, 16, 16, 16, 8], "pools": [[2, 2], [2, 2], [2, 2], [3, 2], [4, 2]]},
    ShortChunkCNN: {"channels": [8, 8, 16, 16, 16]},
    ShortChunkResNet: {"channels": [8, 8, 16, 16, 16]},
    Musicnn: {"timbral_filters": 8, "temporal_filters": 4, "backend_channels": 8, "dense": 16},
}
# (feature, chunk seconds): 32 mel bins, 13 MFCCs, 65 STFT bins; 63 to 94 frames.
SHAPES = [(FEATURES[0], 1.0), (FEATURES[2], 1.0), ({"name": "stft", "n_fft": 128, "hop_length": 128}, 1.5)]
# Parameter counts of the default sizes on the default log-mel (128 bins, 3 s at 22.05 kHz,
# 10 classes): a change to an architecture shows up here.
DEFAULT_PARAMS = {CNN3: 122_250, CNN5: 2_663_370, CNNLSTMParallel: 61_098, CRNNArtist: 282_058, FCN: 445_386,
                  ShortChunkCNN: 3_667_082, ShortChunkResNet: 12_083_978, Musicnn: 826_494}


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("cls", list(ZOO), ids=lambda c: c.__name__)
@pytest.mark.parametrize("feature,seconds", SHAPES, ids=["mel32", "mfcc13", "stft65"])
def test_zoo_shapes_and_one_step_lowers_the_loss(cls, feature, seconds):
    torch.manual_seed(0)
    model = cls(class_names=["a", "b", "c"], feature=feature, sample_rate=SR, chunk_seconds=seconds,
                dropout=0.0, **ZOO[cls])  # no dropout: the losses before and after are comparable
    wave = torch.randn(8, model.chunk_samples)
    target = torch.arange(8) % 3
    model.eval()
    assert model(wave).shape == (8, 3)
    assert model.embed(model.features(wave)).shape[0] == 8
    assert count_parameters(model) > 0
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = F.cross_entropy(model(wave), target)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    assert F.cross_entropy(model(wave), target).item() < before.item()


@pytest.mark.parametrize("cls", list(DEFAULT_PARAMS), ids=lambda c: c.__name__)
def test_default_sizes_and_parameter_counts(cls):
    mel = {"name": "mel", "n_fft": 2048, "hop_length": 512, "n_mels": 128}
    chunk = 30.0 if cls is FCN else 3.0  # FCN's time pools need 1280 frames
    model = cls(class_names=[str(i) for i in range(10)], feature=mel, sample_rate=22050, chunk_seconds=chunk)
    assert count_parameters(model) == DEFAULT_PARAMS[cls]
    from pytorch_lightning.utilities.model_summary import ModelSummary

    assert ModelSummary(model).total_parameters == DEFAULT_PARAMS[cls]  # what Lightning's summary reports


@pytest.mark.parametrize("cls,chunk,minimum", [(FCN, 3.0, 1280), (CNNLSTMParallel, 1.5, 80), (ShortChunkCNN, 2.0, 128),
                                               (CNN5, 0.5, 32), (CRNNArtist, 0.1, 8), (CNN3, 0.05, 4)])
def test_zoo_too_short_chunk_names_the_minimum(cls, chunk, minimum):
    mel = {"name": "mel", "n_fft": 2048, "hop_length": 512, "n_mels": 128}
    with pytest.raises(MGRError, match=f"{cls.__name__} needs at least {minimum} feature frames"):
        cls(class_names=["a", "b"], feature=mel, sample_rate=22050, chunk_seconds=chunk)


def test_svm_head_reproduces_sklearn_and_separates_a_fixed_batch():
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    torch.manual_seed(0)
    model = MFCCSVM(class_names=["a", "b", "c"], feature=FEATURES[2], sample_rate=SR, chunk_seconds=1.0).eval()
    # Three classes of noise that differ in loudness and colour.
    wave = torch.randn(30, SR) * torch.tensor([0.01, 0.1, 1.0]).repeat(10)[:, None]
    wave[1::3] = torch.cumsum(wave[1::3], dim=1) * 0.05
    target = torch.arange(30) % 3
    x = model.embed(model.features(wave)).double().numpy()
    assert x.shape == (30, 2 * 13)  # mean and std of each MFCC
    assert model.fit_arrays(x, target.numpy()) == 1.0
    with torch.no_grad():
        logits = model(wave)
    assert (logits.argmax(1) == target).all()
    scaler = StandardScaler().fit(x)
    expected = LinearSVC(max_iter=10000).fit(scaler.transform(x), target.numpy()).decision_function(scaler.transform(x))
    assert np.allclose(logits.numpy(), expected, atol=1e-3)


def test_crnn_rnn_kind_and_depth_are_configurable():
    for rnn, layers, kind in (("gru", 1, torch.nn.GRU), ("lstm", 3, torch.nn.LSTM)):
        model = build(CRNN, FEATURES[0], rnn=rnn, rnn_layers=layers)
        assert isinstance(model.rnn, kind) and model.rnn.num_layers == layers
    with pytest.raises(MGRError, match="Unknown model.rnn='transformer'; choose one of gru, lstm"):
        build(CRNN, FEATURES[0], rnn="transformer")
