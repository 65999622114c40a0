"""The waveform cache: every file decoded and resampled once, then memory-mapped.

All waveforms of a dataset live in one flat float32 file; `index.json` holds
each file's offset and length. The cache folder's name carries a key over the
file list (paths, sizes, mtimes) and the decode settings, so a changed dataset
or sample rate gets a new cache and an unchanged one is never decoded twice.

Building is crash-safe and resumable: files are decoded (in worker processes
when `num_workers` > 0) in order and appended to `<cache>.partial/`, whose
journal records each file only after its samples are on disk. A killed build
resumes from the journal; the folder gets its final name only when complete,
so a half-written cache is never used. A file lock lets one process build while
any other (a second run, a DDP rank) waits and then reads the result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from filelock import FileLock
from tqdm import tqdm

from mgr import MGRError
from mgr.data.audio import DecodeError, load_audio

log = logging.getLogger(__name__)

CACHE_VERSION = 2
INDEX = "index.json"
WAVEFORMS = "waveforms.f32"
JOURNAL = "journal.jsonl"
BAD_FILES = "bad_files.tsv"
SILENCE_PEAK = 1e-4  # -80 dBFS: below this a whole file is silence
COMMIT_SECONDS = 0.5  # how much decoding a kill can lose


def cache_key(files: list[str], sample_rate: int, min_seconds: float = 0.0, known_bad: dict | None = None) -> str:
    known_bad = known_bad or {}
    h = hashlib.sha1(f"v{CACHE_VERSION}|mono|{sample_rate}|min{min_seconds:g}|silence{SILENCE_PEAK:g}".encode())
    for path, reason in sorted(known_bad.items()):
        h.update(f"\nknown-bad|{path}|{reason}".encode())
    for f in files:
        if f not in known_bad:  # a known bad file may be absent
            st = os.stat(f)
            h.update(f"\n{f}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def decode_checked(path: str, sample_rate: int, min_samples: int) -> tuple[np.ndarray | None, str]:
    """A usable waveform, or None and why not. Runs in worker processes."""
    try:
        audio = load_audio(path, sample_rate)
    except DecodeError as e:
        return None, str(e)
    except Exception as e:  # a decoder bug must not end the whole build
        return None, f"cannot decode: {type(e).__name__}: {e}"
    if np.abs(audio).max() < SILENCE_PEAK:
        return None, "silent: no sample above -80 dBFS"
    if len(audio) < min_samples:
        return None, f"too short: {len(audio) / sample_rate:.2f} s, below data.min_seconds={min_samples / sample_rate:g} s"
    return audio, ""


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

    def check_bad_fraction(self, max_fraction: float) -> None:
        """Stop the run when more than `max_fraction` of the files are unusable."""
        fraction = len(self.bad_files) / max(len(self.files), 1)
        if fraction > max_fraction:
            raise MGRError(
                f"{len(self.bad_files)} of {len(self.files)} files ({fraction:.0%}) are unusable, more than "
                f"data.max_bad_fraction={max_fraction:g}; see the reasons in {self.report_path}."
            )

    @classmethod
    def build(cls, files: list[str], sample_rate: int, cache_root: str | Path, name: str, *,
              known_bad: dict[str, str] | None = None, min_seconds: float = 0.0,
              num_workers: int = 0) -> "WaveformCache":
        known_bad = known_bad or {}
        key = cache_key(files, sample_rate, min_seconds, known_bad)
        directory = Path(cache_root) / f"{name}-{sample_rate}Hz-{key}"
        directory.parent.mkdir(parents=True, exist_ok=True)
        # One process builds, any other (a second run, another DDP rank) waits here.
        with FileLock(str(directory) + ".lock"):
            if (directory / INDEX).exists():
                cache = cls(directory)
                log.info("Using waveform cache %s (%d files, no decoding).", directory, len(files))
            else:
                settings = dict(sample_rate=sample_rate, min_samples=int(round(min_seconds * sample_rate)))
                _Build(files, known_bad, directory, settings, num_workers).run()
                cache = cls(directory)
        if cache.bad_files:
            log.warning("Skipped %d file(s) that could not be decoded or are unusable (silent, too short, known bad); "
                        "the reasons are in %s.", len(cache.bad_files), cache.report_path)
        return cache


class _Build:
    """One build into `<directory>.partial`, resumed from its journal if a previous one was killed."""

    def __init__(self, files, known_bad, directory: Path, settings: dict, num_workers: int):
        self.files, self.known_bad, self.directory = files, known_bad, directory
        self.settings, self.num_workers = settings, num_workers
        self.tmp = directory.with_name(directory.name + ".partial")
        self.entries: list[list] = []  # [length, reason] per file, in order

    def run(self) -> None:
        self.tmp.mkdir(exist_ok=True)
        offset = self._resume()
        start = len(self.entries)
        todo = range(start, len(self.files))
        desc = f"Decoding audio at {self.settings['sample_rate']} Hz" + (f" (resumed at {start})" if start else "")
        with open(self.tmp / WAVEFORMS, "r+b" if offset else "wb") as data, open(self.tmp / JOURNAL, "a") as journal:
            data.truncate(offset)  # drop samples a killed build wrote but never journaled
            data.seek(offset)
            pending: list[str] = []
            last_commit = time.monotonic()
            with tqdm(total=len(self.files), initial=start, desc=desc, unit="file", smoothing=0.1) as bar:
                for audio, reason in self._decoded(todo):
                    if audio is not None:
                        data.write(audio.tobytes())
                    entry = [0 if audio is None else len(audio), reason]
                    self.entries.append(entry)
                    pending.append(json.dumps(entry) + "\n")
                    bar.update()
                    if time.monotonic() - last_commit > COMMIT_SECONDS:
                        self._commit(data, journal, pending)
                        last_commit = time.monotonic()
            self._commit(data, journal, pending)
        self._finish()

    def _resume(self) -> int:
        """Entries journaled by a killed build; returns the byte offset where their samples end."""
        journal, data = self.tmp / JOURNAL, self.tmp / WAVEFORMS
        if journal.exists() and data.exists():
            valid_bytes = 0
            with open(journal, "rb") as f:
                for line in f:
                    if not line.endswith(b"\n"):
                        break  # the torn last line of a killed build
                    self.entries.append(json.loads(line))
                    valid_bytes += len(line)
            offset = 4 * sum(length for length, _ in self.entries)
            if os.path.getsize(data) >= offset:
                os.truncate(journal, valid_bytes)
                if self.entries:
                    log.info("Resuming the waveform cache build at file %d of %d.", len(self.entries), len(self.files))
                return offset
        self.entries = []  # nothing trustworthy to resume from
        shutil.rmtree(self.tmp)
        self.tmp.mkdir()
        return 0

    @staticmethod
    def _commit(data, journal, pending: list[str]) -> None:
        # Samples reach the disk before the journal line that vouches for them.
        data.flush()
        os.fsync(data.fileno())
        journal.writelines(pending)
        journal.flush()
        os.fsync(journal.fileno())
        pending.clear()

    def _decoded(self, todo):
        """(audio or None, reason) for each file in `todo`, in order."""
        jobs = deque((self.files[i], self.known_bad.get(self.files[i])) for i in todo)
        if self.num_workers <= 0:
            for path, known in jobs:
                yield (None, known) if known else self._decode(path)
            return
        while jobs:
            window: deque = deque()  # (path, known reason, future); bounded so memory stays flat
            try:
                # spawn: safe with the threads torch has started.
                with ProcessPoolExecutor(self.num_workers, mp_context=get_context("spawn")) as pool:
                    while jobs or window:
                        while jobs and len(window) < 4 * self.num_workers:
                            path, known = jobs[0]
                            # submit raises once the pool is broken: pop only after, or the job is lost
                            # (and every later file would get its neighbour's audio)
                            future = None if known else pool.submit(decode_checked, path, *self.args)
                            window.append((path, known, future))
                            jobs.popleft()
                        path, known, future = window[0]
                        result = (None, known) if known else future.result()
                        window.popleft()
                        yield result
            except BrokenProcessPool:
                # A decoder crashed its process (a corrupt file can do that); find which, one file at a time.
                for path, known, _ in window:
                    yield (None, known) if known else self._decode_isolated(path)

    @property
    def args(self) -> tuple[int, int]:
        return self.settings["sample_rate"], self.settings["min_samples"]

    def _decode(self, path: str) -> tuple[np.ndarray | None, str]:
        return decode_checked(path, *self.args)

    def _decode_isolated(self, path: str) -> tuple[np.ndarray | None, str]:
        try:
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                return pool.submit(decode_checked, path, *self.args).result()
        except BrokenProcessPool:
            return None, "the decoder crashed on this file"

    def _finish(self) -> None:
        offsets, lengths, bad = [], [], {}
        offset = 0
        for path, (length, reason) in zip(self.files, self.entries, strict=True):
            offsets.append(offset)
            lengths.append(length)
            offset += length
            if length == 0:
                bad[path] = reason
        with open(self.tmp / BAD_FILES, "w") as f:
            f.write("path\treason\n")
            f.writelines(f"{p}\t{r}\n" for p, r in bad.items())
        index = dict(version=CACHE_VERSION, sample_rate=self.settings["sample_rate"], files=self.files,
                     offsets=offsets, lengths=lengths, bad_files=bad)
        (self.tmp / INDEX).write_text(json.dumps(index))
        self.tmp.rename(self.directory)
        (self.directory / JOURNAL).unlink()
        log.info("Decoded %d files into waveform cache %s.", len(self.files) - len(bad), self.directory)
