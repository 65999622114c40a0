"""mgr.data.datasets: random training chunks and evaluation's evenly spaced ones."""

from __future__ import annotations

import numpy as np

from mgr.data.cache import WaveformCache
from mgr.data.datasets import EvenChunks, RandomChunks
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
    np.testing.assert_array_equal(wave.numpy(), cache.waveform(3)[10000:14000])
    assert (label, k) == (0, 1)
