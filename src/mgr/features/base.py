"""What every frontend shares: float32 computation, dB scaling, backend checks.

A frontend maps a waveform batch [B, T] to a feature map [B, 1, F, frames].
It lives inside the model, so features are computed per batch on the model's
device and saved with the checkpoint. The math always runs in float32, also
under bf16/fp16 autocast: a dB scale in half precision overflows and silent
input would give -inf.
"""

from __future__ import annotations

import torch
from torch import nn

from mgr import MGRError

AMIN = 1e-10  # power floor before the log (librosa's amin): a silent clip gives finite values


def power_to_db(power: torch.Tensor, top_db: float | None) -> torch.Tensor:
    """librosa.power_to_db with ref=1, clipped `top_db` below each example's peak."""
    db = 10.0 * torch.log10(torch.clamp(power, min=AMIN))
    if top_db is not None:
        peak = db.amax(dim=tuple(range(1, db.dim())), keepdim=True)
        db = torch.maximum(db, peak - top_db)
    return db


def normalize_frames(x: torch.Tensor) -> torch.Tensor:
    """librosa.util.normalize(norm=inf, axis=-2): each frame divided by its largest
    magnitude; all-zero frames stay zero."""
    peak = x.abs().amax(dim=-2, keepdim=True)
    return x / torch.where(peak > torch.finfo(x.dtype).tiny, peak, torch.ones_like(peak))


class Frontend(nn.Module):
    """Base: subclasses set `self.transform` (waveform -> power [B, F, frames], or dB when it
    has `db` set) or override `compute`."""

    def __init__(self, sample_rate: int, top_db: float | None = 80.0):
        super().__init__()
        self.sample_rate = sample_rate
        self.top_db = top_db

    def compute(self, wave: torch.Tensor) -> torch.Tensor:
        out = self.transform(wave)
        return out if getattr(self.transform, "db", False) else power_to_db(out, self.top_db)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return self.compute(wave.float()).unsqueeze(1)


class Squared(nn.Module):
    """Power from a module that returns magnitudes (nnAudio's output_format='Magnitude')."""

    def __init__(self, magnitude: nn.Module):
        super().__init__()
        self.magnitude = magnitude

    def forward(self, x):
        return self.magnitude(x) ** 2


class FilterBank(nn.Module):
    """Projects a spectrogram [B, F, frames] on filters [n, F]: [B, n, frames]."""

    def __init__(self, filters: torch.Tensor):
        super().__init__()
        self.register_buffer("filters", filters.float(), persistent=False)

    def forward(self, x):
        return self.filters @ x  # [n, F] @ [B, F, frames]


def check_backend(backend: str, trainable: bool = False) -> None:
    if backend not in ("nnaudio", "torch"):
        raise MGRError(f"feature.backend must be 'torch' or 'nnaudio', got {backend!r}.")
    if trainable and backend != "nnaudio":
        raise MGRError("feature.trainable=true needs feature.backend=nnaudio (the torch backend has no learnable kernels).")


def window_fn(name: str):
    windows = {"hann": torch.hann_window, "hamming": torch.hamming_window, "blackman": torch.blackman_window}
    if name not in windows:
        raise MGRError(f"feature.window={name!r} is not supported with the torch backend; use one of {sorted(windows)}.")
    return windows[name]


def check_below_nyquist(top_hz: float, sample_rate: int, what: str) -> None:
    if top_hz > sample_rate / 2:
        raise MGRError(
            f"{what} reaches {top_hz:.0f} Hz, above the Nyquist frequency {sample_rate / 2:.0f} Hz of "
            f"data.sample_rate={sample_rate}; lower the number of bins or fmin, or raise the sample rate."
        )
