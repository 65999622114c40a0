"""feature=descriptors against librosa: each descriptor of DescriptorFrontend is the one
benchmarks/suite/reference.py computes (librosa.feature.*, the same STFT settings).

Signals: the parity signals of tests/test_feature_parity.py under a noise floor 50-60 dB
below them, as recordings have. Measured (float32 torch against librosa's float32 STFT):
MFCC within 0.001 dB, chroma within 1e-6, ZCR and roll-off exact (roll-off to the bin),
centroid and bandwidth within 0.003 Hz, spectral contrast within 0.04 dB. Without the
floor, the synthetic tones leave contrast bands whose valleys are FFT rounding noise
(1e-9 of the peak) and both libraries' contrast there is noise: the algorithm itself is
then checked on one shared magnitude spectrogram, where it agrees to 1e-5 dB.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mgr import MGRError
from mgr.features import build_frontend

librosa = pytest.importorskip("librosa")

SR, N_FFT, HOP = 22050, 2048, 512
ALL = ["mfcc", "contrast", "chroma", "zcr", "centroid", "bandwidth", "rolloff"]
# Largest absolute difference allowed per descriptor (see the module docstring for the measured ones).
TOLERANCE = {"mfcc": 0.01, "contrast": 0.1, "chroma": 1e-5, "zcr": 0.0, "centroid": 0.05, "bandwidth": 0.05,
             "rolloff": 0.0}


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(SR * 3.0)) / SR
    out = {
        "sines": 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1318.5 * t),
        "chirp": 0.5 * np.sin(2 * np.pi * 50 * 3.0 / np.log(200) * (np.exp(t / 3.0 * np.log(200)) - 1)),
        "noise": 0.1 * rng.standard_normal(len(t)),
        "clicks": np.where(np.arange(len(t)) % 2205 < 40, 0.5, 0.0) * np.sign(np.sin(2 * np.pi * 3 * t)),
    }
    floor = 1e-3 * rng.standard_normal(len(t))
    signals = {name: (x + floor).astype(np.float32) for name, x in out.items()}
    signals["half_silent"] = np.concatenate([signals["noise"][: len(t) // 2], np.zeros(len(t) - len(t) // 2, np.float32)])
    return signals


SIGNALS = _signals()


def reference(y: np.ndarray) -> dict[str, np.ndarray]:
    """librosa's descriptors of `y`, as benchmarks/suite/reference.py computes them."""
    magnitude = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP))
    power = magnitude**2
    mel_db = librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=SR, n_mels=128))
    spectral = {"S": magnitude, "sr": SR, "n_fft": N_FFT, "hop_length": HOP}
    return {
        "mfcc": librosa.feature.mfcc(S=mel_db, n_mfcc=20),
        "contrast": librosa.feature.spectral_contrast(**spectral),
        "chroma": librosa.feature.chroma_stft(S=power, sr=SR, n_fft=N_FFT, hop_length=HOP, tuning=0.0),
        "zcr": librosa.feature.zero_crossing_rate(y, frame_length=N_FFT, hop_length=HOP),
        "centroid": librosa.feature.spectral_centroid(**spectral),
        "bandwidth": librosa.feature.spectral_bandwidth(**spectral),
        "rolloff": librosa.feature.spectral_rolloff(**spectral),
    }


def descriptors(names=ALL, **settings):
    return build_frontend({"name": "descriptors", "sample_rate": SR, "descriptors": names, **settings})


@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_every_descriptor_matches_librosa(signal):
    x = SIGNALS[signal]
    ours = descriptors()(torch.from_numpy(x)[None])[0, 0].numpy()
    expected = reference(x)
    assert ours.shape == (20 + 7 + 12 + 4, 1 + len(x) // HOP)
    row = 0
    for name in ALL:  # the bins, in the order of `descriptors`
        rows = len(expected[name])
        error = np.abs(ours[row : row + rows] - expected[name]).max()
        assert error <= TOLERANCE[name], f"{name}: largest difference {error:.3g} on {signal}"
        row += rows


def test_contrast_is_librosas_algorithm_on_the_same_spectrogram():
    """On pure tones the valleys are FFT rounding noise; on one shared magnitude it is librosa's."""
    frontend = descriptors(["contrast"])
    t = np.arange(SR * 2) / SR
    x = torch.from_numpy((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))[None]
    magnitude = frontend.power(x).sqrt()  # [1, bins, frames]
    expected = librosa.feature.spectral_contrast(S=magnitude[0].numpy(), sr=SR, n_fft=N_FFT)
    assert np.abs(frontend.contrast(magnitude.transpose(1, 2))[0].numpy() - expected).max() < 1e-4


def test_batched_examples_and_the_default_set():
    """A batch is its examples computed alone; the default set is the reference's 'base' (41 rows)."""
    frontend = build_frontend({"name": "descriptors", "sample_rate": SR})
    batch = torch.from_numpy(np.stack([SIGNALS["chirp"], SIGNALS["half_silent"]]))
    together = frontend(batch)
    assert together.shape == (2, 1, 20 + 7 + 12 + 1 + 1, 1 + batch.shape[1] // HOP)
    for i in range(2):
        assert torch.allclose(together[i], frontend(batch[i : i + 1])[0], atol=1e-4)
    assert torch.isfinite(frontend(torch.zeros(1, SR))).all()  # silence: finite values


def test_bad_settings_are_one_clear_error():
    with pytest.raises(MGRError, match="feature.descriptors=.*'tempo'"):
        descriptors(["mfcc", "tempo"])
    with pytest.raises(MGRError, match="Nyquist"):
        build_frontend({"name": "descriptors", "sample_rate": 8000})
