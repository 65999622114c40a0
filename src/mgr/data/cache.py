"""The waveform cache: every file decoded and resampled once, then memory-mapped.

All waveforms of a dataset live in one flat file of samples; `index.json` holds
each file's offset, length and scale. The cache folder's name carries a key over
the file list (paths, sizes, mtimes), the decode settings and the sample type, so
a changed dataset or sample rate gets a new cache and an unchanged one is never
decoded twice.

The sample type (data.cache_dtype) is one of:

- int16 (waveforms.i16, half of float32's bytes): each file x is stored as
  round(x / scale * 32767) with scale = max(1, peak |x|) of that file, kept in the
  index. A decoded and resampled file can exceed full scale; its own scale keeps it
  from clipping, and every other file keeps scale 1, a step of 1/32767 (-90 dBFS).
  The samples read back as stored * scale / 32767, within half a step of x.
- float16 (waveforms.f16, half the bytes): x as is (float16 reaches 65504, so nothing
  clips), with 11 significant bits at any level: better than int16 for quiet files.
- float32 (waveforms.f32): x exactly, as every cache before data.cache_dtype.

data.cache_dtype=null, the default, takes the float32 cache of the same data where
one exists (finished or being built: it was written before int16 became the default,
or by data.cache_dtype=float32) and no int16 one does, so an old cache is used as it
is, never decoded again beside it; otherwise int16. A float32 cache keeps its name
from before, so data.cache_dtype=float32 finds the old ones too.

Readers get the stored samples and the file's step (scale / 32767 for int16, 1
otherwise) and dequantise them with mgr.data.datasets.dequantise: the training and
evaluation loaders on the model's device (GenreDataModule.on_after_batch_transfer),
every other reader as it cuts a chunk.

Building is crash-safe and resumable: files are decoded (in worker processes
when `num_workers` > 0) in order and appended to `<cache>.partial/`, whose
journal records each file only after its samples are on disk. A killed build
resumes from the journal's last line that can be read and whose samples match
their checksum; the folder gets its final name only when complete, so a
half-written cache is never used. A full disk stops the build with one sentence
and leaves it resumable. Decode workers die with the process that started them.
A file lock lets one process build while any other (a second run, a DDP rank)
waits and then reads the result.

A finished cache is never trusted blindly: opening it checks that the index's
extents tile the data file exactly (a full disk or an interrupted copy leaves
it short), and each file's CRC-32, recorded as it is written, is checked the
first time a process reads that file. A damaged cache found on open keeps its
leading files that still match their checksums and decodes the rest again; a
mismatch found while reading stops the run, naming the folder to delete.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import zlib
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

CACHE_VERSION = 2  # in the cache key: changes only when the decoded samples would differ
INDEX_VERSION = 3  # 3: per-file checksums (caches of version 2 get them on first use)
INDEX = "index.json"
WAVEFORMS = "waveforms.f32"  # a float32 cache's samples; DATA_FILES names every dtype's
DTYPES = {"int16": np.int16, "float16": np.float16, "float32": np.float32}
ITEMSIZES = {name: np.dtype(t).itemsize for name, t in DTYPES.items()}  # bytes per stored sample
DATA_FILES = {"int16": "waveforms.i16", "float16": "waveforms.f16", "float32": WAVEFORMS}
DEFAULT_DTYPE = "int16"  # of a new cache, when data.cache_dtype is null
INT16_FULL_SCALE = 32767
JOURNAL = "journal.jsonl"
BAD_FILES = "bad_files.tsv"
SILENCE_PEAK = 1e-4  # -80 dBFS: below this a whole file is silence
COMMIT_SECONDS = 0.5  # how much decoding a kill can lose


def cache_key(files: list[str], sample_rate: int, min_seconds: float = 0.0, known_bad: dict | None = None,
              dtype: str = "float32") -> str:
    known_bad = known_bad or {}
    # float32 adds nothing: its caches keep the keys they had before data.cache_dtype.
    stored = "" if dtype == "float32" else f"|{dtype}"
    h = hashlib.sha1(f"v{CACHE_VERSION}|mono|{sample_rate}|min{min_seconds:g}|silence{SILENCE_PEAK:g}{stored}".encode())
    for path, reason in sorted(known_bad.items()):
        h.update(f"\nknown-bad|{path}|{reason}".encode())
    for f in files:
        if f not in known_bad:  # a known bad file may be absent
            st = os.stat(f)
            h.update(f"\n{f}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def check_dtype(dtype: str | None) -> None:
    if dtype is not None and dtype not in DTYPES:
        raise MGRError(f"data.cache_dtype must be int16, float16, float32 or null (int16 for a new cache, an existing "
                       f"float32 one used as it is); got {dtype!r}.")


def quantise(audio: np.ndarray, dtype: str) -> tuple[np.ndarray, float]:
    """A decoded file's samples as the cache stores them, and its scale (see the module docstring)."""
    if dtype != "int16":
        return audio.astype(DTYPES[dtype]), 1.0
    scale = max(1.0, float(np.abs(audio).max(initial=0.0)))
    return np.round(audio.astype(np.float64) * (INT16_FULL_SCALE / scale)).astype(np.int16), scale


def step_of(dtype: str, scale: float) -> float:
    """What one stored unit is worth: stored * step gives the samples back."""
    return scale / INT16_FULL_SCALE if dtype == "int16" else 1.0


def cache_directory(cache_root: str | Path, name: str, sample_rate: int, key: str, dtype: str) -> Path:
    stored = "" if dtype == "float32" else f"-{dtype}"  # float32 caches keep their names from before
    return Path(cache_root) / f"{name}-{sample_rate}Hz{stored}-{key}"


def checksum(samples, running: int = 0) -> int:
    """CRC-32 of a file's stored bytes: about 3 GB/s here, 0.1 s per audio-hour of float32 at 22050 Hz.
    With `running`, the CRC-32 of what that one covers followed by `samples` (for appended files)."""
    return zlib.crc32(samples, running)


class CacheDamaged(MGRError):
    """A cache whose data no longer matches its index."""

    def __init__(self, message: str, reason: str = ""):
        # torch re-raises a DataLoader worker's exception as type(e)(its traceback text): keep the sentence.
        if message.startswith("Caught ") and "\nOriginal Traceback" in message:
            message = message.rstrip().rsplit("\n", 1)[-1].split(": ", 1)[-1]
        super().__init__(message)
        self.reason = reason or message  # what is wrong, without the advice


REBUILD_ADVICE = "delete that folder and the next run decodes it again."


def damaged(directory: Path, reason: str) -> CacheDamaged:
    return CacheDamaged(f"The waveform cache {directory} is damaged: {reason}; {REBUILD_ADVICE}", reason)


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
        """Opens a cache, raising CacheDamaged unless its index and data file agree."""
        self.directory = Path(directory)
        if not (self.directory / INDEX).exists():
            raise damaged(self.directory, f"it has no {INDEX}")
        try:
            index = json.loads((self.directory / INDEX).read_text())
            self.sample_rate: int = index["sample_rate"]
            self.files: list[str] = index["files"]
            self.offsets = np.asarray(index["offsets"], dtype=np.int64)
            self.lengths = np.asarray(index["lengths"], dtype=np.int64)  # 0 marks a bad file
            self.bad_files: dict[str, str] = index["bad_files"]
            self.dtype: str = index.get("dtype", "float32")  # caches before data.cache_dtype: float32
            if self.dtype not in DTYPES:
                raise KeyError(self.dtype)
            # scale per file (int16; 1 otherwise): see the module docstring
            self.scales = np.asarray(index.get("scales", [1.0] * len(self.files)), dtype=np.float64)
            # None: written before mgr recorded checksums (index version 2)
            self.checksums: list[int] | None = index.get("crc32") if index.get("version", 2) < 3 else index["crc32"]
        except (ValueError, KeyError, TypeError):
            raise damaged(self.directory, f"its {INDEX} cannot be read") from None
        self._check_extents()
        self._data: np.ndarray | None = None
        self._verified: set[int] = set()  # files whose checksum this process has checked

    def _check_extents(self) -> None:
        """Every file's samples lie where the index says, and the data file holds exactly those."""
        n = len(self.files)
        if not len(self.offsets) == len(self.lengths) == len(self.scales) == n or \
                (self.checksums is not None and len(self.checksums) != n):
            raise damaged(self.directory, f"its {INDEX} does not give one offset, length, scale and checksum per file")
        ends = np.cumsum(self.lengths)
        if (self.lengths < 0).any() or (self.offsets != ends - self.lengths).any():
            raise damaged(self.directory, f"its {INDEX} gives the files overlapping or gapped extents")
        if {self.files[i] for i in np.flatnonzero(self.lengths == 0)} != set(self.bad_files):
            raise damaged(self.directory, f"its {INDEX} and its list of bad files disagree")
        data_file = DATA_FILES[self.dtype]
        try:
            size = os.path.getsize(self.data_path)
        except OSError:
            raise damaged(self.directory, f"it has no {data_file}") from None
        needed = self.itemsize * int(ends[-1]) if n else 0
        if size < needed:
            raise damaged(self.directory, f"{data_file} holds {size} bytes but its index places samples up to byte "
                                          f"{needed}: it was cut short (a full disk or an interrupted copy)")
        if size > needed:
            raise damaged(self.directory, f"{data_file} holds {size - needed} bytes more than its index accounts for")

    @property
    def data_path(self) -> Path:
        return self.directory / DATA_FILES[self.dtype]

    @property
    def itemsize(self) -> int:
        return ITEMSIZES[self.dtype]

    def step(self, i: int) -> float:
        """What one stored unit of file i is worth (dequantise: stored * step)."""
        return step_of(self.dtype, float(self.scales[i]))

    def _memmap(self) -> np.ndarray:
        return np.memmap(self.data_path, dtype=DTYPES[self.dtype], mode="r")

    @property
    def report_path(self) -> Path:
        return self.directory / BAD_FILES

    def is_ok(self, i: int) -> bool:
        return bool(self.lengths[i] > 0)

    def waveform(self, i: int) -> np.ndarray:
        """A read-only memory-mapped view of the stored samples (self.dtype: multiply by self.step(i));
        opened lazily so each worker process maps its own.
        The first read of a file in a process checks its checksum (the whole file, once)."""
        if self._data is None:
            self._data = self._memmap()
        wave = self._data[self.offsets[i] : self.offsets[i] + self.lengths[i]]
        if i not in self._verified:
            if not self.matches_checksum(i, wave):
                raise damaged(self.directory, f"the samples of {self.files[i]} do not match the checksum "
                                              "written when it was decoded")
            self._verified.add(i)
        return wave

    def matches_checksum(self, i: int, wave: np.ndarray) -> bool:
        return self.checksums is None or checksum(wave) == self.checksums[i]

    def mismatched_files(self) -> list[int]:
        """Every file whose samples no longer match their checksum (reads the whole cache)."""
        if self.checksums is None or not self.lengths.sum():
            return []
        data = self._memmap()
        return [i for i, (o, n) in enumerate(zip(self.offsets, self.lengths)) if not self.matches_checksum(i, data[o : o + n])]

    def record_checksums(self) -> None:
        """Upgrade a cache written before checksums (its extents already checked): compute and store them."""
        started = time.monotonic()
        data = self._memmap() if self.lengths.sum() else None
        self.checksums = [checksum(data[o : o + n]) if n else 0 for o, n in zip(self.offsets, self.lengths)]
        index = json.loads((self.directory / INDEX).read_text())
        _write_atomically(self.directory / INDEX, json.dumps({**index, "version": INDEX_VERSION, "crc32": self.checksums}))
        log.warning("The waveform cache %s was written before mgr recorded checksums: its extents match its index, "
                    "so its checksums were recorded now (%.1f s); delete it to decode anew if its disk was ever full.",
                    self.directory, time.monotonic() - started)

    def __getstate__(self):  # DataLoader workers re-open the memmap instead of pickling it, and verify for themselves
        return {**self.__dict__, "_data": None, "_verified": set()}

    def check_bad_fraction(self, max_fraction: float) -> None:
        """Stop the run when more than `max_fraction` of the files are unusable."""
        fraction = len(self.bad_files) / max(len(self.files), 1)
        if fraction > max_fraction:
            raise MGRError(
                f"{len(self.bad_files)} of {len(self.files)} files ({fraction:.0%}) are unusable, more than "
                f"data.max_bad_fraction={max_fraction:g}; see the reasons in {self.report_path}."
            )

    @classmethod
    def _existing(cls, directory: Path, files: list[str], sample_rate: int, dtype: str) -> "WaveformCache | None":
        """The finished cache in `directory`, or None when there is none or it was damaged and is to be
        rebuilt (its intact leading files kept as a partial build)."""
        if not directory.exists():
            return None
        try:
            cache = cls(directory)
            if cache.files != files or cache.sample_rate != sample_rate or cache.dtype != dtype:
                raise damaged(directory, f"its {INDEX} lists other files, another sample rate or another sample type "
                                         "than its name promises")
        except CacheDamaged as e:
            kept = _salvage(directory, files, dtype)
            todo = f"decoding files {kept + 1}-{len(files)} of {len(files)} again" if kept < len(files) else \
                "its files match their checksums, so only its index is written anew"
            log.warning("The waveform cache %s is damaged: %s; %s.", directory, e.reason, todo)
            return None
        if cache.checksums is None:
            cache.record_checksums()
        log.info("Using waveform cache %s (%d files of %s samples, no decoding).", directory, len(files), dtype)
        return cache

    @classmethod
    def build(cls, files: list[str], sample_rate: int, cache_root: str | Path, name: str, *,
              known_bad: dict[str, str] | None = None, min_seconds: float = 0.0,
              num_workers: int = 0, dtype: str | None = None) -> "WaveformCache":
        """The cache of `files` with samples of `dtype` (None: see the module docstring), built if missing."""
        check_dtype(dtype)
        known_bad = known_bad or {}

        def directory_of(dtype: str) -> Path:
            return cache_directory(cache_root, name, sample_rate, cache_key(files, sample_rate, min_seconds, known_bad, dtype),
                                   dtype)

        dtype = dtype or _default_dtype(directory_of)
        directory = directory_of(dtype)
        directory.parent.mkdir(parents=True, exist_ok=True)
        # One process builds, any other (a second run, another DDP rank) waits here.
        with FileLock(str(directory) + ".lock"):
            cache = cls._existing(directory, files, sample_rate, dtype)
            if cache is None:
                settings = dict(sample_rate=sample_rate, min_samples=int(round(min_seconds * sample_rate)), dtype=dtype)
                _Build(files, known_bad, directory, settings, num_workers).run()
                cache = cls(directory)
        if cache.bad_files:
            log.warning("Skipped %d file(s) that could not be decoded or are unusable (silent, too short, known bad); "
                        "the reasons are in %s.", len(cache.bad_files), cache.report_path)
        return cache


def _default_dtype(directory_of) -> str:
    """data.cache_dtype=null: float32 where such a cache of this data exists (finished or partial) and no
    int16 one does, so that an old cache is used as it is; otherwise int16 (see the module docstring)."""
    def exists(dtype: str) -> bool:
        return directory_of(dtype).exists() or partial_of(directory_of(dtype)).exists()

    return "float32" if exists("float32") and not exists(DEFAULT_DTYPE) else DEFAULT_DTYPE


class _Build:
    """One build into `<directory>.partial`, resumed from its journal if a previous one was killed."""

    def __init__(self, files, known_bad, directory: Path, settings: dict, num_workers: int):
        self.files, self.known_bad, self.directory = files, known_bad, directory
        self.settings, self.num_workers = settings, num_workers
        self.tmp = partial_of(directory)
        self.entries: list[list] = []  # [length, reason, checksum, scale] per file, in order
        self.dtype: str = settings["dtype"]
        self.itemsize = ITEMSIZES[self.dtype]
        self.data_file = DATA_FILES[self.dtype]

    def run(self) -> None:
        try:
            self.tmp.mkdir(exist_ok=True)
            self._decode_all()
            self._finish()
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise self._disk_full() from e

    def _decode_all(self) -> None:
        offset = self._resume()
        start = len(self.entries)
        todo = range(start, len(self.files))
        desc = f"Decoding audio at {self.settings['sample_rate']} Hz" + (f" (resumed at {start})" if start else "")
        with open(self.tmp / self.data_file, "r+b" if offset else "wb") as data, open(self.tmp / JOURNAL, "a") as journal:
            data.truncate(offset)  # drop samples a killed build wrote but never journaled
            data.seek(offset)
            pending: list[str] = []
            last_commit = time.monotonic()
            with tqdm(total=len(self.files), initial=start, desc=desc, unit="file", smoothing=0.1) as bar:
                for audio, reason in self._decoded(todo):
                    stored, scale = (np.zeros(0), 1.0) if audio is None else quantise(audio, self.dtype)
                    samples = stored.tobytes()
                    data.write(samples)
                    entry = [len(stored), reason, checksum(samples), scale]
                    self.entries.append(entry)
                    pending.append(json.dumps(entry) + "\n")
                    bar.update()
                    if time.monotonic() - last_commit > COMMIT_SECONDS:
                        self._commit(data, journal, pending)
                        last_commit = time.monotonic()
            self._commit(data, journal, pending)

    def _disk_full(self) -> MGRError:
        """What to do when the disk filled: free how much, judging by the files decoded so far. Only journaled
        files count as done (their samples were on disk first), so the next build resumes after them; the
        samples written after them are overwritten, so their space counts as free."""
        decoded = [entry[0] for entry in self.entries]
        n = len(self.files)
        if len(decoded) == n:
            needed = "room for its index"
        elif decoded:
            data = self.tmp / self.data_file
            written = os.path.getsize(data) if data.exists() else 0
            needed = f"about {_size(max(self.itemsize * sum(decoded) / len(decoded) * n - written, 0))} more for its {n} files"
        else:
            needed = f"room for {n} decoded files"
        return MGRError(f"The disk holding the waveform cache {self.directory} is full "
                        f"({_size(shutil.disk_usage(self.directory.parent).free)} free, {needed}): free space there or "
                        "set paths.cache_dir to a larger disk, and the next run resumes the build.")

    def _resume(self) -> int:
        """Entries journaled by a killed build; returns the byte offset where their samples end."""
        journal, data = self.tmp / JOURNAL, self.tmp / self.data_file
        if journal.exists() and data.exists():
            valid_bytes = 0
            with open(journal, "rb") as lines, open(data, "rb") as samples:
                for number, line in enumerate(lines, 1):
                    if not line.endswith(b"\n"):
                        break  # the torn last line of a killed build: expected, no warning
                    entry, problem = _journal_entry(line, samples, self.itemsize)
                    if problem:
                        log.warning("Line %d of %s %s; the build resumes after the %d files before it.",
                                    number, journal, problem, len(self.entries))
                        break
                    self.entries.append(entry)
                    valid_bytes += len(line)
            os.truncate(journal, valid_bytes)  # later lines vouch for samples placed after the dropped one
            if self.entries:
                log.info("Resuming the waveform cache build at file %d of %d.", len(self.entries), len(self.files))
            return self.itemsize * sum(entry[0] for entry in self.entries)
        self.entries = []  # nothing to resume from
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
                with _worker_pool(self.num_workers) as pool:
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
            with _worker_pool(1) as pool:
                return pool.submit(decode_checked, path, *self.args).result()
        except BrokenProcessPool:
            return None, "the decoder crashed on this file"

    def _finish(self) -> None:
        offsets, lengths, bad = [], [], {}
        offset = 0
        for path, (length, reason, *_) in zip(self.files, self.entries, strict=True):
            offsets.append(offset)
            lengths.append(length)
            offset += length
            if length == 0:
                bad[path] = reason
        with open(self.tmp / BAD_FILES, "w") as f:
            f.write("path\treason\n")
            f.writelines(f"{p}\t{r}\n" for p, r in bad.items())
        index = dict(version=INDEX_VERSION, sample_rate=self.settings["sample_rate"], files=self.files,
                     offsets=offsets, lengths=lengths, bad_files=bad, crc32=[entry[2] for entry in self.entries],
                     dtype=self.dtype, scales=[entry[3] for entry in self.entries])
        (self.tmp / INDEX).write_text(json.dumps(index))
        self.tmp.rename(self.directory)
        (self.directory / JOURNAL).unlink()
        log.info("Decoded %d files into waveform cache %s (%s samples).", len(self.files) - len(bad), self.directory,
                 self.dtype)


def _journal_entry(line: bytes, samples, itemsize: int) -> tuple[list | None, str]:
    """A journal line's [length, reason, checksum, scale], checked against the samples it vouches for (read on
    from `samples`, the data file at the line's offset); or None and why the line cannot be trusted. A line
    of a float32 build from before data.cache_dtype has no scale: 1."""
    try:
        entry = json.loads(line)
    except ValueError:  # a garbled line (UnicodeDecodeError is one too)
        return None, "cannot be read"
    if isinstance(entry, list) and len(entry) == 3:
        entry.append(1.0)
    if not (isinstance(entry, list) and len(entry) == 4 and isinstance(entry[0], int) and entry[0] >= 0
            and isinstance(entry[1], str) and isinstance(entry[2], int) and isinstance(entry[3], (int, float))
            and entry[3] >= 1):
        return None, "is no entry of this mgr's journal"
    data = samples.read(itemsize * entry[0])
    if len(data) != itemsize * entry[0] or checksum(data) != entry[2]:
        return None, "vouches for samples that are missing or do not match its checksum"
    return entry, ""


def _worker_pool(workers: int) -> ProcessPoolExecutor:
    # spawn: safe with the threads torch has started.
    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_die_with_parent,
                               initargs=(os.getpid(),))


def _die_with_parent(parent: int) -> None:
    """Worker initializer: end this decode worker when the process that started it dies, even by kill -9
    (which runs no cleanup, so the pool cannot stop its workers).

    On Linux the kernel does it: PR_SET_PDEATHSIG sends SIGKILL at once, costs nothing while decoding,
    and works while a decoder holds the GIL in C code. (It fires when the thread that started the
    worker ends: the pool starts its workers from submit(), in the thread that builds, which outlives
    the pool.) A thread that polls the parent's pid is the fallback elsewhere. Either way the parent
    may have died before this ran: then the worker has been adopted by another process, so its parent
    pid differs, and it exits now."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _size(n: float) -> str:
    """A byte count for people: 4.2 GB."""
    units = ["bytes", "KB", "MB", "GB", "TB"]
    power = 0
    while n >= 1000 and power < len(units) - 1:
        n, power = n / 1000, power + 1
    return f"{n:.0f} bytes" if power == 0 else f"{n:.1f} {units[power]}"


def partial_of(directory: Path) -> Path:
    return directory.with_name(directory.name + ".partial")


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _salvage(directory: Path, files: list[str], dtype: str) -> int:
    """Turn a damaged cache into a partial build of its leading files whose samples still match their
    checksums, which the next build resumes; with nothing to trust (no index, no checksums), remove it.
    Returns how many files were kept. Each step leaves a state that a later build handles."""
    entries = _intact_prefix(directory, files, dtype)
    tmp = partial_of(directory)
    shutil.rmtree(tmp, ignore_errors=True)
    if not entries:
        shutil.rmtree(directory)
        return 0
    # The journal first: killed before the rename, the cache is still damaged and salvaged again.
    # _Build._resume truncates the data file to the samples these lines vouch for.
    _write_atomically(directory / JOURNAL, "".join(json.dumps(entry) + "\n" for entry in entries))
    directory.rename(tmp)
    for name in (INDEX, BAD_FILES):
        (tmp / name).unlink(missing_ok=True)
    return len(entries)


def _intact_prefix(directory: Path, files: list[str], dtype: str) -> list[list]:
    """Journal entries for the leading files of a damaged cache of `dtype` that lie in its data file and match
    their checksums."""
    entries: list[list] = []
    itemsize = ITEMSIZES[dtype]
    try:
        index = json.loads((directory / INDEX).read_text())
        if index["files"] != files or index.get("dtype", "float32") != dtype:
            return []
        offset = 0
        scales = index.get("scales", [1.0] * len(files))
        with open(directory / DATA_FILES[dtype], "rb") as data:
            for path, start, length, crc, scale in zip(files, index["offsets"], index["lengths"], index["crc32"], scales):
                samples = data.read(itemsize * length) if start == offset and length >= 0 else b"?"
                if len(samples) != itemsize * length or checksum(samples) != crc:
                    break
                entries.append([length, index["bad_files"].get(path, "") if length == 0 else "", crc, scale])
                offset += length
    except (OSError, ValueError, KeyError, TypeError):  # no index, or one from before checksums
        pass
    return entries
