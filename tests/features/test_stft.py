"""mgr.features.stft.BlockedSpectrogram (the torch backend's core) against a plain
batched torch.stft: the blocking is an evaluation order, not a different result."""

from __future__ import annotations

import pytest
import torch

import mgr.features.stft as blocked
from mgr.features.base import power_to_db
from mgr.features.chroma import stft_chroma_filters

SR, N_FFT, HOP = 16000, 512, 128


def reference(wave, filters=None, db=False, top_db=None):
    spec = torch.stft(wave, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True, pad_mode="constant",
                      return_complex=True).abs() ** 2
    if filters is not None:
        spec = torch.einsum("nf,bft->bnt", filters, spec)
    return power_to_db(spec, top_db) if db else spec


def filter_banks():
    import librosa

    mel = torch.from_numpy(librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=40))
    return {"none": None, "mel": mel, "chroma": torch.from_numpy(stft_chroma_filters(SR, N_FFT)).float()}


@pytest.mark.parametrize("bank", ["none", "mel", "chroma"])
@pytest.mark.parametrize("seconds", [0.3, 2.0])  # short chunks share blocks; long clips span several
@pytest.mark.parametrize("db", [False, True])
def test_blocks_equal_one_batched_stft(monkeypatch, bank, seconds, db):
    monkeypatch.setattr(blocked, "BLOCK_FRAMES", 48)  # 2 s = 251 frames: 5 full blocks and a partial one
    torch.manual_seed(0)
    wave = torch.randn(5, int(SR * seconds)) * torch.linspace(0.01, 1.0, 5)[:, None]  # a different peak per example
    filters = filter_banks()[bank]
    module = blocked.BlockedSpectrogram(N_FFT, HOP, "hann", filters, db=db, top_db=50.0 if db else None)
    with torch.no_grad():
        got = module(wave)
    want = reference(wave, filters, db, 50.0)
    assert got.shape == want.shape == (5, want.shape[1], int(SR * seconds) // HOP + 1)
    if db:
        torch.testing.assert_close(got, want, atol=2e-3, rtol=0)
    else:
        torch.testing.assert_close(got, want, atol=1e-6 * want.abs().max().item(), rtol=1e-4)


def test_gradients_reach_the_waveform():
    filters = filter_banks()["mel"]
    module = blocked.BlockedSpectrogram(N_FFT, HOP, "hann", filters, db=True, top_db=80.0)
    wave = torch.randn(2, SR, requires_grad=True)
    out = module(wave)
    out.sum().backward()
    assert wave.grad is not None and wave.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(module(wave), out.detach())


def test_silence_is_finite():
    module = blocked.BlockedSpectrogram(N_FFT, HOP, db=True, top_db=80.0)
    assert torch.isfinite(module(torch.zeros(2, SR))).all()
