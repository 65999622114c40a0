"""The classic frame descriptors of genre recognition (Tzanetakis & Cook 2002; seed report
004's baseline), stacked as the bins of one feature map: per frame, MFCCs, spectral
contrast, chroma, zero-crossing rate and spectral centroid, and on request spectral
bandwidth and roll-off. With net `stats` (mean and std over time) they are the clip
statistics the classic SVM baselines classify.

One power spectrogram (mgr.features.stft) feeds them all. Every descriptor follows
librosa's definition (the reference of benchmarks/suite/reference.py), in float32:
MFCCs of the dB log-mel (librosa.feature.mfcc), spectral_contrast of the magnitude
(octave bands from `contrast_fmin`, the mean of each band's top and bottom `quantile`
of bins, in dB), chroma_stft of the power (tuning fixed, as feature=chroma),
zero_crossing_rate of the waveform (frames padded with the edge sample, as librosa's),
and spectral_centroid, _bandwidth and _rolloff of the magnitude. The bins are in the
order of `descriptors`, each descriptor's rows in librosa's order; their scales differ
(dB, Hz, rates), so a model of them standardises them (the SVM heads do).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from mgr import MGRError
from mgr.features.base import FilterBank, Frontend, normalize_frames, power_to_db
from mgr.features.chroma import stft_chroma_filters
from mgr.features.spectrogram import _dct_matrix, mel_filters, stft_power

CONTRAST_TOP_DB = 80.0  # librosa.feature.spectral_contrast's power_to_db default, whatever top_db says
ZCR_THRESHOLD = 1e-10  # librosa.zero_crossings: samples this close to zero count as positive
NAMES = ("mfcc", "contrast", "chroma", "zcr", "centroid", "bandwidth", "rolloff")
N_BANDS, CONTRAST_FMIN = 6, 200.0  # librosa.feature.spectral_contrast's defaults


def bands_below_nyquist(sample_rate: int, n_bands: int = N_BANDS, fmin: float = CONTRAST_FMIN) -> int:
    """The most contrast octaves, up to `n_bands`, whose lower edges (fmin * 2**k) lie below the
    Nyquist frequency: librosa's 6 from 200 Hz need a rate above 12.8 kHz, 8 kHz audio holds 5."""
    return max(1, min(n_bands, math.ceil(math.log2(sample_rate / 2 / fmin))))


class DescriptorFrontend(Frontend):
    def __init__(self, sample_rate: int, descriptors: list[str] = ("mfcc", "contrast", "chroma", "zcr", "centroid"),
                 n_fft: int = 2048, hop_length: int = 512, window: str = "hann", backend: str = "torch",
                 n_mfcc: int = 20, n_mels: int = 128, top_db: float | None = 80.0, n_bands: int = N_BANDS,
                 contrast_fmin: float = CONTRAST_FMIN, quantile: float = 0.02, n_chroma: int = 12, tuning: float = 0.0,
                 roll_percent: float = 0.85):
        super().__init__(sample_rate, top_db)
        unknown = [d for d in descriptors if d not in NAMES]
        if unknown or not descriptors or len(set(descriptors)) != len(descriptors):
            raise MGRError(f"feature.descriptors={list(descriptors)} must name each of {', '.join(NAMES)} at most "
                           "once, and at least one.")
        self.descriptors = list(descriptors)
        self.n_fft, self.hop_length, self.roll_percent = n_fft, hop_length, roll_percent
        self.power = stft_power(sample_rate, n_fft, hop_length, window, backend)
        self.mel = FilterBank(torch.from_numpy(mel_filters(sample_rate, n_fft, n_mels)))
        self.register_buffer("dct", _dct_matrix(n_mfcc, n_mels), persistent=False)
        self.chroma = FilterBank(torch.from_numpy(stft_chroma_filters(sample_rate, n_fft, n_chroma, tuning)))
        self.bands = contrast_bands(sample_rate, n_fft, n_bands, contrast_fmin, quantile)
        freq = torch.from_numpy(np.fft.rfftfreq(n_fft, 1.0 / sample_rate)).float()
        self.register_buffer("freq", freq, persistent=False)  # of each bin, Hz

    def compute(self, wave: torch.Tensor) -> torch.Tensor:
        power = self.power(wave)  # [B, bins, frames]
        # The magnitude's descriptors reduce over bins: frames-first, each frame's bins contiguous (5x faster).
        magnitude = power.transpose(1, 2).contiguous().sqrt_()  # [B, frames, bins]
        rows = []
        for name in self.descriptors:
            if name == "mfcc":
                rows.append(self.dct @ power_to_db(self.mel(power), self.top_db))
            elif name == "contrast":
                rows.append(self.contrast(magnitude))
            elif name == "chroma":
                rows.append(normalize_frames(self.chroma(power)))
            elif name == "zcr":
                rows.append(self.zero_crossing_rate(wave))
            else:
                rows.append(self.spectral_shape(magnitude, name)[:, None])
        return torch.cat(rows, dim=1)

    def contrast(self, magnitude: torch.Tensor) -> torch.Tensor:
        """librosa.feature.spectral_contrast of the magnitude [B, frames, bins]: [B, n_bands + 1, frames]."""
        peaks, valleys = [], []
        for lo, hi, k in self.bands:  # the k smallest and largest bins: topk, not a full sort
            band = magnitude[..., lo:hi]
            valleys.append(band.topk(k, dim=-1, largest=False, sorted=False).values.mean(dim=-1))
            peaks.append(band.topk(k, dim=-1, sorted=False).values.mean(dim=-1))
        # librosa's power_to_db of the magnitudes: each example's top_db floor over all bands.
        return (power_to_db(torch.stack(peaks, 1), CONTRAST_TOP_DB)
                - power_to_db(torch.stack(valleys, 1), CONTRAST_TOP_DB))

    def spectral_shape(self, magnitude: torch.Tensor, name: str) -> torch.Tensor:
        """librosa.feature.spectral_centroid, _bandwidth (p=2) or _rolloff of the magnitude
        [B, frames, bins]: [B, frames], in Hz."""
        if name == "rolloff":  # the lowest bin where the cumulative magnitude reaches roll_percent of it all
            cumulative = magnitude.cumsum(dim=-1)
            reached = cumulative >= self.roll_percent * cumulative[..., -1:]
            return self.freq[reached.int().argmax(dim=-1)]
        # librosa.util.normalize(norm=1): each frame divided by its sum; silent frames as they are
        total = magnitude.sum(dim=-1, keepdim=True)
        weights = magnitude / torch.where(total >= torch.finfo(total.dtype).tiny, total, torch.ones_like(total))
        centroid = weights @ self.freq
        if name == "centroid":
            return centroid
        return (weights * (self.freq - centroid[..., None]).square()).sum(dim=-1).sqrt()

    def zero_crossing_rate(self, wave: torch.Tensor) -> torch.Tensor:
        """librosa.feature.zero_crossing_rate: the share of sign changes between neighbouring
        samples of each centred frame of n_fft samples, [B, 1, frames]."""
        half = self.n_fft // 2
        padded = F.pad(wave[:, None], (half, half), mode="replicate")[:, 0]
        negative = padded < -ZCR_THRESHOLD
        changes = F.pad((negative[:, 1:] != negative[:, :-1]).int().cumsum(1), (1, 0))  # exact integer counts
        starts = torch.arange(wave.shape[-1] // self.hop_length + 1, device=wave.device) * self.hop_length
        # the n_fft - 1 neighbour pairs inside frame t; librosa divides by the frame's length
        return ((changes[:, starts + self.n_fft - 1] - changes[:, starts]).float() / self.n_fft)[:, None]


def contrast_bands(sample_rate: int, n_fft: int, n_bands: int, fmin: float, quantile: float) -> list[tuple[int, int, int]]:
    """librosa.feature.spectral_contrast's bands as (first bin, end bin, bins averaged): octaves
    from fmin (below fmin the first), each widened by one bin below, the last to the top; each
    but the last drops its top bin, and the count averaged is rounded from the widened band's."""
    freq = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = np.zeros(n_bands + 2)
    edges[1:] = fmin * 2.0 ** np.arange(n_bands + 1)
    if np.any(edges[:-1] >= sample_rate / 2):
        raise MGRError(f"feature.contrast_fmin={fmin:g} with n_bands={n_bands} reaches past the Nyquist frequency "
                       f"{sample_rate / 2:g} Hz; lower them.")
    bands = []
    for k, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        inside = np.flatnonzero((freq >= low) & (freq <= high))
        if len(inside) == 0:
            raise MGRError(f"feature.n_fft={n_fft} is too small for spectral contrast bands from "
                           f"{fmin:g} Hz: band {k} holds no FFT bin; raise n_fft or contrast_fmin.")
        first = inside[0] - 1 if k > 0 else inside[0]
        end = len(freq) if k == n_bands else inside[-1] + 1
        count = end - first
        bands.append((int(first), int(end - 1 if k < n_bands else end), max(1, int(np.rint(quantile * count)))))
    return bands
