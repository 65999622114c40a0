"""Checkpoints written by the 2026-11 model classes (one LightningModule per architecture) load
into today's task and give the same logits; training cannot resume from them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mgr import MGRError
from mgr.models import load_model, read_checkpoint

OLD = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints_2026_11"


@pytest.mark.parametrize("name,net", [("cnn", "cnn"), ("crnn", "crnn"), ("stats_linear_svm", "stats")])
def test_old_checkpoints_load_and_give_the_logits_they_gave(name, net):
    expected = torch.load(OLD / "expected_logits.pt", weights_only=True)
    model = load_model(OLD / f"{name}.ckpt").eval()
    assert model.hparams.net["name"] == net
    with torch.no_grad():
        assert torch.equal(model(expected["wave"]), expected[name])


def test_the_svm_under_its_first_name_loads_too(tmp_path):
    checkpoint = torch.load(OLD / "stats_linear_svm.ckpt", weights_only=True)
    torch.save({**checkpoint, "mgr_model": "MFCCSVM"}, tmp_path / "mfcc_svm.ckpt")
    assert load_model(tmp_path / "mfcc_svm.ckpt").hparams.head["name"] == "linear_svm"


def test_resuming_from_an_old_checkpoint_is_refused():
    model = load_model(OLD / "cnn.ckpt")
    old = torch.load(OLD / "cnn.ckpt", weights_only=True)
    with pytest.raises(MGRError, match="before 2026-12.*cannot resume"):
        model.on_load_checkpoint(old)
    model.on_load_checkpoint(read_checkpoint(OLD / "cnn.ckpt"))  # today's layout: accepted


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(MGRError, match="does not exist"):
        load_model(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(MGRError, match="not an mgr checkpoint"):
        load_model(tmp_path / "other.ckpt")
