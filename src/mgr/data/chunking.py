"""Where a track is cut into chunks, for every task that scores whole tracks: evaluation
(`EvenChunks`: the val/test metrics of mgr.train and mgr.eval, and mgr.embed) and mgr.predict.

`chunk_starts(n, chunk, overlap)` gives the fewest evenly spaced starts from 0 to n - chunk
(the first chunk begins the track, the last one ends it) that are at most
(1 - overlap) * chunk samples apart, rounded to whole samples:

- overlap=0, what evaluation uses: ceil(n / chunk) chunks that cover the track; neighbours
  overlap by the part of a chunk that does not fit evenly (none when n is a multiple of chunk).
  8000 samples in chunks of 4000: starts 0, 4000; 14000: 0, 3333, 6667, 10000.
- overlap=0.5, mgr.predict's default: neighbours share at least half a chunk, about twice
  as many chunks. 14000 in chunks of 4000: 0, 2000, ..., 10000 (6 chunks).
- A track of at most one chunk gets one chunk from 0, zero-padded at the end (`crop`).
- `max_chunks` (data.eval_max_chunks): at most that many, still spread evenly from the
  first sample to the last, so they no longer cover the track.

A track's chunk logits are then combined by the model's track aggregation
(mgr.models.aggregation: a property of how the model scores a track, kept in its checkpoint).
"""

from __future__ import annotations

import numpy as np
import torch


def chunk_starts(n_samples: int, chunk: int, overlap: float = 0.0, max_chunks: int | None = None) -> np.ndarray:
    """Start samples of the chunks of a track of `n_samples` (see the module docstring)."""
    hop = max(1, int(chunk * (1 - overlap)))
    last = max(n_samples - chunk, 0)
    n = 1 + -(-last // hop)  # 1 + ceil(last / hop)
    if max_chunks:
        n = min(n, max_chunks)
    return np.linspace(0, last, n).round().astype(np.int64)


def crop(wave: np.ndarray, start: int, length: int, dtype=np.float32) -> torch.Tensor:
    """`length` samples of `wave` from `start` as `dtype`, zero-padded past the end of the track."""
    out = np.zeros(length, dtype=dtype)
    piece = wave[start : start + length]
    out[: len(piece)] = piece
    return torch.from_numpy(out)


def cut(wave: np.ndarray, starts: np.ndarray, length: int) -> torch.Tensor:
    """The chunks [len(starts), length] of `wave` at `starts`, each as `crop` gives it (one copy)."""
    past_end = int(np.max(starts, initial=0)) + length - len(wave)
    if past_end > 0:  # a track shorter than a chunk: pad it once
        wave = np.pad(wave, (0, past_end))
    return torch.from_numpy(np.stack([wave[s : s + length] for s in starts]).astype(np.float32, copy=False))
