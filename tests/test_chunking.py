"""mgr.data.chunking: the one place where evaluation, mgr.embed and mgr.predict cut tracks into chunks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mgr.data.chunking import chunk_starts, crop, cut
from mgr.data.datasets import EvenChunks


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
    cache = SimpleNamespace(lengths=np.array(lengths), waveform=lambda t: np.ones(lengths[t], dtype=np.float32))
    for max_chunks in (None, 3):
        dataset = EvenChunks(cache, [3, 0, 2], [0, 1, 0, 1], chunk=4000, max_chunks=max_chunks)
        for k, t in enumerate([3, 0, 2]):
            starts = [s for j, s in dataset.items if j == k]
            assert starts == chunk_starts(lengths[t], 4000, overlap=0.0, max_chunks=max_chunks).tolist()
    wave, label, k = dataset[dataset.items.index((1, 0))]  # the 2500-sample track, padded
    assert (label, k) == (0, 1) and wave[:2500].eq(1).all() and wave[2500:].eq(0).all()
