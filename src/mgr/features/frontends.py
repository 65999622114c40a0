"""Feature frontends: waveform batch [B, T] -> dB feature map [B, 1, F, frames].

They live inside the model, so features are computed per batch on the model's
device and saved with the checkpoint. nnAudio is the default backend
(`feature.backend=torchaudio` is the alternative for stft/mel/mfcc). The math
always runs in float32, also under bf16/fp16 autocast: a dB scale in half
precision overflows and silent input would give -inf.
"""

from __future__ import annotations

import torch
from torch import nn

from mgr import MGRError

AMIN = 1e-10  # power floor before the log: a fully silent clip gives finite values


def power_to_db(power: torch.Tensor, top_db: float | None) -> torch.Tensor:
    """librosa.power_to_db with ref=1 and top_db clipping per example."""
    db = 10.0 * torch.log10(torch.clamp(power, min=AMIN))
    if top_db is not None:
        peak = db.amax(dim=tuple(range(1, db.dim())), keepdim=True)
        db = torch.maximum(db, peak - top_db)
    return db


class Frontend(nn.Module):
    """Base: subclasses set `self.transform` (returns power [B, F, frames]) or override `compute`."""

    def __init__(self, sample_rate: int, top_db: float | None = 80.0):
        super().__init__()
        self.sample_rate = sample_rate
        self.top_db = top_db

    def compute(self, wave: torch.Tensor) -> torch.Tensor:
        return power_to_db(self.transform(wave), self.top_db)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return self.compute(wave.float()).unsqueeze(1)


def _check_backend(backend: str) -> None:
    if backend not in ("nnaudio", "torchaudio"):
        raise MGRError(f"feature.backend must be 'nnaudio' or 'torchaudio', got {backend!r}.")


class STFTFrontend(Frontend):
    """Linear-frequency power spectrogram in dB (n_fft // 2 + 1 bins)."""

    def __init__(self, sample_rate: int, n_fft: int = 2048, hop_length: int = 512, window: str = "hann",
                 top_db: float | None = 80.0, backend: str = "nnaudio", trainable: bool = False):
        super().__init__(sample_rate, top_db)
        _check_backend(backend)
        if backend == "nnaudio":
            from nnAudio.features import STFT

            stft = STFT(n_fft=n_fft, hop_length=hop_length, window=window, sr=sample_rate,
                        trainable=trainable, output_format="Magnitude", verbose=False)
            self.transform = _Squared(stft)
        else:
            import torchaudio

            self.transform = torchaudio.transforms.Spectrogram(
                n_fft=n_fft, hop_length=hop_length, window_fn=_window_fn(window), power=2.0)


class MelFrontend(Frontend):
    """Log-mel spectrogram in dB (librosa's melspectrogram + power_to_db)."""

    def __init__(self, sample_rate: int, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128,
                 fmin: float = 0.0, fmax: float | None = None, window: str = "hann", top_db: float | None = 80.0,
                 backend: str = "nnaudio", trainable: bool = False):
        super().__init__(sample_rate, top_db)
        _check_backend(backend)
        if backend == "nnaudio":
            from nnAudio.features import MelSpectrogram

            self.transform = MelSpectrogram(sr=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
                                            fmin=fmin, fmax=fmax, window=window, power=2.0,
                                            trainable_mel=trainable, trainable_STFT=trainable, verbose=False)
        else:
            import torchaudio

            # Slaney mel scale and area normalisation: librosa's defaults, as nnAudio uses.
            self.transform = torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, f_min=fmin,
                f_max=fmax, window_fn=_window_fn(window), power=2.0, norm="slaney", mel_scale="slaney")


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


class _Squared(nn.Module):
    def __init__(self, magnitude: nn.Module):
        super().__init__()
        self.magnitude = magnitude

    def forward(self, x):
        return self.magnitude(x) ** 2


def _window_fn(name: str):
    windows = {"hann": torch.hann_window, "hamming": torch.hamming_window, "blackman": torch.blackman_window}
    if name not in windows:
        raise MGRError(f"feature.window={name!r} is not supported with the torchaudio backend; use one of {sorted(windows)}.")
    return windows[name]


def _dct_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix [n_out, n_in] (scipy.fft.dct(norm='ortho'))."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    m = torch.cos(torch.pi / n_in * (n + 0.5) * k) * (2.0 / n_in) ** 0.5
    m[0] /= 2**0.5
    return m.float()


FRONTENDS = {"stft": STFTFrontend, "mel": MelFrontend, "mfcc": MFCCFrontend}


def build_frontend(feature: dict) -> Frontend:
    """Build from plain config values: {'name': 'mel', 'sample_rate': 22050, ...}."""
    feature = dict(feature)
    name = feature.pop("name", None)
    if name not in FRONTENDS:
        raise MGRError(f"Unknown feature name {name!r}; available: {', '.join(sorted(FRONTENDS))}.")
    try:
        return FRONTENDS[name](**feature)
    except TypeError as e:
        raise MGRError(f"Bad setting for feature={name}: {e}.") from None
