"""librosa's multirate variable-Q transform (librosa.vqt; librosa.cqt is gamma=0) in torch.

As librosa: octave by octave from the top, the octave's wavelet filters are built at the
current sample rate and applied to centred, zero-padded frames of n_fft samples; then the
signal is low-passed and decimated by 2 and the hop halves; the octaves are stacked and each
bin divided by the square root of its filter length (scale=True). Two steps are computed
differently, with the same math:

- Filtering: librosa takes an STFT of each frame (window 'ones') and multiplies it by the
  octave's FFT filter basis. Both steps are linear in the frame, so they fold into one real
  kernel of n_fft taps per bin (real and imaginary part): one strided conv1d per octave
  instead of an FFT of every frame, 3-4x faster on CPU for 36 bins per octave.
- Decimation: librosa resamples with soxr_hq, a linear-phase FIR flat to 91.3% of the new
  Nyquist frequency and 140 dB down at it: ~380 taps. On CPU a conv1d with even 15 taps (or
  torchaudio's resample) takes as long for the first octave alone as this whole transform,
  so we apply soxr's own taps (read off its impulse response in __init__) by FFT: rfft,
  multiply by the filter's response up to the new Nyquist frequency, irfft at half the
  length. This matches librosa to float32 rounding; a raised-cosine cut over the same
  transition band did not (up to 1.5 dB off), since the lower octaves' filters and the
  frames at the clip's ends see the transition band.

Where librosa downsamples early by 4 or more in one soxr step (when the top filter ends below
sample_rate / 16: 5 octaves or fewer from C1 at 22.05 kHz), we take steps of 2; soxr's
multi-stage filter differs in the frames near the clip's ends (0.5 dB at 4x, 10 dB at 16x)
and, from 32x, in the leakage floor far below the peak.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from mgr import MGRError
from mgr.features.base import window_fn

# librosa.filters.WINDOW_BANDWIDTHS: how far above its centre a filter reaches (early downsampling)
WINDOW_BANDWIDTH = {"hann": 1.50018310546875, "hamming": 1.3629455320350348, "blackman": 1.7269681554262326}
# Half-length kept of soxr_hq's decimation filter: its taps are below 1e-7 of the peak beyond 192.
HALF_TAPS = 256


def octave_kernel(sample_rate: float, freqs: np.ndarray, alpha: float, gamma: float, filter_scale: float,
                  window: str, sparsity: float) -> np.ndarray:
    """librosa's __vqt_filter_fft folded with the STFT: a complex [n_fft, bins] kernel for frames."""
    lengths = filter_scale / alpha * sample_rate / (freqs + gamma / alpha)  # librosa.filters.wavelet_lengths
    n_fft = 2 ** math.ceil(math.log2(lengths.max()))
    basis = np.zeros((len(freqs), n_fft), dtype=complex)
    for row, length, freq in zip(basis, lengths, freqs):
        n = np.arange(-length // 2, length // 2)  # librosa.filters.wavelet: ceil(length) taps, centred
        wavelet = np.exp(2j * np.pi * freq / sample_rate * n) * window_fn(window)(len(n), dtype=torch.float64).numpy()
        start = (n_fft - len(n)) // 2
        row[start : start + len(n)] = wavelet / np.abs(wavelet).sum() * length / n_fft  # norm=1, then lengths / n_fft
    fft_basis = sparsify_rows(np.fft.fft(basis, axis=1)[:, : n_fft // 2 + 1], sparsity)
    # frame -> rfft -> basis as one matrix
    dft = np.exp(-2j * np.pi * np.outer(np.arange(n_fft // 2 + 1), np.arange(n_fft)) / n_fft)
    return (fft_basis @ dft).T


def sparsify_rows(x: np.ndarray, quantile: float) -> np.ndarray:
    """librosa.util.sparsify_rows: zero the smallest entries of each row, together `quantile` of its L1 norm."""
    mags = np.abs(x)
    mag_sort = np.sort(mags, axis=1)
    cumulative = np.cumsum(mag_sort / mags.sum(axis=1, keepdims=True), axis=1)
    threshold = mag_sort[np.arange(len(x)), np.argmin(cumulative < quantile, axis=1)]
    return np.where(mags >= threshold[:, None], x, 0)


def soxr_hq_taps() -> np.ndarray:
    """The FIR soxr_hq decimates by 2 with, h[-HALF_TAPS..HALF_TAPS] in y[n] = sum_j h[j] x[2n - j]
    (soxr is linear and shift-invariant by 2, so two impulses give every tap)."""
    import soxr

    taps = np.zeros(2 * HALF_TAPS + 1)
    for phase in (0, 1):
        impulse = np.zeros(8 * HALF_TAPS)
        impulse[4 * HALF_TAPS + phase] = 1.0
        response = soxr.resample(impulse, 2, 1, quality="soxr_hq")
        j = 2 * np.arange(len(response)) - 4 * HALF_TAPS - phase
        keep = np.abs(j) <= HALF_TAPS
        taps[j[keep] + HALF_TAPS] = response[keep]
    return taps


def decimate(signal: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """[..., T] -> [..., ceil(T / 2)] as soxr_hq (taps from soxr_hq_taps), but twice as loud:
    an irfft at half the length does not halve the amplitude."""
    length = signal.shape[-1]
    size = fft_size(length + 2 * HALF_TAPS)  # room for the taps, and zeros behind the signal: no wrap-around
    bins = size // 4 + 1  # up to the new Nyquist frequency
    centred = torch.cat([taps[HALF_TAPS:], taps.new_zeros(size - len(taps)), taps[:HALF_TAPS]])
    response = torch.fft.rfft(centred)[:bins].real  # zero phase: the taps are symmetric
    spectrum = torch.fft.rfft(signal, n=size)[..., :bins] * response
    return torch.fft.irfft(spectrum, n=size // 2)[..., : -(-length // 2)]


def fft_size(n: int) -> int:
    """The smallest even number >= n without a prime factor above 5: a fast FFT length."""
    m = -(-n // 2)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return 2 * m
        m += 1


class MultirateVQT(nn.Module):
    """Waveform [B, T] -> VQT power |V|^2 [B, n_bins, T // hop_length + 1], as librosa.vqt (gamma=0: librosa.cqt)
    with its defaults: norm=1, scale=True, pad_mode='constant', res_type='soxr_hq', sparsity=0.01."""

    def __init__(self, sample_rate: int, hop_length: int, fmin: float, n_bins: int, bins_per_octave: int,
                 gamma: float = 0.0, filter_scale: float = 1.0, window: str = "hann", sparsity: float = 0.01):
        super().__init__()
        n_octaves = math.ceil(n_bins / bins_per_octave)
        if hop_length % 2 ** (n_octaves - 1):
            raise MGRError(f"feature.hop_length={hop_length} must be divisible by 2**(octaves - 1) = "
                           f"{2 ** (n_octaves - 1)} for backend=torch, which computes each of the "
                           f"{n_octaves} octaves at half the previous rate; use backend=nnaudio for any hop.")
        window_fn(window)  # a clear error for windows we cannot build
        freqs = fmin * 2.0 ** (np.arange(n_bins) / bins_per_octave)
        r = 2.0 ** (2 / bins_per_octave)
        alpha = (r - 1) / (r + 1)  # librosa's relative bandwidth of equally spaced bins

        # librosa's early downsampling: whole octaves of headroom above the top filter are
        # decimated away first, as far as the hop allows
        cutoff = freqs[-1] * (1 + 0.5 * WINDOW_BANDWIDTH[window] * alpha / filter_scale) + 0.5 * gamma
        spare_twos = (hop_length & -hop_length).bit_length() - 1 - (n_octaves - 1)
        self.early = min(max(0, math.ceil(math.log2(sample_rate / 2 / cutoff)) - 2), spare_twos)
        rate = sample_rate / 2**self.early

        self.hop_length = hop_length
        self.n_octaves = n_octaves
        self.register_buffer("taps", torch.from_numpy(soxr_hq_taps()).float(), persistent=False)
        for octave in range(n_octaves):
            top = n_bins - octave * bins_per_octave
            octave_freqs = freqs[max(0, top - bins_per_octave) : top]
            kernel = octave_kernel(rate / 2**octave, octave_freqs, alpha, gamma, filter_scale, window, sparsity)
            # scale=True: divide by sqrt(filter length) at the rate after early downsampling.
            # Our signal gains 2 per decimation (see decimate), as librosa's signal and basis
            # together per octave (sqrt(2) from resampling with scale=True, sqrt(2) on the basis);
            # but librosa's early downsampling by 2**early gains only sqrt(2**early).
            lengths = filter_scale / alpha * rate / (octave_freqs + gamma / alpha)
            kernel = kernel / np.sqrt(lengths) / 2 ** (self.early / 2)
            kernel = np.concatenate([kernel.real, kernel.imag], axis=1).T[:, None]  # conv1d weights, real parts first
            self.register_buffer(f"kernel{octave}", torch.from_numpy(kernel).float(), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        n_frames = wave.shape[-1] // self.hop_length + 1
        signal = wave
        for _ in range(self.early):  # librosa: one soxr step by 2**early (see the module docstring)
            signal = decimate(signal, self.taps)
        octaves, hop = [], self.hop_length // 2**self.early
        for octave in range(self.n_octaves):
            if octave:
                signal, hop = decimate(signal, self.taps), hop // 2
            kernel = getattr(self, f"kernel{octave}")  # [2 * bins, 1, n_fft]
            # centred frames, zero-padded at the ends: conv1d's own padding spares a padded copy
            response = nn.functional.conv1d(signal[:, None], kernel, stride=hop, padding=kernel.shape[-1] // 2)
            real, imag = response[..., :n_frames].chunk(2, dim=1)  # [B, bins, frames] each
            octaves.append(real**2 + imag**2)
        return torch.cat(octaves[::-1], dim=1)  # bins from low to high
