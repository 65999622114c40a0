"""The waveform cache: every file decoded and resampled once, then memory-mapped.

All waveforms of a dataset live in one flat float32 file; `index.json` holds
each file's offset and length. The cache folder's name carries a key over the
file list (paths, sizes, mtimes) and the decode settings, so a changed dataset
or sample rate gets a new cache and an unchanged one is never decoded twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
from filelock import FileLock
from tqdm import tqdm

from mgr.data.audio import DecodeError, load_audio

log = logging.getLogger(__name__)

CACHE_VERSION = 1
INDEX = "index.json"
WAVEFORMS = "waveforms.f32"
BAD_FILES = "bad_files.tsv"


def cache_key(files: list[str], sample_rate: int) -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION}|mono|{sample_rate}".encode())
    for f in files:
        st = os.stat(f)
        h.update(f"\n{f}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


class WaveformCache:
    """Read access to a built cache; `WaveformCache.build` makes or finds one."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        index = json.loads((self.directory / INDEX).read_text())
        self.sample_rate: int = index["sample_rate"]
        self.files: list[str] = index["files"]
        self.offsets = np.asarray(index["offsets"], dtype=np.int64)
        self.lengths = np.asarray(index["lengths"], dtype=np.int64)  # 0 marks a bad file
        self.bad_files: dict[str, str] = index["bad_files"]
        self._data: np.ndarray | None = None

    @property
    def report_path(self) -> Path:
        return self.directory / BAD_FILES

    def is_ok(self, i: int) -> bool:
        return bool(self.lengths[i] > 0)

    def waveform(self, i: int) -> np.ndarray:
        """A read-only memory-mapped view; opened lazily so each worker process maps its own."""
        if self._data is None:
            self._data = np.memmap(self.directory / WAVEFORMS, dtype=np.float32, mode="r")
        return self._data[self.offsets[i] : self.offsets[i] + self.lengths[i]]

    def __getstate__(self):  # DataLoader workers re-open the memmap instead of pickling it
        return {**self.__dict__, "_data": None}

    @classmethod
    def build(cls, files: list[str], sample_rate: int, cache_root: str | Path, name: str) -> "WaveformCache":
        directory = Path(cache_root) / f"{name}-{sample_rate}Hz-{cache_key(files, sample_rate)}"
        directory.parent.mkdir(parents=True, exist_ok=True)
        # One process builds, any other (a second run, another DDP rank) waits here.
        with FileLock(str(directory) + ".lock"):
            if (directory / INDEX).exists():
                cache = cls(directory)
                log.info("Using waveform cache %s (%d files, no decoding).", directory, len(files))
            else:
                cache = cls._decode_all(files, sample_rate, directory)
        if cache.bad_files:
            log.warning(
                "Skipped %d file(s) that could not be decoded; they are listed in %s.",
                len(cache.bad_files),
                cache.report_path,
            )
        return cache

    @classmethod
    def _decode_all(cls, files: list[str], sample_rate: int, directory: Path) -> "WaveformCache":
        # Written beside the final folder and renamed at the end: a half-built cache is never used.
        tmp = directory.with_name(directory.name + f".partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        offsets, lengths, bad = [], [], {}
        offset = 0
        with open(tmp / WAVEFORMS, "wb") as out:
            for path in tqdm(files, desc=f"Decoding audio at {sample_rate} Hz", unit="file"):
                try:
                    audio = load_audio(path, sample_rate)
                except DecodeError as e:
                    bad[path] = str(e)
                    audio = np.zeros(0, dtype=np.float32)
                out.write(audio.tobytes())
                offsets.append(offset)
                lengths.append(len(audio))
                offset += len(audio)
        with open(tmp / BAD_FILES, "w") as f:
            f.write("path\treason\n")
            f.writelines(f"{p}\t{r}\n" for p, r in bad.items())
        index = dict(
            version=CACHE_VERSION,
            sample_rate=sample_rate,
            files=files,
            offsets=offsets,
            lengths=lengths,
            bad_files=bad,
        )
        (tmp / INDEX).write_text(json.dumps(index))
        tmp.rename(directory)
        log.info("Decoded %d files into waveform cache %s.", len(files) - len(bad), directory)
        return cls(directory)
