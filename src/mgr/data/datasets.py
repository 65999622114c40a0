"""Chunk datasets over the waveform cache: random crops for training, evenly
spaced chunks covering each track for evaluation (combined per track by
mgr.models.aggregation.TrackAggregation), both cut by mgr.data.chunking.

A chunk is float32 samples, or with `stored=True` (the data module's loaders) what a compact
cache (int16, float16) stores: a `Stored` pair of the chunk's stored samples and their step,
half the bytes to batch and copy, turned into float32 by `dequantise` on the model's device."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from mgr import MGRError
from mgr.data.cache import WaveformCache
from mgr.data.chunking import chunk_starts, crop


# data.train_chunks_per_track: as many random crops per epoch as chunks fit in the track.
AUDIO = "audio"
# data.train_chunks_per_track: evaluation's evenly spaced chunks of each track, the same every
# epoch (EvenChunks): what a classifier fitted once in closed form wants, as a classic
# baseline's clips are cut.
EVEN = "even"


class Stored(NamedTuple):
    """A chunk (or, collated, a batch of chunks) as a compact cache stores it: the samples in its dtype and
    the float32 step each unit is worth (one per chunk)."""
    samples: torch.Tensor
    step: torch.Tensor


def dequantise(wave: torch.Tensor | Stored) -> torch.Tensor:
    """float32 samples of a chunk or batch: a `Stored` one as samples * step, on their device; anything else
    (a float32 cache's chunks) as it is. Every reader of the cache goes through here."""
    if not isinstance(wave, Stored):
        return wave
    samples, step = wave
    step = step.to(device=samples.device, dtype=torch.float32)
    return samples.to(torch.float32) * step.reshape(step.shape + (1,) * (samples.dim() - step.dim()))


def cache_chunk(cache: WaveformCache, track: int, start: int, length: int, stored: bool = False) -> torch.Tensor | Stored:
    """`length` samples of `track` from `start`, zero-padded past its end: float32, or with `stored` (and a
    compact cache) the stored samples and their step, for dequantise to turn into float32 later."""
    wave = cache.waveform(track)
    if cache.dtype == "float32":
        return crop(wave, start, length)
    chunk = Stored(crop(wave, start, length, wave.dtype), torch.tensor(cache.step(track), dtype=torch.float32))
    return chunk if stored else dequantise(chunk)


def check_chunks_per_track(chunks_per_track: int | str) -> None:
    if chunks_per_track not in (AUDIO, EVEN) and (isinstance(chunks_per_track, bool)
                                                  or not isinstance(chunks_per_track, int) or chunks_per_track < 1):
        raise MGRError(f"data.train_chunks_per_track must be a whole number >= 1, '{AUDIO}' or '{EVEN}', "
                       f"got {chunks_per_track!r}.")


def crops_per_track(lengths: np.ndarray, chunk: int, chunks_per_track: int | str) -> np.ndarray:
    """Random crops of each track (of `lengths` samples) per epoch: `chunks_per_track`, or with
    "audio" ceil(length / chunk), at least 1, as many as evaluation's chunks covering the track."""
    check_chunks_per_track(chunks_per_track)
    if chunks_per_track == EVEN:
        raise MGRError(f"data.train_chunks_per_track='{EVEN}' draws no random crops: use EvenChunks.")
    lengths = np.asarray(lengths, dtype=np.int64)
    if chunks_per_track == AUDIO:
        return np.maximum(1, -(-lengths // chunk))
    return np.full(len(lengths), chunks_per_track, dtype=np.int64)


class RandomChunks(Dataset):
    """Random chunks of the training tracks, each drawn uniformly over its track anew every time it
    is read: `crops_per_track` of each track per epoch."""

    def __init__(self, cache: WaveformCache, tracks: list[int], labels: list[int], chunk: int,
                 chunks_per_track: int | str = 1, stored: bool = False):
        self.cache, self.tracks, self.labels, self.chunk, self.stored = cache, tracks, labels, chunk, stored
        counts = crops_per_track(cache.lengths[np.asarray(tracks, dtype=np.int64)], chunk, chunks_per_track)
        # The position in `tracks` of every item, round by round: round r holds every track with more
        # than r crops. The sampler shuffles, so the order only keeps integer counts' items where they
        # were (item i is track i % len(tracks)), and with them a seeded run's batches.
        positions = np.repeat(np.arange(len(tracks)), counts)
        rounds = np.arange(len(positions)) - np.repeat(np.cumsum(counts) - counts, counts)
        self.items = positions[np.argsort(rounds, kind="stable")]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        k = int(self.items[i])
        t = self.tracks[k]
        # torch's RNG: seeded per worker by Lightning's seed_everything(workers=True).
        start = int(torch.randint(0, max(int(self.cache.lengths[t]) - self.chunk, 0) + 1, ()).item())
        return cache_chunk(self.cache, t, start, self.chunk, self.stored), self.labels[t], k


class EvenChunks(Dataset):
    """The chunks evaluation scores: `chunk_starts(track length, chunk, overlap=0, max_chunks)`,
    the fewest evenly spaced chunks that cover each whole track (at most `max_chunks`),
    zero-padded when a track is shorter than a chunk. An item carries the track's position
    in `tracks` so chunk predictions can be combined per track."""

    def __init__(self, cache: WaveformCache, tracks: list[int], labels: list[int], chunk: int, max_chunks: int | None = None,
                 stored: bool = False):
        self.cache, self.tracks, self.labels, self.chunk, self.stored = cache, tracks, labels, chunk, stored
        self.items: list[tuple[int, int]] = []  # (position in tracks, start sample)
        for k, t in enumerate(tracks):
            starts = chunk_starts(int(cache.lengths[t]), chunk, overlap=0.0, max_chunks=max_chunks)
            self.items += [(k, int(s)) for s in starts]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        k, start = self.items[i]
        t = self.tracks[k]
        return cache_chunk(self.cache, t, start, self.chunk, self.stored), self.labels[t], k
