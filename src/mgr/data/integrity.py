"""Checking caches against their checksums (the command: python -m mgr.verify [caches=PATH]).

`caches` is one cache (a waveform cache, data/cache/<source>-<rate>Hz-<key>, or an
embedding cache, data/cache/embeddings/<waveform cache>-<encoder>-<key>), a folder of
caches (default: paths.cache_dir, data/cache, with its embeddings/) or a list of them.
Each cache gets one line: ok, DAMAGED (with what to delete) or unchecked (written
before mgr recorded checksums). Exit code 1 when any cache is damaged. Every sample is
read: about 0.1 s per audio-hour of float32 at 22050 Hz (half that of int16) from the page cache, more from
disk. Nothing is changed: a training run repairs or upgrades a cache.
"""

from __future__ import annotations

import time
from pathlib import Path

from filelock import FileLock

from mgr import MGRError
from mgr.data.cache import DATA_FILES, INDEX, REBUILD_ADVICE, WAVEFORMS, CacheDamaged, WaveformCache

# mgr.data.embeddings.META (a test keeps them equal): importing that module imports torch, 3 s that
# checking waveform caches does without.
META = "meta.json"


def caches_in(path: Path) -> list[Path]:
    def is_cache(p: Path) -> bool:
        return p.is_dir() and not p.name.endswith(".partial") and \
            any((p / name).exists() for name in (INDEX, *DATA_FILES.values(), META))

    if is_cache(path):
        return [path]
    folders = [path, path / "embeddings"]  # the embedding caches lie in the waveform caches' folder's embeddings/
    found = sorted(p for folder in folders if folder.is_dir() for p in folder.iterdir() if is_cache(p))
    if not found:
        raise MGRError(f"{path} is no cache and holds none (a waveform cache is a folder with {INDEX} and "
                       f"{WAVEFORMS}, such as data/cache/<source>-<rate>Hz-<key>; an embedding cache one with {META}, "
                       "such as data/cache/embeddings/<waveform cache>-<encoder>-<key>).")
    return found


def verify(directory: Path) -> tuple[bool, str]:
    """Whether the cache is whole, and its summary line."""
    if (directory / META).exists():
        return verify_embeddings(directory)
    started = time.monotonic()
    with FileLock(str(directory) + ".lock"):  # not while a training run builds or repairs it
        try:
            cache = WaveformCache(directory)
            bad = cache.mismatched_files()
        except CacheDamaged as e:
            return False, f"DAMAGED {directory}: {e.reason}; {REBUILD_ADVICE}"
    if bad:
        return False, (f"DAMAGED {directory}: the samples of {cache.files[bad[0]]} do not match the checksum written "
                       f"when it was decoded ({len(bad)} of {len(cache.files)} files); {REBUILD_ADVICE}")
    audio = f"{len(cache.files)} files, {cache.lengths.sum() / cache.sample_rate / 3600:.2f} h of {cache.dtype} audio"
    if cache.checksums is None:
        return True, (f"unchecked {directory}: {audio}, extents match its index; "
                      "written before mgr recorded checksums, which the next training run on it records")
    seconds = time.monotonic() - started
    return True, f"ok {directory}: {audio}, every checksum matches ({seconds:.2f} s)"


def verify_embeddings(directory: Path) -> tuple[bool, str]:
    """Whether the embedding cache is whole, and its summary line."""
    from mgr.data.embeddings import ChunkEmbeddings

    started = time.monotonic()
    with FileLock(str(directory) + ".lock"):  # not while a training run builds or extends it
        try:
            cache = ChunkEmbeddings(directory)
            cache.verify()
        except CacheDamaged as e:
            return False, f"DAMAGED {directory}: {e.reason}; delete that folder and the next run computes it again."
    size = f"{cache.n_rows} chunks, {len(cache.layer_dims)} layers"
    if cache.checksums is None:
        return True, (f"unchecked {directory}: {size}, sizes match its {META}; written before mgr recorded checksums, "
                      "which the next training run on it records")
    return True, f"ok {directory}: {size}, every checksum matches ({time.monotonic() - started:.2f} s)"
