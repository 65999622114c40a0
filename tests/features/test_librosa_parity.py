"""Every frontend against librosa (the seeds' reference) on the same generated signals.

Tolerances, per feature family:
- stft, mel, mfcc, chroma, tempogram: the same algorithm in float32 instead of
  float64, so dB values agree to hundredths (correlation > 0.9999, median
  absolute error < 0.01 dB or 0.001 for the [0, 1]-scaled chroma/tempogram).
- cqt, vqt with backend=torch: librosa's own multirate algorithm
  (mgr.features.multirate, with soxr_hq's decimation filter and librosa's
  default sparsity=0.01), so it is held to float32 rounding over every frame,
  the ends included: correlation > 0.99999, median error < 0.001 dB, largest
  error < 0.1 dB (measured: correlation 1.000000, median <= 0.00001 dB, largest
  0.02 dB, at cells near the 80 dB floor; the bounds leave room for other FFT
  and BLAS builds). chroma from it: correlation > 0.99999, median < 0.0001,
  largest < 0.02 (measured: largest 0.005, where the chirp has left the CQT's
  range and the per-frame scaling to 1 magnifies float32 rounding).
- cqt, vqt with backend=nnaudio: librosa filters and downsamples octave by
  octave (soxr) and, by default, zeroes the smallest 1% of each kernel
  (sparsity=0.01); nnAudio convolves full kernels at the input rate. The two
  agree where the energy is and differ in the leakage skirts 40-80 dB below a
  pure tone's peak, so we compare with sparsity=0, over interior frames (the
  ends are padded differently), and require correlation > 0.98 and median
  error < 1.5 dB (measured: 0.988-0.998 and 0.04-1.0 dB; pure sines, mostly
  skirt, are the worst). chroma from it inherits this: where a frame's energy
  lies above the CQT's top bin (the end of the chirp) it holds only leakage,
  which the per-frame scaling to 1 blows up, so it gets correlation > 0.97 and
  median error < 0.005.
- gammatone: librosa has none; the test checks the filter bank's ordering.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch

from mgr import MGRError
from mgr.features import build_frontend

librosa = pytest.importorskip("librosa")

SR = 22050
SECONDS = 3.0


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(SR * SECONDS)) / SR
    f0, f1 = 50.0, 0.45 * SR
    out = {
        "sines": 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1318.5 * t) + 0.1 * np.sin(2 * np.pi * 3520 * t),
        "chirp": 0.5 * np.sin(2 * np.pi * f0 * SECONDS / np.log(f1 / f0) * (np.exp(t / SECONDS * np.log(f1 / f0)) - 1)),
        "noise": 0.1 * rng.standard_normal(len(t)),
    }
    chords = [[261.63, 329.63, 392.0], [220.0, 261.63, 329.63], [174.61, 220.0, 261.63], [196.0, 246.94, 293.66]]
    x, seg = np.zeros(len(t)), len(t) // 4
    for i, chord in enumerate(chords):  # C, Am, F, G with decaying harmonics: a chord progression
        tt = t[i * seg : (i + 1) * seg]
        x[i * seg : (i + 1) * seg] = sum(np.sin(2 * np.pi * f * k * tt) / k for f in chord for k in range(1, 5)) * np.exp(-2 * (tt - tt[0]))
    out["chords"] = 0.2 * x
    return {k: v.astype(np.float32) for k, v in out.items()}


SIGNALS = _signals()


@cache
def _frontend(settings: frozenset):
    return build_frontend(dict(settings))


def ours(feature: dict, x: np.ndarray) -> np.ndarray:
    """The frontend of these settings on x; one frontend per setting for the module, since building the
    constant-Q and chroma kernels costs more than applying them to the four signals."""
    return _frontend(frozenset({**feature, "sample_rate": SR}.items()))(torch.from_numpy(x)[None])[0, 0].numpy()


def agreement(a: np.ndarray, b: np.ndarray, trim: int = 0) -> tuple[float, float]:
    assert a.shape == b.shape
    if trim:
        a, b = a[:, trim:-trim], b[:, trim:-trim]
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1]), float(np.median(np.abs(a - b)))


def _db(power):
    return librosa.power_to_db(power, ref=1.0, top_db=80.0)


EXACT = {
    "stft": lambda x: _db(np.abs(librosa.stft(x, n_fft=2048, hop_length=512)) ** 2),
    "mel": lambda x: _db(librosa.feature.melspectrogram(y=x, sr=SR, n_fft=2048, hop_length=512, n_mels=128)),
    "mfcc": lambda x: librosa.feature.mfcc(y=x, sr=SR, n_mfcc=20, n_fft=2048, hop_length=512, n_mels=128),
}


@pytest.mark.parametrize("backend", ["nnaudio", "torch"])
@pytest.mark.parametrize("name", sorted(EXACT))
@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_fourier_features_match_librosa(name, backend, signal):
    x = SIGNALS[signal]
    corr, median = agreement(ours({"name": name, "backend": backend}, x), EXACT[name](x))
    assert corr > 0.9999 and median < 0.01, (corr, median)


@pytest.mark.parametrize("signal", sorted(SIGNALS))
@pytest.mark.parametrize("source, backend", [("stft", None), ("cqt", "nnaudio"), ("cqt", "torch")])
def test_chroma_matches_librosa(source, backend, signal):
    x = SIGNALS[signal]
    if source == "stft":
        reference = librosa.feature.chroma_stft(y=x, sr=SR, tuning=0.0)
        min_corr, max_median, max_error = 0.9999, 0.001, 1.0
    else:
        reference = librosa.feature.chroma_cqt(y=x, sr=SR, tuning=0.0)
        min_corr, max_median, max_error = (0.97, 0.005, 1.0) if backend == "nnaudio" else (0.99999, 1e-4, 0.02)
    result = ours({"name": "chroma", "source": source, **({"backend": backend} if backend else {})}, x)
    corr, median = agreement(result, reference)
    assert corr > min_corr and median < max_median and np.abs(result - reference).max() < max_error, (corr, median)


def test_chroma_of_a_chord_names_its_notes():
    t = np.arange(SR) / SR
    c_major = sum(np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0)).astype(np.float32)
    profile = ours({"name": "chroma"}, c_major).mean(axis=1)
    assert set(np.argsort(profile)[-3:]) == {0, 4, 7}  # C, E, G


@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_tempogram_matches_librosa(signal):
    x = SIGNALS[signal]
    corr, median = agreement(ours({"name": "tempogram"}, x), librosa.feature.tempogram(y=x, sr=SR, hop_length=512))
    assert corr > 0.9999 and median < 0.001, (corr, median)


def test_tempogram_finds_the_beat():
    period = 22  # frames between clicks: 117.4 BPM at hop 512
    clicks = np.zeros(SR * 8, dtype=np.float32)
    for start in range(0, len(clicks) - 256, period * 512):
        clicks[start : start + 256] = np.hanning(512)[256:]
    tempogram = ours({"name": "tempogram"}, clicks)
    assert 1 + np.argmax(tempogram[1:40, 100:250].mean(axis=1)) == period


@pytest.mark.parametrize("signal", sorted(SIGNALS))
@pytest.mark.parametrize("backend", ["nnaudio", "torch"])
@pytest.mark.parametrize("name", ["cqt", "vqt"])
def test_constant_q_matches_librosa(name, backend, signal):
    x = SIGNALS[signal]
    transform = librosa.cqt if name == "cqt" else librosa.vqt
    sparsity = 0.0 if backend == "nnaudio" else 0.01  # torch: librosa's default, as librosa computes it
    magnitude = np.abs(transform(x, sr=SR, hop_length=512, sparsity=sparsity))
    reference = librosa.amplitude_to_db(magnitude, ref=1.0, top_db=80.0)
    result = ours({"name": name, "backend": backend}, x)
    if backend == "nnaudio":
        corr, median = agreement(result, reference, trim=2)
        assert corr > 0.98 and median < 1.5, (corr, median)
    else:
        corr, median = agreement(result, reference)
        assert corr > 0.99999 and median < 0.001 and np.abs(result - reference).max() < 0.1, (corr, median)


@pytest.mark.parametrize("name", ["cqt", "vqt"])
def test_constant_q_backends_give_the_same_frames(name):
    frontends = [_frontend(frozenset({"name": name, "sample_rate": SR, "backend": backend}.items()))
                 for backend in ("nnaudio", "torch")]
    for samples in (512 * 43, SR, SR + 511, 5000):  # a multiple of the hop, others, a short clip
        x = torch.randn(2, samples)
        assert {frontend(x).shape for frontend in frontends} == {(2, 1, 84, samples // 512 + 1)}


def test_torch_constant_q_needs_a_hop_it_can_halve():
    with pytest.raises(MGRError, match=r"feature.hop_length=500 must be divisible by 2\*\*\(octaves - 1\) = 64"):
        build_frontend({"name": "cqt", "sample_rate": SR, "backend": "torch", "hop_length": 500})
    build_frontend({"name": "cqt", "sample_rate": SR, "backend": "nnaudio", "hop_length": 500})  # any hop


def test_gammatone_channels_rise_with_frequency():
    t = np.arange(SR) / SR
    peaks = [ours({"name": "gammatone"}, np.sin(2 * np.pi * f * t).astype(np.float32)).mean(axis=1).argmax()
             for f in (200, 500, 1000, 2000, 4000, 8000)]
    assert peaks == sorted(peaks) and len(set(peaks)) == len(peaks), peaks


@pytest.mark.parametrize("sample_rate, n_fft, n_mels, fmin, fmax",
                         [(22050, 2048, 128, 0.0, None), (12000, 512, 96, 0.0, None), (16000, 512, 128, 20.0, 7600.0),
                          (44100, 1024, 40, 100.0, None), (8000, 256, 20, 0.0, 4000.0)])
def test_mel_filters_equal_librosa(sample_rate, n_fft, n_mels, fmin, fmax):
    from mgr.features.spectrogram import mel_filters

    ours = mel_filters(sample_rate, n_fft, n_mels, fmin, fmax)
    theirs = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-7)  # measured: largest difference 4e-9
