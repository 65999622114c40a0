"""mgr.data.chunking: the one place where evaluation, mgr.embed and mgr.predict cut tracks into chunks
and combine a track's chunks (TrackAggregation)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import CHUNK_LOGITS, CHUNK_TRACKS, seed004_vote
from mgr import MGRError
from mgr.data.chunking import chunk_starts, crop, cut
from mgr.data.datasets import EvenChunks
from mgr.models.aggregation import TrackAggregation


def test_the_documented_examples():
    assert list(chunk_starts(8000, 4000)) == [0, 4000]
    assert list(chunk_starts(14000, 4000)) == [0, 3333, 6667, 10000]
    assert list(chunk_starts(14000, 4000, overlap=0.5)) == [0, 2000, 4000, 6000, 8000, 10000]
    assert list(chunk_starts(14000, 4000, max_chunks=2)) == [0, 10000]  # capped: no longer covering
    assert list(chunk_starts(2500, 4000)) == list(chunk_starts(2500, 4000, overlap=0.5)) == [0]  # padded
    assert list(chunk_starts(0, 4000)) == [0]


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.9])
def test_starts_are_the_fewest_evenly_spaced_that_keep_the_overlap(overlap):
    rng = np.random.default_rng(0)
    for chunk in (1, 7, 100, 4000):
        hop = max(1, int(chunk * (1 - overlap)))
        for n in [0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk, *rng.integers(0, 30 * chunk, 50)]:
            starts = chunk_starts(int(n), chunk, overlap)
            last = max(int(n) - chunk, 0)
            assert starts[0] == 0 and starts[-1] == last  # the first chunk begins the track, the last ends it
            gaps = np.diff(starts)
            assert (gaps <= hop).all() and (len(gaps) == 0 or gaps.max() - gaps.min() <= 1)
            # One chunk fewer would not do: it could not reach the end, or its starts would be more than hop apart.
            assert len(starts) == 1 or (last > 0 and (len(starts) == 2 or last / (len(starts) - 2) > hop))
            if overlap == 0.0:
                assert len(starts) == max(1, -(-int(n) // chunk))  # ceil(n / chunk): they cover the track


def test_crop_and_cut_zero_pad_past_the_end():
    wave = np.arange(10, dtype=np.float32) + 1
    assert crop(wave, 6, 6).tolist() == [7, 8, 9, 10, 0, 0]
    chunks = cut(wave, chunk_starts(len(wave), 4, 0.5), 4)
    assert chunks.dtype == torch.float32 and chunks.shape == (4, 4)
    assert chunks[:, 0].tolist() == [1, 3, 5, 7] and chunks[-1].tolist() == [7, 8, 9, 10]
    assert cut(wave[:3], chunk_starts(3, 4), 4).tolist() == [[1, 2, 3, 0]]


def test_even_chunks_are_chunk_starts_without_overlap():
    lengths = [2500, 8000, 14000, 4000 * 7 + 1]
    cache = SimpleNamespace(lengths=np.array(lengths), waveform=lambda t: np.ones(lengths[t], dtype=np.float32),
                            dtype="float32")
    for max_chunks in (None, 3):
        dataset = EvenChunks(cache, [3, 0, 2], [0, 1, 0, 1], chunk=4000, max_chunks=max_chunks)
        for k, t in enumerate([3, 0, 2]):
            starts = [s for j, s in dataset.items if j == k]
            assert starts == chunk_starts(lengths[t], 4000, overlap=0.0, max_chunks=max_chunks).tolist()
    wave, label, k = dataset[dataset.items.index((1, 0))]  # the 2500-sample track, padded
    assert (label, k) == (0, 1) and wave[:2500].eq(1).all() and wave[2500:].eq(0).all()


def test_chunk_starts_cover_the_file_with_the_asked_overlap():
    starts = chunk_starts(1000, 100, 0.5)
    assert starts[0] == 0 and starts[-1] == 900
    assert np.diff(starts).max() <= 50
    assert list(chunk_starts(40, 100, 0.5)) == [0]  # shorter than a chunk: one zero-padded chunk
    assert list(chunk_starts(300, 100, 0.0)) == [0, 100, 200]


def test_each_rule_on_hand_made_chunk_logits():
    n = int(CHUNK_TRACKS.max()) + 1
    probs = torch.softmax(CHUNK_LOGITS, 1)
    mean_logits = TrackAggregation("mean_logits").scores(CHUNK_LOGITS, CHUNK_TRACKS, n)
    mean_probs = TrackAggregation("mean_probs").scores(CHUNK_LOGITS, CHUNK_TRACKS, n)
    vote = TrackAggregation("majority_vote", 0.5).scores(CHUNK_LOGITS, CHUNK_TRACKS, n)
    for k in range(n):
        torch.testing.assert_close(mean_logits[k], CHUNK_LOGITS[CHUNK_TRACKS == k].mean(0))
        torch.testing.assert_close(mean_probs[k], probs[CHUNK_TRACKS == k].mean(0))
    assert mean_logits.argmax(1).tolist() == [0, 0, 2, 0, 1]
    assert mean_probs.argmax(1).tolist() == [0, 1, 2, 0, 1]
    assert vote.argmax(1).tolist() == [1, 1, 2, 0, 1]
    # Vote shares: of the voting chunks only, of all three where none passes (track 2).
    torch.testing.assert_close(vote, torch.tensor([
        [1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0], [1 / 3, 0, 2 / 3], [1, 0, 0], [0, 1 / 2, 1 / 2]]))
    # Threshold 0: every chunk votes, so the two unsure chunks of track 3 win.
    assert TrackAggregation("majority_vote", 0.0).scores(CHUNK_LOGITS, CHUNK_TRACKS, n).argmax(1).tolist() == [1, 1, 2, 1, 1]
    # Probabilities: softmax of the mean logits; the others are probabilities already.
    torch.testing.assert_close(TrackAggregation().probabilities(CHUNK_LOGITS, CHUNK_TRACKS, n), torch.softmax(mean_logits, 1))
    torch.testing.assert_close(TrackAggregation("majority_vote").probabilities(CHUNK_LOGITS, CHUNK_TRACKS, n), vote)


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
