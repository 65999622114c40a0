"""Decoding audio files to mono float32 at a target sample rate."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

# What libsndfile (bundled with the soundfile wheel) decodes.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au")


class DecodeError(Exception):
    """A file that cannot be turned into a usable waveform."""


# What a path is when it is not a regular file, for the reason a file is not read.
NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
               (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))


def has_audio_name(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def is_audio_file(path: Path) -> bool:
    """A regular file with an audio name; found by stat alone, so nothing is opened."""
    return has_audio_name(path) and file_problem(path) is None


def file_problem(path: str | Path) -> str | None:
    """Why `path` must not be opened as audio, or None for a regular file. By stat, before any open:
    opening a FIFO blocks until something writes to it, and a device can stream without end."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symlink loop"
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return "broken symlink" if os.path.islink(path) else "does not exist"
        return f"cannot read: {e.strerror}"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for is_kind, name in NOT_REGULAR if is_kind(mode)), "unknown file type")
    return f"not a regular file ({kind})"


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode `path`, mix down to mono and resample to `sample_rate` (soxr, high quality)."""
    problem = file_problem(path)
    if problem:
        raise DecodeError(problem)
    try:
        with sf.SoundFile(str(path)) as f:
            declared = f.frames
            source_rate = f.samplerate
            audio = f.read(dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile raises several types for broken files
        raise DecodeError(f"cannot decode: {e}") from None
    # A truncated file can decode "successfully" but short of what its header declares.
    if declared > 0 and len(audio) < declared:
        raise DecodeError(f"truncated: header declares {declared} frames, decoded {len(audio)}")
    if Path(path).suffix.lower() in (".wav", ".aif", ".aiff"):
        # libsndfile trims a truncated PCM file's length silently; its log tells.
        header_log = sf.info(str(path), verbose=True).extra_info
        if any(line.startswith(("data", "SSND")) and "(should be" in line for line in header_log.splitlines()):
            raise DecodeError("truncated: the data chunk is shorter than its header declares")
    if len(audio) == 0:
        raise DecodeError("no audio samples")
    mono = audio.mean(axis=1)
    if not np.isfinite(mono).all():
        raise DecodeError("contains NaN or infinite samples")
    if source_rate != sample_rate:
        mono = soxr.resample(mono, source_rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)
