"""mgr.features.multirate: librosa's multirate CQT/VQT in torch (backend=torch).
Its agreement with librosa.cqt / vqt / chroma_cqt is in tests/test_feature_parity.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mgr.features.constant_q import C1_HZ
from mgr.features.multirate import MultirateVQT, decimate, soxr_hq_taps

SR = 22050


def test_a_tone_peaks_at_its_bin_in_every_octave():
    bins = [12 * octave + 9 for octave in range(7)]  # A1 ... A7
    t = np.arange(2 * SR) / SR
    tones = np.stack([np.sin(2 * np.pi * C1_HZ * 2 ** (b / 12) * t) for b in bins]).astype(np.float32)
    power = MultirateVQT(SR, 512, C1_HZ, 84, 12)(torch.from_numpy(tones))
    assert power.shape == (7, 84, 2 * SR // 512 + 1)
    assert power[..., 10:-10].mean(dim=-1).argmax(dim=-1).tolist() == bins


def test_a_batch_gives_what_each_example_gives_alone():
    waves = torch.randn(3, SR + 123)
    cqt = MultirateVQT(SR, 256, C1_HZ, 84, 12)
    batch = cqt(waves)
    alone = torch.cat([cqt(w[None]) for w in waves])
    torch.testing.assert_close(batch, alone, rtol=1e-4, atol=1e-6 * float(alone.max()))


def test_decimation_is_soxr_hq():
    soxr = pytest.importorskip("soxr")
    x = np.random.default_rng(0).standard_normal(10001).astype(np.float32)
    taps = soxr_hq_taps()
    assert np.allclose(taps, taps[::-1], atol=1e-7) and abs(taps.sum() - 1) < 1e-6  # zero phase, unit gain
    ours = decimate(torch.from_numpy(x)[None], torch.from_numpy(taps).float())[0].numpy() / 2  # it is twice as loud
    theirs = soxr.resample(x, 2, 1, quality="soxr_hq")
    assert ours.shape == theirs.shape == (5001,)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("n_bins, early", [(72, 1), (60, 2)])
def test_early_downsampling_matches_librosa(n_bins, early):
    librosa = pytest.importorskip("librosa")
    x = np.random.default_rng(1).standard_normal(3 * SR).astype(np.float32)
    cqt = MultirateVQT(SR, 512, C1_HZ, n_bins, 12)
    assert cqt.early == early
    ours = cqt(torch.from_numpy(x)[None])[0].numpy()
    reference = np.abs(librosa.cqt(x, sr=SR, n_bins=n_bins)) ** 2
    assert ours.shape == reference.shape
    # early=2: librosa decimates by 4 in one soxr step, we in two steps of 2 (measured: median
    # 4e-6 dB, largest 0.05 dB away from the ends, 0.5 dB in the last frame)
    error_db = np.abs(10 * np.log10(ours / reference))
    assert np.median(error_db) < 1e-4 and error_db[:, 3:-3].max() < 0.1, (np.median(error_db), error_db.max())


def test_the_filters_are_not_saved_with_the_checkpoint():
    # built in __init__ from the settings: non-persistent buffers follow .to(device) but stay out of state_dict
    cqt = MultirateVQT(SR, 512, C1_HZ, 84, 12)
    assert len(list(cqt.buffers())) == 8 and not cqt.state_dict()
