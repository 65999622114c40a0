"""The nets of mgr.nets as plain modules: any feature size, a learning step, parameter counts,
clear errors for impossible chunk lengths and settings."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

from mgr import MGRError
from mgr.features import build_frontend
from mgr.nets import NETS, build_net
from mgr.nets.fcn import CHOI_POOLS

# Tiny sizes that keep each net's structure (layer count, pooling pattern).
TINY = {
    "cnn": {"channels": [8, 16, 32], "hidden": 32},
    "belov_cnn": {"channels": [8, 16, 16], "hidden": 16},
    "cnn5": {"channels": [4, 8, 8, 16, 16], "linear": [32, 32, 16, 16]},
    "cnn_lstm_parallel": {"channels": [4, 8, 8], "pools": [2, 2, 4], "lstm_hidden": 16},
    "crnn": {"channels": [8, 16, 16, 16], "rnn_hidden": 16},
    "crnn_artist": {"channels": [8, 16, 16], "rnn_hidden": 16, "conv_dropout": 0.0},
    "fcn": {"channels": [8, 16, 16, 16, 8], "pools": [[2, 2], [2, 2], [2, 2], [3, 2], [4, 2]]},
    "short_chunk_cnn": {"channels": [8, 8, 16, 16, 16]},
    "short_chunk_resnet": {"channels": [8, 8, 16, 16, 16], "block": "res"},
    "musicnn": {"timbral_filters": 8, "temporal_filters": 4, "backend_channels": 8, "dense": 16},
}
# (bins, frames): 32 mel bins, 13 MFCCs, 65 STFT bins, as 1-1.5 s chunks give them.
SHAPES = [(32, 63), (13, 63), (65, 94)]
# Parameter counts with the default sizes on the default log-mel (128 bins, 130 frames: 3 s at
# 22.05 kHz), plus the task's input norm (256) and a 10-class output layer: the figures of
# benchmarks/RESULTS.md's model zoo, unchanged by the 2026-12 refactor.
DEFAULT_PARAMS = {"cnn": 111_178, "belov_cnn": 122_250, "cnn5": 2_663_370, "cnn_lstm_parallel": 61_098,
                  "crnn": 399_370, "crnn_artist": 282_058, "fcn": 445_386, "short_chunk_cnn": 3_667_082,
                  "short_chunk_resnet": 12_083_978, "musicnn": 826_494}


def net(name: str, n_bins: int, n_frames: int, **settings):
    registered = "short_chunk_cnn" if name == "short_chunk_resnet" else name
    return build_net({"name": registered, **settings}, n_bins, n_frames)


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("bins,frames", SHAPES, ids=["mel32", "mfcc13", "stft65"])
def test_shapes_and_one_step_lowers_the_loss(name, bins, frames):
    torch.manual_seed(0)
    settings = {**TINY[name]}
    registered = "short_chunk_cnn" if name == "short_chunk_resnet" else name
    if "dropout" in inspect.signature(NETS[registered]).parameters:
        settings["dropout"] = 0.0  # the losses before and after one step are comparable
    model = net(name, bins, frames, **settings)
    head = torch.nn.Linear(model.embedding_dim, 3)
    spec, target = torch.randn(8, 1, bins, frames), torch.arange(8) % 3
    model.eval()
    assert model(spec).shape == (8, model.embedding_dim)
    model.train()
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-3)
    before = F.cross_entropy(head(model(spec)), target)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    assert F.cross_entropy(head(model(spec)), target).item() < before.item()


@pytest.mark.parametrize("name", list(DEFAULT_PARAMS))
def test_default_sizes_and_parameter_counts(name):
    settings = {"block": "res"} if name == "short_chunk_resnet" else {}
    model = net(name, 128, 130, **settings)
    assert count(model) + 2 * 128 + (model.embedding_dim + 1) * 10 == DEFAULT_PARAMS[name]


@pytest.mark.parametrize("name,frames,minimum,settings", [
    ("fcn", 130, 1280, {"pools": [list(p) for p in CHOI_POOLS]}), ("cnn_lstm_parallel", 65, 80, {}),
    ("short_chunk_cnn", 87, 128, {}), ("cnn5", 22, 32, {}), ("crnn_artist", 5, 8, {}), ("belov_cnn", 3, 4, {}),
    ("crnn", 8, 16, {}), ("stats", 1, 2, {})])
def test_too_short_chunk_names_the_minimum(name, frames, minimum, settings):
    with pytest.raises(MGRError, match=f"needs at least {minimum} feature frames"):
        build_net({"name": name, **settings}, 128, frames)


def test_fcn_fits_its_time_pools_to_the_chunk_and_keeps_choi_s_on_29_s():
    model = net("fcn", 128, 130, channels=[8, 16, 16, 16, 8])  # the default 3 s log-mel
    assert model.built_settings["pools"] == [[2, 2], [2, 2], [2, 3], [3, 3], [4, 3]]
    with torch.no_grad():
        assert model.conv(torch.zeros(1, 1, 128, 130)).shape[-1] == 1  # one time cell, as Choi's pools on 29 s
    # Choi et al.'s input: 29.1 s at 16 kHz, 96 mels at hop 256 (1819 frames): their pools as they are.
    choi = {"name": "mel", "n_fft": 512, "hop_length": 256, "n_mels": 96, "sample_rate": 16000}
    assert build_frontend(choi)(torch.zeros(1, int(29.1 * 16000))).shape[-1] == 1819
    assert net("fcn", 96, 1819).built_settings["pools"] == [list(p) for p in CHOI_POOLS]
    with pytest.raises(MGRError, match="must be auto or a list"):
        net("fcn", 128, 130, pools="choi")


def test_crnn_rnn_kind_and_depth_are_configurable():
    for rnn, layers, kind in (("gru", 1, torch.nn.GRU), ("lstm", 3, torch.nn.LSTM)):
        model = net("crnn", 32, 63, **TINY["crnn"], rnn=rnn, rnn_layers=layers)
        assert isinstance(model.rnn, kind) and model.rnn.num_layers == layers
    with pytest.raises(MGRError, match="Unknown model.rnn='transformer'; choose one of gru, lstm"):
        net("crnn", 32, 63, rnn="transformer")


def test_unknown_net_or_setting_is_one_clear_error():
    with pytest.raises(MGRError, match="Unknown model.name='resnet50'; choose one of cnn, "):
        build_net({"name": "resnet50"}, 32, 63)
    with pytest.raises(MGRError, match="model=cnn does not take these settings"):
        build_net({"name": "cnn", "widht": 3}, 32, 63)
    with pytest.raises(MGRError, match="Unknown model.block='dense'"):
        net("short_chunk_cnn", 32, 63, block="dense")
