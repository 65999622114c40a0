"""Track aggregation (mgr.data.chunking.TrackAggregation): each rule on hand-made chunk logits,
the track metrics that use it, and the checkpoint that carries it."""

from __future__ import annotations

from collections import Counter

import pytest
import pytorch_lightning as pl
import torch

from mgr import MGRError
from mgr.data.chunking import TrackAggregation
from mgr.models import GenreClassifier, load_model
from mgr.models.metrics import TrackMetrics

# Chunk logits of five tracks over three classes, each track a case where the rules part ways.
CHUNKS = [
    # track 0: one sure chunk of class 0, two fairly sure (p ~0.58) of class 1
    (0, [4.0, 0.0, 0.0]), (0, [0.0, 1.0, 0.0]), (0, [0.0, 1.0, 0.0]),
    # track 1: one extreme chunk of class 0 outweighs in logits, not in probabilities
    (1, [9.0, 0.0, 0.0]), (1, [0.0, 2.0, 0.0]), (1, [0.0, 2.0, 0.0]),
    # track 2: no chunk above 0.5 (two lean to class 2, one to class 0): all of them vote
    (2, [0.0, 0.0, 0.3]), (2, [0.0, 0.0, 0.3]), (2, [0.3, 0.0, 0.0]),
    # track 3: one confident chunk of class 0 against two unsure ones of class 1
    (3, [3.0, 0.0, 0.0]), (3, [0.0, 0.3, 0.0]), (3, [0.0, 0.3, 0.0]),
    # track 4: a tie of confident votes, class 2 first: the class listed first (1) wins
    (4, [0.0, 0.0, 3.0]), (4, [0.0, 3.0, 0.0]),
]
TRACKS = torch.tensor([t for t, _ in CHUNKS])
LOGITS = torch.tensor([l for _, l in CHUNKS])


def seed004_vote(probabilities: torch.Tensor, threshold: float) -> int:
    """Seed 004's code (ZainNasrullah/music-artist-classification-crnn, predict_artist) written out:
    the top class of each slice above the threshold, all slices when none is, the most frequent
    class, the smallest on ties (scipy.stats.mode)."""
    top, classes = probabilities.max(1)
    kept = classes[top > threshold].tolist() or classes.tolist()
    counts = Counter(kept)
    return min(c for c in counts if counts[c] == max(counts.values()))


def test_each_rule_on_hand_made_chunk_logits():
    n = int(TRACKS.max()) + 1
    probs = torch.softmax(LOGITS, 1)
    mean_logits = TrackAggregation("mean_logits").scores(LOGITS, TRACKS, n)
    mean_probs = TrackAggregation("mean_probs").scores(LOGITS, TRACKS, n)
    vote = TrackAggregation("majority_vote", 0.5).scores(LOGITS, TRACKS, n)
    for k in range(n):
        torch.testing.assert_close(mean_logits[k], LOGITS[TRACKS == k].mean(0))
        torch.testing.assert_close(mean_probs[k], probs[TRACKS == k].mean(0))
    assert mean_logits.argmax(1).tolist() == [0, 0, 2, 0, 1]
    assert mean_probs.argmax(1).tolist() == [0, 1, 2, 0, 1]
    assert vote.argmax(1).tolist() == [1, 1, 2, 0, 1]
    # Vote shares: of the voting chunks only, of all three where none passes (track 2).
    torch.testing.assert_close(vote, torch.tensor([
        [1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0], [1 / 3, 0, 2 / 3], [1, 0, 0], [0, 1 / 2, 1 / 2]]))
    # Threshold 0: every chunk votes, so the two unsure chunks of track 3 win.
    assert TrackAggregation("majority_vote", 0.0).scores(LOGITS, TRACKS, n).argmax(1).tolist() == [1, 1, 2, 1, 1]
    # Probabilities: softmax of the mean logits; the others are probabilities already.
    torch.testing.assert_close(TrackAggregation().probabilities(LOGITS, TRACKS, n), torch.softmax(mean_logits, 1))
    torch.testing.assert_close(TrackAggregation("majority_vote").probabilities(LOGITS, TRACKS, n), vote)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.8])
def test_majority_vote_is_seed_004_s_rule(threshold):
    torch.manual_seed(0)
    tracks = torch.randint(0, 40, (300,))
    logits = 2 * torch.randn(300, 4)
    aggregation = TrackAggregation("majority_vote", threshold)
    predicted = aggregation.scores(logits, tracks, 40).argmax(1)
    probs = torch.softmax(logits, 1)
    assert predicted.tolist() == [seed004_vote(probs[tracks == k], threshold) for k in range(40)]


@pytest.mark.parametrize("name,threshold,text", [
    ("mode", 0.5, "is not one of mean_logits, mean_probs, majority_vote"),
    ("majority_vote", 1.0, "vote_threshold=1.0 must be"),
    ("majority_vote", -0.1, "vote_threshold=-0.1 must be"),
    ("majority_vote", "high", "vote_threshold='high' must be"),
])
def test_unknown_rule_or_threshold_is_a_clear_error(name, threshold, text):
    with pytest.raises(MGRError, match=text):
        TrackAggregation(name, threshold)


@pytest.mark.parametrize("name", ["mean_logits", "mean_probs", "majority_vote"])
def test_track_metrics_score_the_aggregated_tracks(name):
    labels = torch.tensor([1, 1, 2, 0, 2])
    aggregation = TrackAggregation(name)
    expected = aggregation.scores(LOGITS, TRACKS, 5).argmax(1)
    metric = TrackMetrics(3, aggregation)
    # Track ids as a DDP rank sees them (any order, gaps), chunks of a track in two batches,
    # and an empty update: a rank whose only chunk was padding.
    ids = torch.tensor([7, 3, 11, 5, 20])[TRACKS]
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(1))
    for part in (order[:7], order[7:]):
        metric.update(LOGITS[part], labels[TRACKS[part]], ids[part])
    metric.update(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    result = metric.compute()
    confusion = torch.zeros(3, 3, dtype=torch.long)
    for k in range(5):
        confusion[labels[k], expected[k]] += 1
    assert torch.equal(result["track_confusion"], confusion)
    assert result["track_acc"] == pytest.approx(float((expected == labels).float().mean()))


def _tiny_cnn() -> GenreClassifier:
    return GenreClassifier(["a", "b", "c"], {"name": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 32}, 8000, 1.0,
                           {"name": "cnn", "channels": [4, 8, 8], "hidden": 8})


def _save(model, path):
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)


def test_the_checkpoint_carries_the_aggregation_and_old_ones_mean_logits(tmp_path):
    model = _tiny_cnn()
    assert model.track_aggregation == TrackAggregation("mean_logits", 0.5)
    model.set_track_aggregation("majority_vote", 0.7)
    assert model.val_tracks.aggregation == model.test_tracks.aggregation == TrackAggregation("majority_vote", 0.7)
    model.set_track_aggregation(vote_threshold=0.6)  # None keeps the name
    _save(model, tmp_path / "vote.ckpt")
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


@pytest.mark.parametrize("name,rule,threshold", [
    ("seed004_artist20_crnn_song", "majority_vote", 0.5), ("seed004_artist20_crnn_album", "majority_vote", 0.5),
    ("seed004_artist20_mfcc_svm_song", "majority_vote", 0.0), ("seed004_artist20_mfcc_svm_album", "majority_vote", 0.0),
    ("won2020_short_chunk_resnet_gtzan", "mean_probs", 0.5), ("seed002_gtzan_spectrogram", "mean_logits", 0.5),
])
def test_experiments_combine_chunks_as_their_papers_did(name, rule, threshold):
    from hydra import compose, initialize_config_module

    with initialize_config_module("mgr.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}", "data.root=/music"])
    assert (cfg.track_aggregation, cfg.vote_threshold) == (rule, threshold)
