"""Fourier-based frontends in dB: STFT, mel, MFCC (nnAudio or torch) and
gammatone (nnAudio).

backend=nnaudio: nnAudio's STFT (a convolution with Fourier kernels, learnable
with trainable=true) and mel filter bank. backend=torch: torch.fft and
librosa's mel filter bank, run block by block (mgr.features.stft), several
times faster on a CPU.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mgr.features.base import FilterBank, Frontend, Squared, check_backend
from mgr.features.stft import BlockedSpectrogram

# Centred frames padded with zeros, as librosa >= 0.10 (both libraries default to reflect).
PAD_MODE = "constant"


class STFTFrontend(Frontend):
    """Linear-frequency power spectrogram in dB (n_fft // 2 + 1 bins)."""

    def __init__(self, sample_rate: int, n_fft: int = 2048, hop_length: int = 512, window: str = "hann",
                 top_db: float | None = 80.0, backend: str = "torch", trainable: bool = False):
        super().__init__(sample_rate, top_db)
        self.transform = stft_power(sample_rate, n_fft, hop_length, window, backend, trainable, db=True, top_db=top_db)


def stft_power(sample_rate: int, n_fft: int, hop_length: int, window: str, backend: str, trainable: bool = False,
               filters: torch.Tensor | None = None, db: bool = False, top_db: float | None = None) -> nn.Module:
    """A module: waveform [B, T] -> power spectrogram [B, n_fft // 2 + 1, frames] of centred
    frames, or its projection [B, n_filters, frames] on `filters` [n_filters, n_fft // 2 + 1].
    `db` asks for dB with `top_db` where the backend computes it block by block (torch);
    Frontend.compute converts the power of the others."""
    check_backend(backend, trainable)
    if backend == "torch":
        return BlockedSpectrogram(n_fft, hop_length, window, filters, db, top_db)
    from nnAudio.features import STFT

    power = Squared(STFT(n_fft=n_fft, hop_length=hop_length, window=window, sr=sample_rate, pad_mode=PAD_MODE,
                         trainable=trainable, output_format="Magnitude", verbose=False))
    return power if filters is None else nn.Sequential(power, FilterBank(filters))


class MelFrontend(Frontend):
    """Log-mel spectrogram in dB (librosa's melspectrogram + power_to_db)."""

    def __init__(self, sample_rate: int, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128,
                 fmin: float = 0.0, fmax: float | None = None, window: str = "hann", top_db: float | None = 80.0,
                 backend: str = "torch", trainable: bool = False):
        super().__init__(sample_rate, top_db)
        check_backend(backend, trainable)
        if backend == "nnaudio":
            from nnAudio.features import MelSpectrogram

            self.transform = MelSpectrogram(sr=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
                                            fmin=fmin, fmax=fmax, window=window, power=2.0, pad_mode=PAD_MODE,
                                            trainable_mel=trainable, trainable_STFT=trainable, verbose=False)
        else:
            filters = torch.from_numpy(mel_filters(sample_rate, n_fft, n_mels, fmin, fmax))
            self.transform = BlockedSpectrogram(n_fft, hop_length, window, filters, db=True, top_db=top_db)


MIN_LOG_MEL, LOG_STEP = 15.0, np.log(6.4) / 27.0  # 1 kHz is mel 15; 27 mels per factor 6.4 above


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear to 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    log_part = MIN_LOG_MEL + np.log(np.maximum(hz, 1000.0) / 1000.0) / LOG_STEP
    return np.where(hz >= 1000.0, log_part, hz / (200.0 / 3))


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= MIN_LOG_MEL, 1000.0 * np.exp(LOG_STEP * (mel - MIN_LOG_MEL)), mel * (200.0 / 3))


def mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """librosa.filters.mel (Slaney scale, norm='slaney'): triangles over the FFT bins,
    each scaled to unit area, [n_mels, n_fft // 2 + 1]. Written here because torchaudio's
    copy needs its compiled library to import (pyproject.toml says why mgr avoids it)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    rising = (bins[None, :] - edges[:-2, None]) / np.diff(edges)[:-1, None]
    falling = (edges[2:, None] - bins[None, :]) / np.diff(edges)[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return (weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)


class MFCCFrontend(Frontend):
    """MFCCs (DCT-II, ortho) of the dB log-mel, as librosa.feature.mfcc."""

    def __init__(self, sample_rate: int, n_mfcc: int = 20, n_fft: int = 2048, hop_length: int = 512,
                 n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None, window: str = "hann",
                 top_db: float | None = 80.0, backend: str = "torch", trainable: bool = False):
        super().__init__(sample_rate, top_db)
        self.mel = MelFrontend(sample_rate, n_fft, hop_length, n_mels, fmin, fmax, window, top_db, backend, trainable)
        self.register_buffer("dct", _dct_matrix(n_mfcc, n_mels), persistent=False)

    def compute(self, wave: torch.Tensor) -> torch.Tensor:
        return self.dct @ self.mel.compute(wave)  # [n_mfcc, mels] @ [B, mels, frames]


class GammatoneFrontend(Frontend):
    """Gammatone-weighted power spectrogram in dB (nnAudio's Gammatonegram; librosa has none)."""

    def __init__(self, sample_rate: int, n_fft: int = 2048, hop_length: int = 512, n_bins: int = 64,
                 fmin: float = 20.0, fmax: float | None = None, window: str = "hann", top_db: float | None = 80.0,
                 trainable: bool = False):
        super().__init__(sample_rate, top_db)
        from nnAudio.features import Gammatonegram

        self.transform = Gammatonegram(sr=sample_rate, n_fft=n_fft, hop_length=hop_length, n_bins=n_bins, fmin=fmin,
                                       fmax=fmax, window=window, power=2.0, pad_mode=PAD_MODE, trainable_bins=trainable,
                                       trainable_STFT=trainable, verbose=False)


def _dct_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix [n_out, n_in] (scipy.fft.dct(norm='ortho'))."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    m = torch.cos(torch.pi / n_in * (n + 0.5) * k) * (2.0 / n_in) ** 0.5
    m[0] /= 2**0.5
    return m.float()
