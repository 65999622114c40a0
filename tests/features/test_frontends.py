"""Frontends (mgr.features): output shapes per feature and backend, finite on silence, float32
under autocast, clear errors."""

from __future__ import annotations

import pytest
import torch

from mgr import MGRError
from mgr.features import FRONTENDS, build_frontend


SR = 16000


FEATURES = {  # settings -> expected number of bins
    "mel": ({"n_fft": 512, "hop_length": 256, "n_mels": 40}, 40),
    "stft": ({"n_fft": 512, "hop_length": 256}, 257),
    "mfcc": ({"n_fft": 512, "hop_length": 256, "n_mels": 40, "n_mfcc": 13}, 13),
    "cqt": ({"hop_length": 256, "n_bins": 60}, 60),
    "vqt": ({"hop_length": 256, "n_bins": 60, "bins_per_octave": 12}, 60),
    "gammatone": ({"n_fft": 512, "hop_length": 256, "n_bins": 32}, 32),
    "chroma": ({"hop_length": 256, "n_fft": 512}, 12),
    "tempogram": ({"hop_length": 256, "n_fft": 512, "win_length": 64}, 64),
    # 20 MFCCs, 7 contrast bands, 12 chroma, ZCR, centroid
    "descriptors": ({"hop_length": 256, "n_fft": 512, "n_mels": 40}, 41),
}


def test_every_frontend_is_covered():
    assert set(FEATURES) == set(FRONTENDS)


@pytest.mark.parametrize("name", sorted(FEATURES))
def test_frontend_shapes(name):
    settings, bins = FEATURES[name]
    out = build_frontend({"name": name, "sample_rate": SR, **settings})(torch.randn(3, SR))
    assert out.shape == (3, 1, bins, 1 + SR // 256)  # centred frames, as librosa
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["mel", "stft", "mfcc", "chroma", "tempogram"])
def test_nnaudio_backend_gives_the_same_shape(name):
    settings, bins = FEATURES[name]
    frontend = build_frontend({"name": name, "sample_rate": SR, "backend": "nnaudio", **settings})
    assert frontend(torch.randn(2, SR)).shape == (2, 1, bins, 1 + SR // 256)


@pytest.mark.parametrize("name", sorted(FEATURES))
def test_silence_gives_finite_float32_under_autocast(name):
    settings, _ = FEATURES[name]
    frontend = build_frontend({"name": name, "sample_rate": SR, **settings})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = frontend(torch.zeros(2, SR))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_db_scale_and_top_db():
    frontend = build_frontend({"name": "mel", "sample_rate": SR, "n_fft": 512, "hop_length": 256, "top_db": 60.0})
    t = torch.arange(SR) / SR
    out = frontend(torch.sin(2 * torch.pi * 440 * t)[None])
    assert out.max() - out.min() == pytest.approx(60.0, abs=1e-3)


def test_trainable_kernels_have_gradients():
    frontend = build_frontend({"name": "mel", "sample_rate": SR, "n_fft": 512, "hop_length": 256, "trainable": True,
                               "backend": "nnaudio"})
    frontend(torch.randn(2, SR)).mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in frontend.parameters())


def test_clear_errors():
    with pytest.raises(MGRError, match="Unknown feature name 'cqt2'"):
        build_frontend({"name": "cqt2", "sample_rate": SR})
    with pytest.raises(MGRError, match="Bad setting for feature=mel"):
        build_frontend({"name": "mel", "sample_rate": SR, "n_bins": 3})
    with pytest.raises(MGRError, match="above the Nyquist frequency 3000 Hz"):
        build_frontend({"name": "cqt", "sample_rate": 6000})
    with pytest.raises(MGRError, match="trainable=true needs feature.backend=nnaudio"):
        build_frontend({"name": "stft", "sample_rate": SR, "backend": "torch", "trainable": True})
    with pytest.raises(MGRError, match="'stft' or 'cqt'"):
        build_frontend({"name": "chroma", "sample_rate": SR, "source": "mel"})


def test_checkpoints_naming_the_backend_torchaudio_build_the_torch_backend():
    wave = torch.randn(2, SR)
    old = build_frontend({"name": "mel", "sample_rate": SR, "backend": "torchaudio"})
    assert torch.equal(old(wave), build_frontend({"name": "mel", "sample_rate": SR, "backend": "torch"})(wave))
