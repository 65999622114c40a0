"""The torch backend's Fourier core: power spectrogram -> filter bank -> dB,
computed in cache-sized blocks.

A batched torch.stft of 16 clips of 30 s materialises a 170 MB complex
spectrogram and then walks over it four more times (magnitude, square, filter
bank, log), each pass bound by memory bandwidth. Here each block of ~256
frames goes from waveform to its final values while it sits in the L2 cache,
and only the result is written out: 5-7x faster than torchaudio's batched
transforms on a 2-core CPU (benchmarks/RESULTS.md). On a GPU, and when
gradients must reach the waveform, the whole batch is one block.

The numbers are librosa's: centred frames zero-padded by n_fft // 2 (librosa
>= 0.10's pad_mode), a periodic window, |X|^2 as re^2 + im^2, then
power_to_db(ref=1, amin=1e-10, top_db) per example.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mgr.features.base import AMIN, window_fn

BLOCK_FRAMES = 256  # 256 frames of a 2048-point FFT: 2 MB complex, the L2 cache of one core
GROUP_ROWS = 16  # filter-bank rows per matrix product; see _band_groups


class BlockedSpectrogram(nn.Module):
    """Waveform [B, T] -> power [B, n_fft // 2 + 1, frames], or [B, filters, frames] when
    `filters` [n_filters, n_fft // 2 + 1] is given; in dB (with `top_db` below each
    example's peak) when `db`."""

    def __init__(self, n_fft: int, hop_length: int, window: str = "hann", filters: torch.Tensor | None = None,
                 db: bool = False, top_db: float | None = None):
        super().__init__()
        self.n_fft, self.hop_length, self.db, self.top_db = n_fft, hop_length, db, top_db
        # Derived from the settings, so not saved: checkpoints stay independent of them.
        self.register_buffer("window", window_fn(window)(n_fft), persistent=False)
        self.register_buffer("filters", None if filters is None else filters.float().contiguous(), persistent=False)
        self.groups = None if filters is None else _band_groups(filters)

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1 if self.filters is None else self.filters.shape[0]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        n_examples, n_frames = wave.shape[0], wave.shape[-1] // self.hop_length + 1
        if wave.device.type != "cpu" or (torch.is_grad_enabled() and wave.requires_grad):
            # One block: a GPU needs no blocking, and autograd no in-place writes.
            values = self._block(self._frames(wave, 0, n_frames))
            return torch.maximum(values, self._floor(values)) if self._clips_db else values
        out = wave.new_empty(n_examples, self.n_bins, n_frames)
        per_group = max(1, BLOCK_FRAMES // n_frames)  # short chunks: several examples per block
        for b0 in range(0, n_examples, per_group):
            b1 = min(n_examples, b0 + per_group)
            for s in range(0, n_frames, BLOCK_FRAMES):
                e = min(n_frames, s + BLOCK_FRAMES)
                out[b0:b1, :, s:e] = self._block(self._frames(wave[b0:b1], s, e))
            if self._clips_db:  # the examples' peaks are known once all their blocks are done
                out[b0:b1].clamp_(min=self._floor(out[b0:b1]))
        return out

    @property
    def _clips_db(self) -> bool:
        return self.db and self.top_db is not None

    def _floor(self, db: torch.Tensor) -> torch.Tensor:
        """top_db below each example's peak: [k, 1, 1]."""
        return db.amax(dim=(1, 2), keepdim=True) - self.top_db

    def _frames(self, wave: torch.Tensor, s: int, e: int) -> torch.Tensor:
        """Frames s..e-1 [k, e - s, n_fft] of the centred signal; only this block's samples are
        zero-padded, not the whole batch (a copy of it costs as much as a block's FFT)."""
        start, end = s * self.hop_length - self.n_fft // 2, (e - 1) * self.hop_length + self.n_fft // 2
        segment = wave[:, max(0, start):max(0, min(wave.shape[-1], end))]
        segment = F.pad(segment, (max(0, -start), end - start - segment.shape[-1] - max(0, -start)))
        return segment.unfold(-1, self.n_fft, self.hop_length)

    def _block(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames [k, m, n_fft] -> final values [k, bins, m]."""
        k, m = frames.shape[:2]
        spectrum = torch.view_as_real(torch.fft.rfft(frames * self.window))  # [k, m, n_fft // 2 + 1, 2]
        squares = spectrum.square()
        power = squares[..., 0] + squares[..., 1]  # faster than abs() ** 2, which takes a square root
        if self.filters is None:
            values = power.transpose(1, 2)
        else:
            power = power.view(k * m, -1)
            values = torch.cat([self.filters[r0:r1, lo:hi] @ power[:, lo:hi].T for r0, r1, lo, hi in self.groups])
            values = values.view(-1, k, m).transpose(0, 1)
        if not self.db:
            return values
        if values.requires_grad:  # autograd needs the inputs of log10 unchanged
            return 10.0 * torch.log10(values.clamp(min=AMIN))
        return values.clamp_(min=AMIN).log10_().mul_(10.0)


def _band_groups(filters: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """Split a filter bank into groups of rows, each with the band of FFT bins where it
    is non-zero: (first row, end row, first bin, end bin). A mel bank touches each bin
    with at most two filters, so these products do ~1/8 of a dense one's work; a
    dense bank (chroma) gives one group over all bins."""
    groups = []
    for r0 in range(0, filters.shape[0], GROUP_ROWS):
        r1 = min(filters.shape[0], r0 + GROUP_ROWS)
        used = (filters[r0:r1] != 0).any(dim=0).nonzero().flatten()
        lo, hi = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 1)
        groups.append((r0, r1, lo, hi))
    return groups
