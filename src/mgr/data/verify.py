"""Check waveform caches against their index and checksums: python -m mgr.data.verify [caches=PATH]

`caches` is one cache (data/cache/<source>-<rate>Hz-<key>), a folder of caches
(default: paths.cache_dir, data/cache) or a list of them. Each cache gets one
line: ok, DAMAGED (with what to delete) or unchecked (written before mgr
recorded checksums). Exit code 1 when any cache is damaged. Every sample is
read: about 0.1 s per audio-hour at 22050 Hz from the page cache, more from
disk. Nothing is changed: a training run repairs or upgrades a cache.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from filelock import FileLock
from omegaconf import DictConfig, ListConfig

from mgr import MGRError
from mgr.data.cache import INDEX, REBUILD_ADVICE, WAVEFORMS, CacheDamaged, WaveformCache
from mgr.utils.tasks import task


def caches_in(path: Path) -> list[Path]:
    def is_cache(p: Path) -> bool:
        return p.is_dir() and not p.name.endswith(".partial") and ((p / INDEX).exists() or (p / WAVEFORMS).exists())

    if is_cache(path):
        return [path]
    found = sorted(p for p in path.iterdir() if is_cache(p)) if path.is_dir() else []
    if not found:
        raise MGRError(f"{path} is no waveform cache and holds none (a cache is a folder with {INDEX} and "
                       f"{WAVEFORMS}, such as data/cache/<source>-<rate>Hz-<key>).")
    return found


def verify(directory: Path) -> tuple[bool, str]:
    """Whether the cache is whole, and its summary line."""
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
    hours = cache.lengths.sum() / cache.sample_rate / 3600
    if cache.checksums is None:
        return True, (f"unchecked {directory}: {len(cache.files)} files, {hours:.2f} h of audio, extents match its index; "
                      "written before mgr recorded checksums, which the next training run on it records")
    seconds = time.monotonic() - started
    return True, (f"ok {directory}: {len(cache.files)} files, {hours:.2f} h of audio, every checksum matches "
                  f"({seconds:.2f} s)")


@task
def verify_command(cfg: DictConfig) -> bool:
    """Check every cache named by `caches`; whether all are whole."""
    paths = cfg.caches if isinstance(cfg.caches, ListConfig) else [cfg.caches]
    directories = [d for path in paths for d in caches_in(Path(str(path)).expanduser())]
    states = []
    for directory in directories:
        whole, line = verify(directory)
        states.append(line.split()[0])
        print(line, flush=True)
    damaged, unchecked = states.count("DAMAGED"), states.count("unchecked")
    if len(directories) > 1:
        print(f"{len(directories)} caches, " + (f"{damaged} damaged" if damaged else
              f"none damaged, {unchecked} without checksums yet" if unchecked else "every checksum matches"))
    return not damaged


@hydra.main(version_base="1.3", config_path="pkg://mgr.conf", config_name="verify")
def main(cfg: DictConfig) -> None:
    if not verify_command(cfg):
        sys.exit(1)


if __name__ == "__main__":
    main()
