"""Fourier-based frontends in dB: STFT, mel, MFCC (nnAudio or torchaudio) and
gammatone (nnAudio).

backend=nnaudio: nnAudio's STFT (a convolution with Fourier kernels, learnable
with trainable=true) and mel filter bank. backend=torchaudio: torch.fft and
torchaudio's mel filter bank, run block by block (mgr.features.stft), several
times faster on a CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from mgr.features.base import FilterBank, Frontend, Squared, check_backend
from mgr.features.stft import BlockedSpectrogram

# Centred frames padded with zeros, as librosa >= 0.10 (both libraries default to reflect).
PAD_MODE = "constant"


class STFTFrontend(Frontend):
    """Linear-frequency power spectrogram in dB (n_fft // 2 + 1 bins)."""

    def __init__(self, sample_rate: int, n_fft: int = 2048, hop_length: int = 512, window: str = "hann",
                 top_db: float | None = 80.0, backend: str = "torchaudio", trainable: bool = False):
        super().__init__(sample_rate, top_db)
        self.transform = stft_power(sample_rate, n_fft, hop_length, window, backend, trainable, db=True, top_db=top_db)


def stft_power(sample_rate: int, n_fft: int, hop_length: int, window: str, backend: str, trainable: bool = False,
               filters: torch.Tensor | None = None, db: bool = False, top_db: float | None = None) -> nn.Module:
    """A module: waveform [B, T] -> power spectrogram [B, n_fft // 2 + 1, frames] of centred
    frames, or its projection [B, n_filters, frames] on `filters` [n_filters, n_fft // 2 + 1].
    `db` asks for dB with `top_db` where the backend computes it block by block (torchaudio);
    Frontend.compute converts the power of the others."""
    check_backend(backend, trainable)
    if backend == "torchaudio":
        return BlockedSpectrogram(n_fft, hop_length, window, filters, db, top_db)
    from nnAudio.features import STFT

    power = Squared(STFT(n_fft=n_fft, hop_length=hop_length, window=window, sr=sample_rate, pad_mode=PAD_MODE,
                         trainable=trainable, output_format="Magnitude", verbose=False))
    return power if filters is None else nn.Sequential(power, FilterBank(filters))


class MelFrontend(Frontend):
    """Log-mel spectrogram in dB (librosa's melspectrogram + power_to_db)."""

    def __init__(self, sample_rate: int, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128,
                 fmin: float = 0.0, fmax: float | None = None, window: str = "hann", top_db: float | None = 80.0,
                 backend: str = "torchaudio", trainable: bool = False):
        super().__init__(sample_rate, top_db)
        check_backend(backend, trainable)
        if backend == "nnaudio":
            from nnAudio.features import MelSpectrogram

            self.transform = MelSpectrogram(sr=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
                                            fmin=fmin, fmax=fmax, window=window, power=2.0, pad_mode=PAD_MODE,
                                            trainable_mel=trainable, trainable_STFT=trainable, verbose=False)
        else:
            import torchaudio

            # Slaney mel scale and area normalisation: librosa's defaults, as nnAudio uses.
            filters = torchaudio.functional.melscale_fbanks(
                n_fft // 2 + 1, fmin, sample_rate / 2 if fmax is None else fmax, n_mels, sample_rate,
                norm="slaney", mel_scale="slaney").T
            self.transform = BlockedSpectrogram(n_fft, hop_length, window, filters, db=True, top_db=top_db)


class MFCCFrontend(Frontend):
    """MFCCs (DCT-II, ortho) of the dB log-mel, as librosa.feature.mfcc."""

    def __init__(self, sample_rate: int, n_mfcc: int = 20, n_fft: int = 2048, hop_length: int = 512,
                 n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None, window: str = "hann",
                 top_db: float | None = 80.0, backend: str = "torchaudio", trainable: bool = False):
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
