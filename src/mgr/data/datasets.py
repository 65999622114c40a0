"""Chunk datasets over the waveform cache: random crops for training, evenly
spaced chunks covering each track for evaluation (combined per track by
mgr.data.chunking.TrackAggregation), both cut by mgr.data.chunking."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from mgr.data.cache import WaveformCache
from mgr.data.chunking import chunk_starts, crop


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
        return crop(wave, start, self.chunk), self.labels[self.tracks[k]], k


class EvenChunks(Dataset):
    """The chunks evaluation scores: `chunk_starts(track length, chunk, overlap=0, max_chunks)`,
    the fewest evenly spaced chunks that cover each whole track (at most `max_chunks`),
    zero-padded when a track is shorter than a chunk. An item carries the track's position
    in `tracks` so chunk predictions can be combined per track."""

    def __init__(self, cache: WaveformCache, tracks: list[int], labels: list[int], chunk: int, max_chunks: int | None = None):
        self.cache, self.tracks, self.labels, self.chunk = cache, tracks, labels, chunk
        self.items: list[tuple[int, int]] = []  # (position in tracks, start sample)
        for k, t in enumerate(tracks):
            starts = chunk_starts(int(cache.lengths[t]), chunk, overlap=0.0, max_chunks=max_chunks)
            self.items += [(k, int(s)) for s in starts]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        k, start = self.items[i]
        t = self.tracks[k]
        return crop(self.cache.waveform(t), start, self.chunk), self.labels[t], k
