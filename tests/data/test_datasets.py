"""mgr.data.datasets: random training chunks (a number per track, or as many as the track's audio holds)
and evaluation's evenly spaced ones."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mgr import MGRError
from mgr.data.cache import WaveformCache
from mgr.data.datasets import EvenChunks, RandomChunks, cache_chunk, crops_per_track
from mgr.data.sources.folder import FolderSource


def test_chunk_datasets(small_folder, tmp_path):
    files = FolderSource(str(small_folder)).list().files
    cache = WaveformCache.build(files, 8000, tmp_path / "cache", "folder")
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    train = RandomChunks(cache, [0, 3, 5], labels, chunk=9000, chunks_per_track=2)
    assert len(train) == 6
    wave, label, k = train[0]
    assert wave.shape == (9000,) and label == 0 and k == 0
    assert (wave[8000:] == 0).all()  # an 8000-sample track is padded to the chunk length
    evaluation = EvenChunks(cache, [0, 3], labels, chunk=4000)
    # 8000 samples -> 2 chunks; 14000 -> 4 chunks evenly spaced from 0 to 10000
    assert [item for item in evaluation.items] == [(0, 0), (0, 4000), (1, 0), (1, 3333), (1, 6667), (1, 10000)]
    wave, label, k = evaluation[5]
    np.testing.assert_array_equal(wave.numpy(), _samples(cache, 3)[10000:14000])
    assert (label, k) == (0, 1)


def _samples(cache: WaveformCache, track: int) -> np.ndarray:
    """A whole track's float32 samples, as the datasets' chunks give them."""
    return cache_chunk(cache, track, 0, int(cache.lengths[track])).numpy()


def _cache(small_folder, tmp_path) -> WaveformCache:
    """small_folder's 8 tracks of 8000, 10000, 12000, 14000 samples (twice)."""
    return WaveformCache.build(FolderSource(str(small_folder)).list().files, 8000, tmp_path / "cache", "folder")


def test_audio_crops_each_track_as_often_as_its_chunks_fit(small_folder, tmp_path):
    cache = _cache(small_folder, tmp_path)
    tracks = [0, 1, 2, 3, 7]
    train = RandomChunks(cache, tracks, [0] * 8, chunk=4000, chunks_per_track="audio")
    assert len(train) == 2 + 3 + 3 + 4 + 4  # ceil(length / 4000)
    assert len(train) == len(EvenChunks(cache, tracks, [0] * 8, chunk=4000))  # evaluation's chunks of the same tracks
    assert Counter(train[i][2] for i in range(len(train))) == {0: 2, 1: 3, 2: 3, 3: 4, 4: 4}
    assert crops_per_track(np.array([0, 1, 4000, 4001, 12000]), 4000, "audio").tolist() == [1, 1, 1, 2, 3]
    # A whole number: that many of every track, item i of track i % len(tracks) as before the option.
    assert [item[2] for item in RandomChunks(cache, tracks, [0] * 8, chunk=4000, chunks_per_track=2)] == [0, 1, 2, 3, 4] * 2


def _start(piece: np.ndarray, wave: np.ndarray) -> int:
    """Where in `wave` the crop `piece` begins (noise: its first sample occurs once)."""
    (start,) = [s for s in np.flatnonzero(wave == piece[0]) if np.array_equal(wave[s : s + len(piece)], piece)]
    return int(start)


def test_audio_crops_lie_inside_their_track_and_change_every_epoch(small_folder, tmp_path):
    cache = _cache(small_folder, tmp_path)
    train = RandomChunks(cache, [0, 3], [0] * 8, chunk=4000, chunks_per_track="audio")

    def epoch() -> list[tuple[int, int]]:
        return [(k, _start(wave.numpy(), _samples(cache, train.tracks[k]))) for wave, _, k in (train[i] for i in range(len(train)))]

    torch.manual_seed(0)
    epochs = [epoch() for _ in range(50)]
    torch.manual_seed(0)
    assert epoch() == epochs[0]  # a seed repeats the crops
    assert epochs[1] != epochs[0]
    for k, last in ((0, 8000 - 4000), (1, 14000 - 4000)):
        starts = [s for e in epochs for t, s in e if t == k]
        assert 0 <= min(starts) < 0.1 * last and 0.9 * last < max(starts) <= last  # over the whole track


def test_audio_crops_through_dataloader_workers(small_folder, tmp_path):
    cache = _cache(small_folder, tmp_path)
    train = RandomChunks(cache, [0, 1, 2, 3], [0, 1, 2, 3, 0, 0, 0, 0], chunk=4000, chunks_per_track="audio")
    batches = list(DataLoader(train, batch_size=3, shuffle=True, num_workers=2))
    assert sum(len(labels) for _, labels, _ in batches) == len(train) == 12
    assert Counter(torch.cat([labels for _, labels, _ in batches]).tolist()) == {0: 2, 1: 3, 2: 3, 3: 4}


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "x", "4"])
def test_a_bad_chunks_per_track_is_one_clear_error(small_folder, tmp_path, bad):
    with pytest.raises(MGRError, match=r"^data.train_chunks_per_track must be a whole number >= 1, 'audio' or 'even', got .+\.$"):
        RandomChunks(_cache(small_folder, tmp_path), [0], [0] * 8, chunk=4000, chunks_per_track=bad)
