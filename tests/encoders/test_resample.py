"""The torch resampler of pretrained encoders: soxr's very-high-quality output on band-limited
audio, for rates up, down and by awkward ratios, on any batch size."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
import torch

from mgr.encoders.resample import Resampler


def band_limited(rate: int, below: float, seconds: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(rate)
    n = int(rate * seconds)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[np.fft.rfftfreq(n, 1 / rate) > below] = 0
    return np.fft.irfft(spectrum, n).astype(np.float32)


@pytest.mark.parametrize("from_rate,to_rate", [(8000, 16000), (22050, 24000), (22050, 16000), (44100, 16000),
                                               (16000, 48000), (24000, 8000)])
def test_matches_soxr_away_from_the_edges(from_rate, to_rate):
    x = band_limited(from_rate, 0.4 * min(from_rate, to_rate))
    reference = soxr.resample(x, from_rate, to_rate, quality="VHQ")
    y = Resampler(from_rate, to_rate)(torch.from_numpy(x)[None].repeat(3, 1)).numpy()
    assert y.shape == (3, len(reference))
    edge = len(reference) // 10  # both filters see the clip's ends differently
    error = np.abs(y[:, edge:-edge] - reference[edge:-edge]).max() / np.abs(reference).max()
    assert error < 1e-3
    assert np.array_equal(y[0], y[2])


def test_the_same_rate_is_the_identity_and_lengths_round_up():
    wave = torch.randn(2, 1000)
    assert Resampler(16000, 16000)(wave) is wave
    assert Resampler(22050, 24000)(torch.randn(2, 1001)).shape == (2, 1090)  # ceil(1001 * 160 / 147)
