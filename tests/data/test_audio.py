"""mgr.data.audio: any file decoded to mono at the asked rate; a broken file is a DecodeError."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import write_wav
from mgr.data.audio import DecodeError, load_audio


def test_load_audio_downmixes_and_resamples(tmp_path):
    t = np.arange(44100) / 44100
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = write_wav(tmp_path / "stereo.flac", np.stack([tone, tone], 1), 44100)
    audio = load_audio(path, 22050)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 22050) <= 1
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.02)


def test_corrupt_files_raise_decode_error(tmp_path):
    good = write_wav(tmp_path / "good.wav", np.zeros(8000, dtype=np.float32) + 0.1, 8000)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("this is not audio\n" * 20)
    data = good.read_bytes()
    (tmp_path / "truncated.wav").write_bytes(data[: len(data) // 2])
    for name in ("empty.wav", "text.wav", "truncated.wav"):
        with pytest.raises(DecodeError):
            load_audio(tmp_path / name, 8000)
