"""Chunk datasets over the waveform cache: random crops for training, evenly
spaced chunks covering each track for evaluation (Won et al. 2020 protocol)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from mgr.data.cache import WaveformCache


def _crop(wave: np.ndarray, start: int, length: int) -> torch.Tensor:
    """`length` samples from `start`, zero-padded at the end when the track is shorter."""
    out = torch.zeros(length, dtype=torch.float32)
    piece = wave[start : start + length]
    out[: len(piece)] = torch.from_numpy(np.array(piece))
    return out


class RandomChunks(Dataset):
    """`chunks_per_track` random chunks of every track per epoch."""

    def __init__(self, cache: WaveformCache, tracks: list[int], labels: list[int], chunk: int, chunks_per_track: int = 1):
        self.cache, self.tracks, self.labels, self.chunk = cache, tracks, labels, chunk
        self.chunks_per_track = chunks_per_track

    def __len__(self) -> int:
        return len(self.tracks) * self.chunks_per_track

    def __getitem__(self, i: int):
        k = i % len(self.tracks)
        wave = self.cache.waveform(self.tracks[k])
        # torch's RNG: seeded per worker by Lightning's seed_everything(workers=True).
        start = int(torch.randint(0, max(len(wave) - self.chunk, 0) + 1, ()).item())
        return _crop(wave, start, self.chunk), self.labels[self.tracks[k]], k


class EvenChunks(Dataset):
    """Evenly spaced chunks covering each whole track; item carries the track's position
    in `tracks` so chunk predictions can be averaged per track."""

    def __init__(self, cache: WaveformCache, tracks: list[int], labels: list[int], chunk: int, max_chunks: int | None = None):
        self.cache, self.tracks, self.labels, self.chunk = cache, tracks, labels, chunk
        self.items: list[tuple[int, int]] = []  # (position in tracks, start sample)
        for k, t in enumerate(tracks):
            length = int(cache.lengths[t])
            n = max(1, math.ceil(length / chunk))
            if max_chunks:
                n = min(n, max_chunks)
            starts = np.linspace(0, max(length - chunk, 0), n).round().astype(int)
            self.items += [(k, int(s)) for s in starts]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        k, start = self.items[i]
        t = self.tracks[k]
        return _crop(self.cache.waveform(t), start, self.chunk), self.labels[t], k
