"""Temperature scaling (mgr.models.calibration): it fits, it lowers the NLL of an over-confident
model, it keeps every argmax, and checkpoints written before it load with T = 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mgr import MGRError
from mgr.models import load_model, read_checkpoint
from mgr.models.aggregation import TrackAggregation
from mgr.models.calibration import fit_temperature
from mgr.models.checkpoints import save_atomically

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def calibrated_logits(n: int = 4000, classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose softmax is calibrated by construction: each label is drawn from the softmax itself."""
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n, classes, generator=g)
    targets = torch.multinomial(torch.softmax(logits, 1), 1, generator=g).squeeze(1)
    return logits, targets


def test_an_over_confident_model_gets_t_above_1_and_a_lower_nll():
    logits, targets = calibrated_logits()
    fit = fit_temperature(10 * logits, targets)  # ten times too sure of itself
    assert fit.nll_after < fit.nll_before
    assert fit.temperature == pytest.approx(10, rel=0.1)  # finds the scale it was given back
    assert fit.nll_after == pytest.approx(F.cross_entropy(logits, targets).item(), abs=0.01)


def test_an_under_confident_model_gets_t_below_1_and_a_calibrated_one_about_1():
    logits, targets = calibrated_logits()
    assert fit_temperature(logits / 4, targets).temperature == pytest.approx(0.25, rel=0.1)
    assert fit_temperature(logits, targets).temperature == pytest.approx(1.0, abs=0.1)


def test_a_separable_validation_set_cannot_send_t_to_zero():
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    fit = fit_temperature(logits, torch.tensor([0, 1]))
    assert fit.temperature >= torch.exp(torch.tensor(-5.0)).item() - 1e-9
    assert fit.nll_after <= fit.nll_before


def test_the_temperature_divides_the_logits_and_keeps_every_argmax():
    model = load_model(FIXTURES / "checkpoints_2026_12" / "cnn_vote.ckpt").eval()
    wave = torch.load(FIXTURES / "checkpoints_2026_12" / "expected_logits.pt", weights_only=True)["wave"]
    with torch.no_grad():
        plain = model(wave)
        model.set_temperature(3.0)
        scaled = model(wave)
    torch.testing.assert_close(scaled, plain / 3.0)
    assert torch.equal(scaled.argmax(1), plain.argmax(1))
    with pytest.raises(MGRError, match="temperature"):
        model.set_temperature(0.0)


@pytest.mark.parametrize("name", ["cnn_vote", "stats_linear_svm"])
def test_a_checkpoint_from_before_calibration_loads_with_t_1(name):
    path = FIXTURES / "checkpoints_2026_12" / f"{name}.ckpt"
    assert "temperature" not in read_checkpoint(path)["hyper_parameters"]
    assert load_model(path).temperature == 1.0  # and its logits are as before: tests/models/test_checkpoints.py


def test_a_stored_temperature_is_loaded_and_applied(tmp_path):
    source = FIXTURES / "checkpoints_2026_12" / "cnn_vote.ckpt"
    checkpoint = read_checkpoint(source)
    checkpoint["hyper_parameters"]["temperature"] = 2.5
    save_atomically(checkpoint, tmp_path / "calibrated.ckpt")
    wave = torch.load(FIXTURES / "checkpoints_2026_12" / "expected_logits.pt", weights_only=True)["wave"]
    old, new = load_model(source).eval(), load_model(tmp_path / "calibrated.ckpt").eval()
    assert new.temperature == 2.5
    with torch.no_grad():
        torch.testing.assert_close(new(wave), old(wave) / 2.5)


def test_track_probabilities_from_scores():
    scores = torch.tensor([[1.0, 2.0, 0.5]])
    torch.testing.assert_close(TrackAggregation("mean_logits").probabilities_of(scores), torch.softmax(scores, 1))
    shares = [[0.25, 0.75, 0.0]]
    assert TrackAggregation("majority_vote").probabilities_of(torch.tensor(shares)).tolist() == shares


@pytest.mark.slow
def test_training_calibrates_the_best_checkpoint_and_calibrate_false_does_not(trained_run, run_mgr):
    """The shared run stored its fitted temperature in its best checkpoint, fitted on validation with a
    lower NLL; the same run with calibrate=false keeps T = 1 and has the same accuracy (T keeps every argmax)."""
    from conftest import TRAINED, metrics_of

    metrics = json.loads((trained_run / "metrics.json").read_text())
    fit = metrics["temperature_fit"]
    best = read_checkpoint(metrics["best_checkpoint"])["hyper_parameters"]["temperature"]
    assert best == fit["temperature"] == metrics["calibration"]["temperature"] != 1.0
    assert fit["val_nll_after"] < fit["val_nll_before"] and fit["val_chunks"] > 0
    assert "temperature" not in read_checkpoint(trained_run / "checkpoints" / "last.ckpt")["hyper_parameters"] or \
        read_checkpoint(trained_run / "checkpoints" / "last.ckpt")["hyper_parameters"]["temperature"] == 1.0
    plain = metrics_of(run_mgr("train", *TRAINED, "calibrate=false"))
    assert "temperature_fit" not in plain and plain["calibration"]["temperature"] == 1.0
    assert read_checkpoint(plain["best_checkpoint"])["hyper_parameters"]["temperature"] == 1.0
    for key in ("test/acc", "test/track_acc", "test/f1", "test/track_f1"):
        assert plain[key] == metrics[key], key
    assert plain["track_confusion"] == metrics["track_confusion"]
