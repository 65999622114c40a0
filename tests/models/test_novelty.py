"""Novelty detection (mgr.models.novelty): on Gaussian clusters far points score high and held-out
in-cluster points low, the threshold keeps about 95 % of in-distribution tracks, the fitted buffers
round-trip through a state dict, a state dict from before novelty detection loads strictly leaving the
detector unfitted, and on a tiny trained model white noise is called novel more often than validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mgr.models import read_checkpoint
from mgr.models.calibration import loader_outputs
from mgr.models.novelty import MIN_CLASS_CHUNKS, NoveltyDetector, fit_novelty, group_of

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CLASSES, WIDTH = 4, 40


def clusters(tracks_per_class: int, chunks_per_track: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chunks [N, WIDTH] of CLASSES Gaussian clusters (fixed centres, correlated columns), their classes
    and tracks (each track's chunks of one class, numbered from 0)."""
    centres = 4.0 * torch.randn(CLASSES, WIDTH, generator=torch.Generator().manual_seed(0))
    mixing = torch.randn(WIDTH, WIDTH, generator=torch.Generator().manual_seed(1)) / WIDTH ** 0.5
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(CLASSES).repeat_interleave(tracks_per_class * chunks_per_track)
    tracks = torch.arange(CLASSES * tracks_per_class).repeat_interleave(chunks_per_track)
    return centres[labels] + torch.randn(len(labels), WIDTH, generator=g) @ mixing, labels, tracks


def fitted_detector() -> NoveltyDetector:
    train, labels, _ = clusters(100, 5, seed=2)
    val, _, val_tracks = clusters(50, 5, seed=3)
    detector = NoveltyDetector()
    detector.fit(train, labels, val, val_tracks)
    return detector


def test_far_points_score_high_and_held_out_cluster_points_low():
    detector = fitted_detector()
    held_out, _, tracks = clusters(50, 5, seed=4)
    inside = detector.score(held_out)
    far = held_out + 6.0 * torch.randn(held_out.shape, generator=torch.Generator().manual_seed(5))
    assert inside.median() < 2 and detector.score(far).min() > 10 * inside.median()
    assert detector.score(held_out).shape == (len(held_out),)
    # A track's score is its chunks' mean; ~95 % of held-out in-distribution tracks stay below the threshold.
    files = torch.tensor([detector.file_score(held_out[tracks == t]) for t in tracks.unique()])
    assert 0.88 <= (files <= detector.threshold).float().mean() <= 0.995
    assert not detector.is_novel(files.min().item()) and detector.is_novel(detector.file_score(far))


def test_the_fit_reports_what_metrics_json_needs():
    train, labels, _ = clusters(100, 5, seed=2)
    val, _, val_tracks = clusters(50, 5, seed=3)
    fit = NoveltyDetector().fit(train, labels, val, val_tracks, quantile=0.9)
    assert fit.groups == CLASSES and fit.train_chunks == len(train) and fit.val_tracks == CLASSES * 50
    assert 0 < fit.components <= WIDTH and fit.threshold == pytest.approx(fit.val_track_quantiles["0.9"], rel=1e-6)
    assert fit.val_track_quantiles["0.5"] < fit.val_track_quantiles["0.95"] < fit.val_track_quantiles["0.99"]
    assert set(fit.as_dict()) >= {"components", "threshold", "val_track_quantiles"}


def test_small_classes_share_one_gaussian_and_multilabel_rows_make_one():
    labels = torch.tensor([0] * MIN_CLASS_CHUNKS + [1] * (MIN_CLASS_CHUNKS - 1) + [2] * 2)
    assert group_of(labels).tolist() == [0] * MIN_CLASS_CHUNKS + [-1] * (MIN_CLASS_CHUNKS + 1)
    assert group_of(torch.eye(3)).tolist() == [0, 0, 0]


class Holder(nn.Module):
    """A model holding a detector as the task will: `novelty`, beside its own weights."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 2)
        self.novelty = NoveltyDetector()


def test_the_buffers_round_trip_through_a_state_dict_into_an_unfitted_detector():
    source = Holder()
    source.novelty = fitted_detector()
    state = source.state_dict()
    assert {"novelty.components", "novelty.precision", "novelty.threshold"} <= set(state)
    fresh = Holder()
    assert not fresh.novelty.fitted
    fresh.load_state_dict(state)  # strict
    assert fresh.novelty.fitted
    for name, value in source.novelty.state_dict().items():
        torch.testing.assert_close(fresh.novelty.state_dict()[name], value, rtol=0, atol=0)
    probe = clusters(2, 5, seed=6)[0]
    torch.testing.assert_close(fresh.novelty.score(probe), source.novelty.score(probe))
    # An unfitted detector's (empty) buffers load too, and leave it unfitted.
    fresh.load_state_dict(Holder().state_dict())
    assert not fresh.novelty.fitted


@pytest.mark.parametrize("name", ["cnn_vote", "stats_linear_svm"])
def test_a_state_dict_from_before_novelty_detection_loads_strictly_unfitted(name):
    """The task's real state dict of a checkpoint written before novelty detection, loaded strictly into
    the task's modules with a detector beside them (a fitted one: it is emptied)."""
    from mgr.models import load_model

    state = read_checkpoint(FIXTURES / "checkpoints_2026_12" / f"{name}.ckpt")["state_dict"]
    assert not any(key.startswith("novelty.") for key in state)
    model = load_model(FIXTURES / "checkpoints_2026_12" / f"{name}.ckpt")
    model.novelty = fitted_detector()
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert not model.novelty.fitted and model.novelty.threshold.numel() == 0


def test_a_partial_state_dict_is_still_refused():
    state = {k: v for k, v in Holder().state_dict().items() if k != "novelty.precision"}
    state["novelty.components"] = torch.zeros(3, 2)
    with pytest.raises(RuntimeError, match="novelty.precision"):
        Holder().load_state_dict(state)


def test_scoring_an_unfitted_detector_says_so():
    with pytest.raises(RuntimeError, match="not fitted"):
        NoveltyDetector().score(torch.zeros(2, 3))


@pytest.fixture(scope="module")
def tiny_synth(data_dir):
    """The tiny synth data at 16 tracks a class (10 validation tracks), every training track cut into as
    many crops as its length holds."""
    from mgr.data import GenreDataModule

    datamodule = GenreDataModule(source="synth", root=str(data_dir / "synth_novelty"), cache_dir=str(data_dir / "cache"),
                                 source_options={"tracks_per_class": 16, "seconds": [2.0, 3.5]}, sample_rate=8000,
                                 chunk_seconds=1.0, min_seconds=1.0, batch_size=32, num_workers=0,
                                 train_chunks_per_track="audio")
    datamodule.prepare_data()
    return datamodule


def test_fit_novelty_on_a_tiny_trained_model_calls_white_noise_novel(tiny_synth):
    """A tiny CNN trained 5 epochs: the threshold is finite, and white noise chunks score above it far more
    often than the validation chunks do. (Untrained, the same net's embeddings do not tell noise apart.)"""
    import pytorch_lightning as pl

    from mgr.models import GenreClassifier

    pl.seed_everything(0)
    model = GenreClassifier(tiny_synth.class_names, {"name": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 32},
                            8000, 1.0, {"name": "cnn", "channels": [8, 16, 32], "hidden": 32})
    pl.Trainer(max_epochs=5, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0).fit(model, datamodule=tiny_synth)
    detector, fit = fit_novelty(model, tiny_synth, torch.device("cpu"))
    assert detector.fitted and torch.isfinite(detector.threshold) and fit.val_tracks == 10
    assert fit.groups == len(tiny_synth.class_names)
    val, _, _ = loader_outputs(model, tiny_synth, tiny_synth.val_dataloader(), torch.device("cpu"), model.embed)
    noise = 0.3 * torch.randn(30, 8000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        noise_novel = (detector.score(model.eval().embed(noise)) > detector.threshold).float().mean()
    val_novel = (detector.score(val) > detector.threshold).float().mean()
    assert noise_novel >= 0.5 and noise_novel > 2 * val_novel
