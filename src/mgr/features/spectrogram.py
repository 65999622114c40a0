"""Fourier-based frontends in dB: STFT, mel, MFCC (nnAudio or torchaudio) and
gammatone (nnAudio)."""

from __future__ import annotations

import torch

from mgr.features.base import Frontend, Squared, check_backend, window_fn

# Centred frames padded with zeros, as librosa >= 0.10 (both libraries default to reflect).
PAD_MODE = "constant"


class STFTFrontend(Frontend):
    """Linear-frequency power spectrogram in dB (n_fft // 2 + 1 bins)."""

    def __init__(self, sample_rate: int, n_fft: int = 2048, hop_length: int = 512, window: str = "hann",
                 top_db: float | None = 80.0, backend: str = "nnaudio", trainable: bool = False):
        super().__init__(sample_rate, top_db)
        self.transform = stft_power(sample_rate, n_fft, hop_length, window, backend, trainable)


def stft_power(sample_rate, n_fft, hop_length, window, backend, trainable=False):
    """A module: waveform [B, T] -> power spectrogram [B, n_fft // 2 + 1, frames], centred frames."""
    check_backend(backend)
    if backend == "nnaudio":
        from nnAudio.features import STFT

        return Squared(STFT(n_fft=n_fft, hop_length=hop_length, window=window, sr=sample_rate, pad_mode=PAD_MODE,
                            trainable=trainable, output_format="Magnitude", verbose=False))
    import torchaudio

    return torchaudio.transforms.Spectrogram(n_fft=n_fft, hop_length=hop_length, window_fn=window_fn(window),
                                             power=2.0, pad_mode=PAD_MODE)


class MelFrontend(Frontend):
    """Log-mel spectrogram in dB (librosa's melspectrogram + power_to_db)."""

    def __init__(self, sample_rate: int, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128,
                 fmin: float = 0.0, fmax: float | None = None, window: str = "hann", top_db: float | None = 80.0,
                 backend: str = "nnaudio", trainable: bool = False):
        super().__init__(sample_rate, top_db)
        check_backend(backend)
        if backend == "nnaudio":
            from nnAudio.features import MelSpectrogram

            self.transform = MelSpectrogram(sr=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
                                            fmin=fmin, fmax=fmax, window=window, power=2.0, pad_mode=PAD_MODE,
                                            trainable_mel=trainable, trainable_STFT=trainable, verbose=False)
        else:
            import torchaudio

            # Slaney mel scale and area normalisation: librosa's defaults, as nnAudio uses.
            self.transform = torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, f_min=fmin,
                f_max=fmax, window_fn=window_fn(window), power=2.0, norm="slaney", mel_scale="slaney",
                pad_mode=PAD_MODE)


class MFCCFrontend(Frontend):
    """MFCCs (DCT-II, ortho) of the dB log-mel, as librosa.feature.mfcc."""

    def __init__(self, sample_rate: int, n_mfcc: int = 20, n_fft: int = 2048, hop_length: int = 512,
                 n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None, window: str = "hann",
                 top_db: float | None = 80.0, backend: str = "nnaudio", trainable: bool = False):
        super().__init__(sample_rate, top_db)
        self.mel = MelFrontend(sample_rate, n_fft, hop_length, n_mels, fmin, fmax, window, top_db, backend, trainable)
        self.register_buffer("dct", _dct_matrix(n_mfcc, n_mels), persistent=False)

    def compute(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.einsum("cm,bmt->bct", self.dct, self.mel.compute(wave))


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
