"""Chroma: energy folded onto 12 pitch classes, from the STFT (librosa.feature.chroma_stft)
or from a CQT (librosa.feature.chroma_cqt); each frame scaled to a maximum of 1.

Tuning is fixed at A440 (`tuning` in cents/100 of a bin shifts it); librosa
estimates it per clip unless told, which would make features depend on the batch.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mgr import MGRError
from mgr.features.base import FilterBank, Frontend, normalize_frames
from mgr.features.constant_q import C1_HZ, cqt_power
from mgr.features.spectrogram import stft_power


def stft_chroma_filters(sample_rate: int, n_fft: int, n_chroma: int = 12, tuning: float = 0.0,
                        ctroct: float = 5.0, octwidth: float | None = 2.0) -> np.ndarray:
    """librosa.filters.chroma: Gaussian bumps per pitch class over the FFT bins, [n_chroma, n_fft//2+1]."""
    frequencies = np.linspace(0, sample_rate, n_fft, endpoint=False)[1:]
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    frqbins = n_chroma * np.log2(frequencies / (a440 / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    d = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    half = np.round(float(n_chroma) / 2)
    d = np.remainder(d + half + 10 * n_chroma, n_chroma) - half
    wts = np.exp(-0.5 * (2 * d / np.tile(binwidthbins, (n_chroma, 1))) ** 2)
    wts /= np.linalg.norm(wts, axis=0, keepdims=True)
    if octwidth is not None:
        wts *= np.tile(np.exp(-0.5 * (((frqbins / n_chroma - ctroct) / octwidth) ** 2)), (n_chroma, 1))
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)  # start at C, not A
    return np.ascontiguousarray(wts[:, : 1 + n_fft // 2])


def cqt_to_chroma_filters(n_input: int, bins_per_octave: int, n_chroma: int = 12, fmin: float = C1_HZ) -> np.ndarray:
    """librosa.filters.cq_to_chroma: sums the CQT bins of each pitch class, [n_chroma, n_input]."""
    n_merge = bins_per_octave // n_chroma
    wts = np.repeat(np.eye(n_chroma), n_merge, axis=1)
    wts = np.roll(wts, -(n_merge // 2), axis=1)  # centre each pitch class on its bins
    wts = np.tile(wts, math.ceil(n_input / bins_per_octave))[:, :n_input]
    midi_0 = np.mod(12 * (np.log2(fmin) - np.log2(440.0)) + 69, 12)
    return np.roll(wts, int(np.round(midi_0 * n_chroma / 12)), axis=0)


class ChromaFrontend(Frontend):
    def __init__(self, sample_rate: int, source: str = "stft", n_chroma: int = 12, hop_length: int = 512,
                 n_fft: int = 2048, window: str = "hann", backend: str = "torch", fmin: float = C1_HZ,
                 n_octaves: int = 7, bins_per_octave: int = 36, tuning: float = 0.0):
        super().__init__(sample_rate, top_db=None)
        if source == "stft":
            # chroma_stft folds the power spectrogram, inside the spectrogram's blocks
            filters = torch.from_numpy(stft_chroma_filters(sample_rate, n_fft, n_chroma, tuning))
            self.spectrum = stft_power(sample_rate, n_fft, hop_length, window, backend, filters=filters)
            self.fold = None
        elif source == "cqt":
            if bins_per_octave % n_chroma:
                raise MGRError(f"feature.bins_per_octave={bins_per_octave} must be a multiple of n_chroma={n_chroma}.")
            fmin = fmin * 2 ** (tuning / bins_per_octave)
            n_bins = n_octaves * bins_per_octave
            self.spectrum = cqt_power(sample_rate, hop_length, fmin, n_bins, bins_per_octave, window=window, backend=backend)
            # chroma_cqt folds CQT magnitudes
            self.fold = FilterBank(torch.from_numpy(cqt_to_chroma_filters(n_bins, bins_per_octave, n_chroma, fmin)))
        else:
            raise MGRError(f"feature.source must be 'stft' or 'cqt', got {source!r}.")

    def compute(self, wave: torch.Tensor) -> torch.Tensor:
        chroma = self.spectrum(wave)
        if self.fold is not None:
            chroma = self.fold(chroma.sqrt())
        return normalize_frames(chroma)
