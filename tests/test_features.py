"""Frontends: output shapes per feature and backend, finite on silence, float32 under autocast."""

from __future__ import annotations

import pytest
import torch

from mgr import MGRError
from mgr.features import build_frontend

SR = 8000


@pytest.mark.parametrize("backend", ["nnaudio", "torchaudio"])
@pytest.mark.parametrize(
    "feature,bins",
    [
        ({"name": "mel", "n_fft": 512, "hop_length": 256, "n_mels": 40}, 40),
        ({"name": "stft", "n_fft": 512, "hop_length": 256}, 257),
        ({"name": "mfcc", "n_fft": 512, "hop_length": 256, "n_mels": 40, "n_mfcc": 13}, 13),
    ],
)
def test_frontend_shapes(feature, bins, backend):
    frontend = build_frontend({**feature, "sample_rate": SR, "backend": backend})
    out = frontend(torch.randn(3, SR))
    assert out.shape == (3, 1, bins, 1 + SR // 256)  # centred frames, as librosa
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["mel", "stft", "mfcc"])
def test_silence_gives_finite_float32_under_autocast(name):
    frontend = build_frontend({"name": name, "sample_rate": SR, "n_fft": 512, "hop_length": 256})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = frontend(torch.zeros(2, SR))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_db_scale_and_top_db():
    frontend = build_frontend({"name": "mel", "sample_rate": SR, "n_fft": 512, "hop_length": 256, "top_db": 60.0})
    t = torch.arange(SR) / SR
    out = frontend(torch.sin(2 * torch.pi * 440 * t)[None])
    assert out.max() - out.min() == pytest.approx(60.0, abs=1e-3)


def test_unknown_feature_or_setting_is_a_clear_error():
    with pytest.raises(MGRError, match="Unknown feature name 'cqt2'"):
        build_frontend({"name": "cqt2", "sample_rate": SR})
    with pytest.raises(MGRError, match="Bad setting for feature=mel"):
        build_frontend({"name": "mel", "sample_rate": SR, "n_bins": 3})
