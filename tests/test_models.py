"""Architectures: any feature size, clear errors for impossible chunk lengths, a learning step."""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from conftest import TINY_DATA
from mgr import MGRError
from mgr.models import (CNN, CNN3, CNN5, CRNN, FCN, StatsLinearSVM, CNNLSTMParallel, CRNNArtist, Musicnn, ShortChunkCNN,
                        ShortChunkResNet, load_model)
from mgr.models.fcn import CHOI_POOLS

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
    model = cls(class_names=[str(i) for i in range(10)], feature=mel, sample_rate=22050, chunk_seconds=3.0)
    assert count_parameters(model) == DEFAULT_PARAMS[cls]
    from pytorch_lightning.utilities.model_summary import ModelSummary

    assert ModelSummary(model).total_parameters == DEFAULT_PARAMS[cls]  # what Lightning's summary reports


@pytest.mark.parametrize("cls,chunk,minimum,sizes", [(FCN, 3.0, 1280, {"pools": CHOI_POOLS}), (CNNLSTMParallel, 1.5, 80, {}),
                                                     (ShortChunkCNN, 2.0, 128, {}), (CNN5, 0.5, 32, {}),
                                                     (CRNNArtist, 0.1, 8, {}), (CNN3, 0.05, 4, {})])
def test_zoo_too_short_chunk_names_the_minimum(cls, chunk, minimum, sizes):
    mel = {"name": "mel", "n_fft": 2048, "hop_length": 512, "n_mels": 128}
    with pytest.raises(MGRError, match=f"{cls.__name__} needs at least {minimum} feature frames"):
        cls(class_names=["a", "b"], feature=mel, sample_rate=22050, chunk_seconds=chunk, **sizes)


def test_fcn_fits_its_time_pools_to_the_chunk_and_keeps_choi_s_on_29_s(tmp_path):
    mel = {"name": "mel", "n_fft": 2048, "hop_length": 512, "n_mels": 128}
    small = {"channels": [8, 16, 16, 16, 8]}
    model = FCN(class_names=["a", "b"], feature=mel, sample_rate=22050, chunk_seconds=3.0, **small)
    assert model.n_frames == 130 and model.hparams.pools == [[2, 2], [2, 2], [2, 3], [3, 3], [4, 3]]
    model.eval()
    with torch.no_grad():
        spec = model.features(torch.zeros(1, model.chunk_samples))
        assert model.conv(spec).shape[-1] == 1  # down to one time cell, as Choi's pools do on 29 s
    # Choi et al.'s input: 29.1 s at 16 kHz, 96 mels at hop 256 (1819 frames): their pools as they are.
    choi = {"name": "mel", "n_fft": 512, "hop_length": 256, "n_mels": 96}
    model = FCN(class_names=["a", "b"], feature=choi, sample_rate=16000, chunk_seconds=29.1, **small)
    assert model.n_frames == 1819 and model.hparams.pools == [list(p) for p in CHOI_POOLS]
    # The checkpoint holds the pools built, not "auto".
    short = FCN(class_names=["a", "b"], feature=FEATURES[0], sample_rate=SR, chunk_seconds=1.0, **small)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(short)
    trainer.save_checkpoint(tmp_path / "fcn.ckpt")
    restored = load_model(tmp_path / "fcn.ckpt")
    assert restored.hparams.pools == short.hparams.pools == [[2, 2], [2, 2], [2, 2], [3, 3], [4, 2]]
    with pytest.raises(MGRError, match="must be auto or a list"):
        FCN(class_names=["a", "b"], feature=mel, sample_rate=22050, chunk_seconds=3.0, pools="choi")


def test_fcn_pools_override_gives_choi_s_configuration():
    from hydra import compose, initialize_config_module

    with initialize_config_module("mgr.conf", version_base="1.3"):
        cfg = compose("train", overrides=["model=fcn", "model.pools=[[2,4],[2,4],[2,4],[3,5],[4,4]]"])
    assert cfg.model.pools == [list(p) for p in CHOI_POOLS]


def test_svm_head_reproduces_sklearn_and_separates_a_fixed_batch():
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    torch.manual_seed(0)
    model = StatsLinearSVM(class_names=["a", "b", "c"], feature=FEATURES[2], sample_rate=SR, chunk_seconds=1.0).eval()
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


# --- every model of `--help`, as a newcomer runs it -------------------------------------------
MODEL_CONFIGS = sorted(p.name[:-5] for p in files("mgr.conf").joinpath("model").iterdir() if p.name.endswith(".yaml"))


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


def test_checkpoints_of_the_svm_under_its_old_name_load_as_stats_linear_svm(tmp_path):
    from mgr.models import load_model

    model = StatsLinearSVM(class_names=["a", "b", "c"], feature=FEATURES[2], sample_rate=SR, chunk_seconds=1.0)
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "mgr_model": "MFCCSVM",
                "pytorch-lightning_version": "2.6.6"}, path)
    assert isinstance(load_model(path), StatsLinearSVM)
