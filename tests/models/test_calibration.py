"""Temperature scaling (mgr.models.calibration): it fits (one T, or a multi-label model's one per tag), it
lowers the NLL of an over-confident model, it keeps every argmax, a multi-label model's thresholds are
chosen on the calibrated probabilities, and checkpoints written before it load with T = 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mgr import MGRError
from mgr.models import load_model, read_checkpoint
from mgr.models.aggregation import TrackAggregation
from mgr.models.calibration import as_trained, calibrate, fit_temperature, is_calibrated
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


def calibrated_tag_logits(n: int = 4000, tags: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-label logits whose sigmoids are calibrated by construction: each tag drawn from its own sigmoid."""
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n, tags, generator=g)
    return logits, torch.bernoulli(torch.sigmoid(logits), generator=g)


def test_per_tag_temperatures_lower_the_bce_of_an_over_confident_multilabel_model():
    logits, targets = calibrated_tag_logits()
    scales = torch.tensor([8.0, 1.0, 0.25])  # one tag far too sure of itself, one right, one too shy
    fit = fit_temperature(logits * scales, targets)
    assert isinstance(fit.temperature, list) and len(fit.temperature) == 3
    for fitted_t, scale in zip(fit.temperature, scales.tolist()):
        assert fitted_t == pytest.approx(scale, rel=0.1)  # each tag's own scale, found back
    assert fit.nll_after < fit.nll_before
    assert fit.nll_before == pytest.approx(F.binary_cross_entropy_with_logits(logits * scales, targets).item(), rel=1e-6)
    assert fit.nll_after == pytest.approx(F.binary_cross_entropy_with_logits(logits, targets).item(), abs=0.01)
    assert fit.chunks == 4000 and "per-tag temperatures" in str(fit)


def test_each_tags_temperature_stays_in_range_and_is_never_worse_than_1():
    """Tag 1's validation chunks are separated with a margin (its BCE falls all the way to T -> 0): T stays
    within LOG_T_RANGE; and whatever LBFGS finds for a tag, its BCE is never above its BCE at T = 1."""
    logits = torch.tensor([[3.0, -2.0], [2.0, 1.0], [-1.0, 0.5]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    fit = fit_temperature(logits, targets)
    for k in range(2):
        before = F.binary_cross_entropy_with_logits(logits[:, k], targets[:, k]).item()
        after = F.binary_cross_entropy_with_logits(logits[:, k] / fit.temperature[k], targets[:, k]).item()
        assert after <= before + 1e-12
    assert all(torch.exp(torch.tensor(-5.0)) - 1e-9 <= t <= torch.exp(torch.tensor(5.0)) + 1e-6 for t in fit.temperature)


def tiny_multilabel_model(**settings):
    from mgr.models import GenreClassifier

    return GenreClassifier(["a", "b", "c"], {"name": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 32}, 8000, 1.0,
                           {"name": "cnn", "channels": [8, 16, 32], "hidden": 32}, task="multilabel", **settings)


def test_per_tag_temperatures_divide_each_tag_and_are_checked():
    model = tiny_multilabel_model().eval()
    wave = torch.randn(4, 8000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(wave)
        model.set_temperature([2.0, 0.5, 1.0])
        scaled = model(wave)
        with as_trained(model):
            torch.testing.assert_close(model(wave), plain)
    torch.testing.assert_close(scaled, plain / torch.tensor([2.0, 0.5, 1.0]))
    assert model.hparams.temperature == [2.0, 0.5, 1.0] and is_calibrated(model)
    calibrated, trained = model.logits_both_ways(wave)
    torch.testing.assert_close(calibrated, scaled) and torch.testing.assert_close(trained, plain)
    for wrong in ([2.0, 1.0], [1.0, 0.0, 1.0], [1.0, float("inf"), 1.0]):
        with pytest.raises(MGRError, match="a list of 3 \\(one per tag\\)"):
            model.set_temperature(wrong)
    multiclass = load_model(FIXTURES / "checkpoints_2026_12" / "cnn_vote.ckpt")
    with pytest.raises(MGRError, match="must be a positive number \\(1"):
        multiclass.set_temperature([1.0] * multiclass.num_classes)  # one T over a softmax


def test_per_tag_temperatures_round_trip_through_a_checkpoint(tmp_path):
    from conftest import save_checkpoint

    model = tiny_multilabel_model(temperature=[3.0, 1.0, 0.5], thresholds=[0.2, 0.5, 0.7]).eval()
    save_checkpoint(model, tmp_path / "tags.ckpt")
    loaded = load_model(tmp_path / "tags.ckpt").eval()
    assert loaded.temperature == [3.0, 1.0, 0.5] and loaded.thresholds == pytest.approx([0.2, 0.5, 0.7])
    wave = torch.randn(3, 8000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(wave), model(wave))
        expected = torch.sigmoid(loaded.head(loaded.encoder(wave)) / torch.tensor([3.0, 1.0, 0.5]))
        torch.testing.assert_close(torch.sigmoid(loaded(wave)), expected)


class ValidationChunks:
    """A data module's validation loader, as mgr.models.calibration.validation_logits reads it: batches of
    (chunks standing in for waveforms, 0/1 rows, tracks); the model's encoder and head are replaced so that
    the chunks are the logits."""

    def __init__(self, logits, targets, tracks):
        self.batches = [(logits[i:i + 16], targets[i:i + 16], tracks[i:i + 16]) for i in range(0, len(logits), 16)]

    def setup(self, stage):
        pass

    def val_dataloader(self):
        return self.batches

    def on_after_batch_transfer(self, batch, index):
        return batch


def identity_model(aggregation: str):
    model = tiny_multilabel_model(track_aggregation=aggregation)
    model.encoder, model.head = torch.nn.Identity(), torch.nn.Identity()
    return model


@pytest.mark.parametrize("aggregation", ["mean_logits", "mean_probs"])
def test_thresholds_are_chosen_again_on_the_calibrated_validation_tracks(aggregation):
    """After calibrate(), a multi-label model's thresholds are those validation would choose on the calibrated
    probabilities (temperature first, then thresholds). With mean_logits the per-tag temperature is monotone
    in each track's score, so every validation track is answered as before: its F1 does not change."""
    from mgr.models.metrics import TrackMetrics, f1_thresholds

    g = torch.Generator().manual_seed(0)
    tracks = torch.arange(60).repeat_interleave(3)  # 60 tracks of 3 chunks
    truth = torch.bernoulli(torch.full((60, 3), 0.4), generator=g)
    logits = 6 * (truth[tracks] - 0.5) + 4 * torch.randn(180, 3, generator=g)  # over-confident and noisy
    targets = truth[tracks]
    model = identity_model(aggregation)

    def answers(model):  # the validation tracks' answers at the model's thresholds
        metrics = TrackMetrics(3, model.track_aggregation, multilabel=True)
        metrics.update(model.calibrated(logits), targets, tracks)
        scores, labels = metrics.track_scores()
        return model.answered(model.track_aggregation.probabilities_of(scores)), scores, labels

    model.choose_thresholds(*answers(model)[1:])  # as validation chose them during training, at T = 1
    before, _, _ = answers(model)
    fit = calibrate(model, ValidationChunks(logits, targets, tracks), torch.device("cpu"))
    assert model.temperature == fit.temperature and all(t > 1.5 for t in fit.temperature)
    after, scores, labels = answers(model)
    probabilities = model.track_aggregation.probabilities_of(scores)
    assert model.thresholds == pytest.approx(f1_thresholds(probabilities, labels).tolist())
    if aggregation == "mean_logits":
        assert torch.equal(after, before)


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
    # The ECE before calibration: T = 1, the probabilities as trained, which the plain run reports as its own.
    for key in ("ece", "track_ece"):
        assert plain[f"test/{key}"] == plain[f"test/{key}_uncalibrated"]
        assert metrics[f"test/{key}_uncalibrated"] == pytest.approx(plain[f"test/{key}"], abs=1e-6)
        assert metrics[f"test/{key}"] != metrics[f"test/{key}_uncalibrated"]
