"""mgr.data.audio: any file decoded to mono at the asked rate; a broken file is a DecodeError."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import write_wav
from mgr.data.audio import DecodeError, is_audio_file, load_audio


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


def test_what_is_not_a_regular_file_is_refused_by_stat_before_anything_opens_it(tmp_path):
    """Opening a FIFO blocks until something writes to it: the waveform cache's decode workers
    and mgr.predict would wait for ever. A device can stream without end; a symlink loop raises."""
    os.mkfifo(tmp_path / "stream.wav")
    (tmp_path / "loop.wav").symlink_to("loop.wav")
    (tmp_path / "dangling.wav").symlink_to("gone.wav")
    (tmp_path / "folder.wav").mkdir()
    reasons = {
        tmp_path / "stream.wav": "not a regular file (FIFO)",
        tmp_path / "loop.wav": "symlink loop",
        tmp_path / "dangling.wav": "broken symlink",
        tmp_path / "missing.wav": "does not exist",
        tmp_path / "folder.wav": "not a regular file (a folder)",
        Path("/dev/zero"): "not a regular file (character device)",
    }
    raised = {}

    def decode_all():
        for path in reasons:
            with pytest.raises(DecodeError) as caught:
                load_audio(path, 8000)
            raised[path] = str(caught.value)

    thread = threading.Thread(target=decode_all, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        os.close(os.open(tmp_path / "stream.wav", os.O_WRONLY | os.O_NONBLOCK))  # lets the blocked open return
        pytest.fail("load_audio opened the FIFO and waited for a writer")
    assert raised == reasons
    assert not any(is_audio_file(path) for path in reasons)
