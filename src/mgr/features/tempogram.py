"""Tempogram: local autocorrelation of the onset-strength envelope (librosa.feature.tempogram).

Onset strength as librosa.onset.onset_strength: positive first difference of the
dB log-mel over time, averaged over mel bands, shifted to compensate the frame
centring. Then, for each frame, the autocorrelation of a Hann-windowed window of
`win_length` envelope frames centred on it, scaled to a maximum of 1. Output bin
k is lag k frames, i.e. tempo 60 * sample_rate / (hop_length * k) BPM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mgr.features.base import Frontend, normalize_frames
from mgr.features.spectrogram import MelFrontend


class TempogramFrontend(Frontend):
    def __init__(self, sample_rate: int, hop_length: int = 512, win_length: int = 384, n_fft: int = 2048,
                 n_mels: int = 128, backend: str = "torch"):
        super().__init__(sample_rate, top_db=None)
        self.mel = MelFrontend(sample_rate, n_fft, hop_length, n_mels, fmax=sample_rate / 2, backend=backend)
        self.win_length = win_length
        self.onset_shift = 1 + n_fft // (2 * hop_length)  # lag + centring compensation
        self.register_buffer("window", torch.hann_window(win_length, periodic=True), persistent=False)

    def onset_strength(self, wave: torch.Tensor) -> torch.Tensor:
        db = self.mel.compute(wave)  # [B, mels, frames], power_to_db with top_db 80 as librosa
        flux = torch.relu(db[..., 1:] - db[..., :-1]).mean(dim=1)
        return F.pad(flux, (self.onset_shift, 0))[..., : db.shape[-1]]

    def compute(self, wave: torch.Tensor) -> torch.Tensor:
        env = self.onset_strength(wave)  # [B, frames]
        n_frames, half = env.shape[1], self.win_length // 2
        env = torch.cat([_ramp(env[:, :1], half, rising=True), env, _ramp(env[:, -1:], half, rising=False)], dim=1)
        frames = env.unfold(1, self.win_length, 1)[:, :n_frames] * self.window  # [B, frames, win]
        n = 2 * self.win_length  # zero-padded: a linear, not circular, autocorrelation
        power = torch.fft.rfft(frames, n=n).abs() ** 2
        autocorr = torch.fft.irfft(power, n=n)[..., : self.win_length]
        return normalize_frames(autocorr.transpose(1, 2))  # [B, lags, frames]


def _ramp(edge: torch.Tensor, width: int, rising: bool) -> torch.Tensor:
    """numpy.pad mode='linear_ramp' to 0: from 0 up to the edge value, or from it down to 0."""
    steps = torch.arange(width, device=edge.device, dtype=edge.dtype) / width
    return edge * (steps if rising else 1 - (steps + 1 / width))
