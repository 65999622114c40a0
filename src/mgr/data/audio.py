"""Decoding audio files to mono float32 at a target sample rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

# What libsndfile (bundled with the soundfile wheel) decodes.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au")


class DecodeError(Exception):
    """A file that cannot be turned into a usable waveform."""


def is_audio_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode `path`, mix down to mono and resample to `sample_rate` (soxr, high quality)."""
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
