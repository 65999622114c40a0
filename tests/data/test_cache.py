"""mgr.data.cache: audio decoded once, its bad files reported; builds that are killed, crash or run
twice at once end in the same data; a damaged cache is repaired or refused, never read as if it
were whole (extents checked on open, per-file checksums on first read)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import verify_command, write_wav
from mgr import MGRError
from mgr.data import cache as cache_module
from mgr.data.cache import WaveformCache
from mgr.data.datasets import RandomChunks
from mgr.data.sources.folder import FolderSource


def test_cache_decodes_once_and_reuses(small_folder, tmp_path, monkeypatch):
    files = FolderSource(str(small_folder)).list().files
    cache = WaveformCache.build(files, 8000, tmp_path / "cache", "folder")
    assert [len(cache.waveform(i)) for i in range(len(files))] == [8000, 10000, 12000, 14000] * 2

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache exists")

    monkeypatch.setattr(cache_module, "load_audio", no_decoding)
    again = WaveformCache.build(files, 8000, tmp_path / "cache", "folder")
    assert again.directory == cache.directory
    np.testing.assert_array_equal(again.waveform(3), cache.waveform(3))


def test_cache_key_follows_files_and_settings(small_folder, tmp_path):
    files = FolderSource(str(small_folder)).list().files
    first = WaveformCache.build(files, 8000, tmp_path / "cache", "folder").directory
    assert WaveformCache.build(files, 4000, tmp_path / "cache", "folder").directory != first
    write_wav(Path(files[0]), np.zeros(100, dtype=np.float32), 8000)  # a changed file
    assert WaveformCache.build(files, 8000, tmp_path / "cache", "folder").directory != first
    assert not list((tmp_path / "cache").glob("*.partial-*"))


def test_cache_reports_bad_files(small_folder, tmp_path):
    (small_folder / "a" / "broken.wav").write_bytes(b"RIFF")
    files = FolderSource(str(small_folder)).list().files
    cache = WaveformCache.build(files, 8000, tmp_path / "cache", "folder")
    bad = [f for f in files if f.endswith("broken.wav")]
    assert list(cache.bad_files) == bad and not cache.is_ok(files.index(bad[0]))
    assert "broken.wav" in cache.report_path.read_text()


# Module level runs in the decoding workers too (spawn imports the main script), so they decode slowly.
CHILD_BUILD = """
import sys, time
from mgr.data import cache
import os
real = cache.load_audio
def slow(path, rate):  # slow enough to be killed part-way
    time.sleep(float(sys.argv[4]))
    if path.endswith("crash.wav"):  # what a decoder segfault does to its process
        os._exit(11)
    return real(path, rate)
cache.load_audio = slow
if __name__ == "__main__":
    files = open(sys.argv[1]).read().split()
    built = cache.WaveformCache.build(files, 8000, sys.argv[2], "folder", num_workers=int(sys.argv[3]))
    print("built", built.directory)
"""


@pytest.fixture
def many_files(tmp_path) -> list[str]:
    rng = np.random.default_rng(1)
    return [str(write_wav(tmp_path / "many" / f"{i:03d}.wav", 0.1 * rng.standard_normal(4000 + 100 * i).astype(np.float32), 8000))
            for i in range(40)]


def _cache_bytes(cache: WaveformCache) -> tuple[bytes, list, list]:
    return cache.data_path.read_bytes(), cache.lengths.tolist(), cache.offsets.tolist()


def _child(args: list[str], tmp_path: Path) -> "subprocess.Popen":
    import subprocess
    import sys

    script = tmp_path / "child_build.py"
    script.write_text(CHILD_BUILD)
    # A session of its own: a kill takes the decoding workers with it, as it takes a job's whole group.
    return subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def test_cache_reports_each_kind_of_bad_file(tmp_path):
    root = tmp_path / "music"
    write_wav(root / "a" / "good.wav", 0.1 * np.ones(8000, dtype=np.float32), 8000)
    write_wav(root / "a" / "silent.wav", np.zeros(8000, dtype=np.float32), 8000)
    write_wav(root / "a" / "short.wav", 0.1 * np.ones(2000, dtype=np.float32), 8000)
    (root / "a" / "empty.wav").write_bytes(b"")
    (root / "a" / "text.flac").write_text("not audio at all\n" * 10)
    files = sorted(str(p) for p in (root / "a").iterdir())
    known = {files[0]: "known bad file: listed upstream"}  # empty.wav: never opened
    cache = WaveformCache.build(files, 8000, tmp_path / "cache", "folder", known_bad=known, min_seconds=0.5)
    reasons = {Path(p).name: r for p, r in cache.bad_files.items()}
    assert reasons["empty.wav"] == "known bad file: listed upstream"
    assert reasons["silent.wav"].startswith("silent")
    assert reasons["short.wav"].startswith("too short: 0.25 s")
    assert reasons["text.flac"].startswith("cannot decode")
    assert "good.wav" not in reasons and len(cache.waveform(files.index(str(root / "a" / "good.wav")))) == 8000
    assert cache.report_path.read_text().count("\n") == 5
    cache.check_bad_fraction(0.8)
    with pytest.raises(MGRError, match=r"4 of 5 files \(80%\) are unusable.*data.max_bad_fraction=0.5.*bad_files.tsv"):
        cache.check_bad_fraction(0.5)
    # A different minimum length is a different cache.
    assert WaveformCache.build(files, 8000, tmp_path / "cache", "folder", known_bad=known).directory != cache.directory


def test_parallel_decoding_matches_serial(many_files, tmp_path):
    serial = WaveformCache.build(many_files, 8000, tmp_path / "serial", "folder", num_workers=0)
    parallel = WaveformCache.build(many_files, 8000, tmp_path / "parallel", "folder", num_workers=2)
    assert _cache_bytes(serial) == _cache_bytes(parallel)


@pytest.mark.parametrize("workers", [0, 2])
def test_killed_build_resumes_to_identical_data(many_files, tmp_path, workers, monkeypatch):
    import signal
    import time

    (tmp_path / "files.txt").write_text("\n".join(many_files))
    proc = _child([str(tmp_path / "files.txt"), str(tmp_path / "cache"), str(workers), "0.1"], tmp_path)
    journal = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # kill it once part of the work is journaled
        journals = list((tmp_path / "cache").glob("*.partial/journal.jsonl")) if (tmp_path / "cache").exists() else []
        if journals and journals[0].read_text().count("\n") >= 5:
            journal = journals[0]
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # a job's whole group (test_decode_workers_die_with_their_parent kills the builder alone)
    proc.wait()
    assert journal is not None and not list((tmp_path / "cache").glob("*Hz-*[0-9a-f]"))  # nothing final
    done_before = journal.read_text().count("\n")
    assert 5 <= done_before < len(many_files)

    decoded = []
    real = cache_module.load_audio
    monkeypatch.setattr(cache_module, "load_audio", lambda p, r: decoded.append(p) or real(p, r))
    resumed = WaveformCache.build(many_files, 8000, tmp_path / "cache", "folder", num_workers=0)
    assert len(decoded) == len(many_files) - done_before  # resumed, not rebuilt
    fresh = WaveformCache.build(many_files, 8000, tmp_path / "fresh", "folder")
    assert _cache_bytes(resumed) == _cache_bytes(fresh)
    assert not list((tmp_path / "cache").glob("*.partial"))


def test_two_builders_at_once_build_one_cache(many_files, tmp_path):
    (tmp_path / "files.txt").write_text("\n".join(many_files))
    procs = [_child([str(tmp_path / "files.txt"), str(tmp_path / "cache"), "0", "0.01"], tmp_path) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    directories = {out.strip().split("built ")[1] for out, _ in outputs}
    assert len(directories) == 1
    logs = "".join(err for _, err in outputs)
    assert logs.count("Decoding audio") >= 1 and sum("Decoding audio" in err for _, err in outputs) == 1
    fresh = WaveformCache.build(many_files, 8000, tmp_path / "fresh", "folder")
    assert _cache_bytes(WaveformCache(directories.pop())) == _cache_bytes(fresh)
    assert not list((tmp_path / "cache").glob("*.partial"))


def test_a_decoder_crash_marks_only_its_file_bad(many_files, tmp_path):
    crash = write_wav(tmp_path / "many" / "crash.wav", 0.1 * np.ones(8000, dtype=np.float32), 8000)
    files = many_files[:10] + [str(crash)] + many_files[10:16]
    (tmp_path / "files.txt").write_text("\n".join(files))
    out, err = _child([str(tmp_path / "files.txt"), str(tmp_path / "cache"), "2", "0"], tmp_path).communicate(timeout=300)
    built = WaveformCache(out.strip().split("built ")[1])
    assert built.bad_files == {str(crash): "the decoder crashed on this file"}, err
    fresh = WaveformCache.build(files[:10], 8000, tmp_path / "fresh", "folder")
    np.testing.assert_array_equal(built.waveform(9), fresh.waveform(9))
    assert len(built.waveform(16)) == len(WaveformCache.build(many_files[15:16], 8000, tmp_path / "f2", "folder").waveform(0))


def test_a_pool_that_breaks_while_jobs_are_submitted_loses_no_file(many_files, tmp_path, monkeypatch):
    """The pool can report a crash from submit() rather than from a result: the job being
    submitted must still be decoded, or every later file would get its neighbour's audio."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from mgr.data import cache

    calls = {"submit": 0}

    class BreaksOnThirdSubmit:  # stands in for ProcessPoolExecutor, decoding in this process
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, *args):
            calls["submit"] += 1
            if calls["submit"] == 3:
                raise BrokenProcessPool("a worker died")
            future = Future()
            future.set_result(fn(*args))
            return future

    monkeypatch.setattr(cache, "ProcessPoolExecutor", BreaksOnThirdSubmit)
    built = WaveformCache.build(many_files[:6], 8000, tmp_path / "broken", "folder", num_workers=2)
    fresh = WaveformCache.build(many_files[:6], 8000, tmp_path / "fresh", "folder")
    assert calls["submit"] > 3 and _cache_bytes(built) == _cache_bytes(fresh)


def _build(cache_files, root, dtype: str | None = None) -> WaveformCache:
    return WaveformCache.build(cache_files, 8000, root, "folder", dtype=dtype)


# A damaged cache of either sample type is found and repaired alike (int16: the default of a new cache).
DTYPES = pytest.mark.parametrize("dtype", ["int16", "float32"])


def _count_decoding(monkeypatch) -> list[str]:
    decoded: list[str] = []
    real = cache_module.load_audio
    monkeypatch.setattr(cache_module, "load_audio", lambda p, r: decoded.append(p) or real(p, r))
    return decoded


def _same_data(a: WaveformCache, b: WaveformCache) -> bool:
    return a.data_path.read_bytes() == b.data_path.read_bytes() and a.lengths.tolist() == b.lengths.tolist() \
        and a.dtype == b.dtype and a.scales.tolist() == b.scales.tolist()


@DTYPES
def test_truncated_cache_is_refused_on_open_and_rebuilt_from_the_cut(cache_files, tmp_path, monkeypatch, caplog, dtype):
    built = _build(cache_files, tmp_path / "cache", dtype)
    assert built.dtype == dtype
    data = built.data_path
    cut = built.itemsize * int(built.offsets[7] + 100)  # inside file 7: files 0-6 are whole
    with open(data, "r+b") as f:
        f.truncate(cut)
    with pytest.raises(MGRError, match=rf"waveform cache {built.directory} is damaged: .*cut short.*delete"):
        WaveformCache(built.directory)

    decoded = _count_decoding(monkeypatch)
    repaired = _build(cache_files, tmp_path / "cache", dtype)
    assert repaired.directory == built.directory
    assert "damaged" in caplog.text and "cut short" in caplog.text
    assert decoded == cache_files[7:]  # the intact files 0-6 are kept
    assert _same_data(repaired, _build(cache_files, tmp_path / "fresh", dtype))
    assert all(len(repaired.waveform(i)) == repaired.lengths[i] for i in range(len(cache_files)))


@DTYPES
def test_a_flipped_byte_stops_the_first_read_of_its_file(cache_files, tmp_path, dtype):
    built = _build(cache_files, tmp_path / "cache", dtype)
    data = built.data_path
    raw = bytearray(data.read_bytes())
    raw[built.itemsize * int(built.offsets[5]) + 1001] ^= 0x10  # one bit of one sample of file 5
    data.write_bytes(bytes(raw))

    reopened = _build(cache_files, tmp_path / "cache", dtype)  # the extents still match: opened as before
    reopened.waveform(4)
    with pytest.raises(MGRError, match=rf"waveform cache {built.directory} is damaged: the samples of .*05.wav "
                                       r"do not match .*; delete that folder"):
        reopened.waveform(5)

    # In a DataLoader worker, torch re-raises the error with the worker's traceback; the message stays one sentence.
    loader = torch.utils.data.DataLoader(RandomChunks(reopened, [5], [0] * len(cache_files), chunk=1000), num_workers=1)
    with pytest.raises(MGRError) as caught:
        next(iter(loader))
    assert str(caught.value).startswith(f"The waveform cache {built.directory} is damaged") and "\n" not in str(caught.value)

    check = verify_command(f"caches={built.directory}")
    assert check.returncode == 1
    assert check.stdout.strip().splitlines() == [
        f"DAMAGED {built.directory}: the samples of {cache_files[5]} do not match the checksum written when it was "
        f"decoded (1 of {len(cache_files)} files); delete that folder and the next run decodes it again."]


def test_a_deleted_index_rebuilds_the_cache(cache_files, tmp_path, monkeypatch, caplog):
    built = _build(cache_files, tmp_path / "cache")
    (built.directory / "index.json").unlink()
    assert "no index.json" in verify_command(f"caches={tmp_path / 'cache'}").stdout

    decoded = _count_decoding(monkeypatch)
    rebuilt = _build(cache_files, tmp_path / "cache")
    assert "no index.json" in caplog.text and decoded == cache_files
    assert _same_data(rebuilt, _build(cache_files, tmp_path / "fresh"))
    assert not list((tmp_path / "cache").glob("*.partial"))


def test_each_file_is_verified_once_per_process(cache_files, tmp_path, monkeypatch):
    built = _build(cache_files, tmp_path / "cache")
    sums = json.loads((built.directory / "index.json").read_text())["crc32"]
    assert len(sums) == len(cache_files) and len(set(sums)) == len(cache_files)
    checked = []
    real = cache_module.checksum
    monkeypatch.setattr(cache_module, "checksum", lambda samples: checked.append(len(samples)) or real(samples))
    cache = WaveformCache(built.directory)
    for _ in range(3):
        cache.waveform(2), cache.waveform(3)
    assert checked == [built.lengths[2], built.lengths[3]]
    import pickle

    pickle.loads(pickle.dumps(cache)).waveform(2)  # a DataLoader worker's copy checks for itself
    assert len(checked) == 3


def test_a_cache_from_before_checksums_gets_them_once_unless_truncated(cache_files, tmp_path, monkeypatch, caplog):
    built = _build(cache_files, tmp_path / "cache")
    index_path = built.directory / "index.json"
    index = json.loads(index_path.read_text())
    sums = index.pop("crc32")
    index_path.write_text(json.dumps({**index, "version": 2}))  # as mgr wrote it before checksums

    upgraded = _build(cache_files, tmp_path / "cache")
    assert "written before mgr recorded checksums" in caplog.text
    assert json.loads(index_path.read_text())["crc32"] == sums
    assert verify_command(f"caches={built.directory}").returncode == 0

    index_path.write_text(json.dumps({**index, "version": 2}))
    with open(built.data_path, "r+b") as f:
        f.truncate(built.itemsize * int(upgraded.offsets[-1]))
    decoded = _count_decoding(monkeypatch)
    rebuilt = _build(cache_files, tmp_path / "cache")  # no checksums to tell which files are intact: all decoded again
    assert decoded == cache_files
    assert _same_data(rebuilt, _build(cache_files, tmp_path / "fresh"))


def test_bytes_beyond_the_index_are_dropped_without_decoding(cache_files, tmp_path, monkeypatch, caplog):
    built = _build(cache_files, tmp_path / "cache")
    with open(built.data_path, "ab") as f:
        f.write(b"\0" * 400)  # a copy that wrote past the end
    decoded = _count_decoding(monkeypatch)
    repaired = _build(cache_files, tmp_path / "cache")
    assert "400 bytes more than its index accounts for" in caplog.text and decoded == []
    assert _same_data(repaired, _build(cache_files, tmp_path / "fresh"))


class _Killed(BaseException):
    """A kill, as the build sees one: nothing after it runs (decode_checked catches only Exception)."""


def _killed_build_after(cache_files, root, monkeypatch, decoded_files: int, dtype: str | None = None) -> Path:
    """A build killed while decoding file `decoded_files`, every file before it committed; its `.partial` folder."""
    monkeypatch.setattr(cache_module, "COMMIT_SECONDS", -1.0)  # commit after every file
    real, seen = cache_module.load_audio, []

    def dies(path, rate):
        if len(seen) == decoded_files:
            raise _Killed
        seen.append(path)
        return real(path, rate)

    with monkeypatch.context() as m:
        m.setattr(cache_module, "load_audio", dies)
        with pytest.raises(_Killed):
            _build(cache_files, root, dtype)
    (partial,) = root.glob("*.partial")
    assert (partial / "journal.jsonl").read_text().count("\n") == decoded_files
    return partial


def test_a_corrupt_journal_line_is_dropped_with_a_warning_and_the_build_resumes(cache_files, tmp_path, monkeypatch, caplog):
    partial = _killed_build_after(cache_files, tmp_path / "cache", monkeypatch, decoded_files=6)
    journal = partial / "journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    lines[4] = '[4000, "", 12\x00\x00\n'  # a line garbled on disk: every later build died on it with JSONDecodeError
    journal.write_text("".join(lines))

    decoded = _count_decoding(monkeypatch)
    resumed = _build(cache_files, tmp_path / "cache")
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "journal" in r.getMessage()]
    assert len(warnings) == 1 and f"Line 5 of {journal}" in warnings[0].getMessage()
    assert decoded == cache_files[4:]  # resumed after the last good line
    assert _same_data(resumed, _build(cache_files, tmp_path / "fresh"))
    assert not list((tmp_path / "cache").glob("*.partial"))


@DTYPES
def test_a_journal_line_whose_samples_do_not_match_resumes_before_it(cache_files, tmp_path, monkeypatch, caplog, dtype):
    partial = _killed_build_after(cache_files, tmp_path / "cache", monkeypatch, decoded_files=6, dtype=dtype)
    data = partial / cache_module.DATA_FILES[dtype]
    itemsize = np.dtype(cache_module.DTYPES[dtype]).itemsize
    raw = bytearray(data.read_bytes())
    raw[itemsize * (4000 + 4500 + 5000) + 17] ^= 0x01  # a sample of file 3, journaled but no longer what was decoded
    data.write_bytes(bytes(raw))

    decoded = _count_decoding(monkeypatch)
    resumed = _build(cache_files, tmp_path / "cache", dtype)
    assert decoded == cache_files[3:] and "Line 4 of" in caplog.text
    assert _same_data(resumed, _build(cache_files, tmp_path / "fresh", dtype))


@DTYPES
def test_a_full_disk_stops_with_one_sentence_and_the_build_resumes(cache_files, tmp_path, monkeypatch, dtype):
    """The disk fills while file 5 is written: part of its samples reach the file, then ENOSPC."""
    import builtins
    import errno

    monkeypatch.setattr(cache_module, "COMMIT_SECONDS", -1.0)
    itemsize = np.dtype(cache_module.DTYPES[dtype]).itemsize
    room = {"bytes": itemsize * sum(4000 + 500 * i for i in range(5)) + 1000}

    class FillingDisk:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            fits = min(len(data), room["bytes"])
            room["bytes"] -= fits
            self._f.write(bytes(data)[:fits])
            if fits < len(data):
                raise OSError(errno.ENOSPC, "No space left on device")
            return fits

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

    def open_on_a_small_disk(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        return FillingDisk(f) if Path(path).name == cache_module.DATA_FILES[dtype] and mode != "rb" else f

    with monkeypatch.context() as m:
        m.setattr(cache_module, "open", open_on_a_small_disk, raising=False)
        with pytest.raises(MGRError) as caught:
            _build(cache_files, tmp_path / "cache", dtype)
    message = str(caught.value)
    (partial,) = (tmp_path / "cache").glob("*.partial")
    assert "\n" not in message and message.count(". ") == 0, message
    assert message.startswith(f"The disk holding the waveform cache {partial.with_suffix('')} is full"), message
    assert "free" in message and "paths.cache_dir" in message and "resumes" in message
    assert (partial / "journal.jsonl").read_text().count("\n") == 5  # the torn file 5 is not counted as done

    decoded = _count_decoding(monkeypatch)
    resumed = _build(cache_files, tmp_path / "cache", dtype)
    assert decoded == cache_files[5:]
    assert _same_data(resumed, _build(cache_files, tmp_path / "fresh", dtype))


# The workers record that they started decoding, then decode for longer than the test waits.
SLOW_WORKERS = """
import os, sys, time
from pathlib import Path
from mgr.data import cache
def stuck(path, rate):
    (Path(sys.argv[3]) / str(os.getpid())).touch()
    time.sleep(120)
cache.load_audio = stuck
if __name__ == "__main__":
    cache.WaveformCache.build(open(sys.argv[1]).read().split(), 8000, sys.argv[2], "folder", num_workers=2)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; whoever adopted it may not reap it at once


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_decode_workers_die_with_their_parent(many_files, tmp_path):
    import signal
    import time

    (tmp_path / "files.txt").write_text("\n".join(many_files[:8]))
    (tmp_path / "started").mkdir()
    script = tmp_path / "slow_workers.py"
    script.write_text(SLOW_WORKERS)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "files.txt"), str(tmp_path / "cache"),
                             str(tmp_path / "started")], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list((tmp_path / "started").iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = [int(p.name) for p in (tmp_path / "started").iterdir()]
        assert len(workers) == 2 and all(map(_alive, workers))
        os.kill(proc.pid, signal.SIGKILL)  # the builder only, as the OOM killer or a kill -9 of its pid does
        proc.wait()
        deadline = time.monotonic() + 5
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, workers)), "decode workers outlived their parent"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the process group this test started
        except ProcessLookupError:
            pass


def test_a_float32_build_killed_before_cache_dtype_resumes_as_float32_by_default(cache_files, tmp_path, monkeypatch):
    """Its journal lines have no scale, and data.cache_dtype=null finishes it rather than start an int16 one."""
    partial = _killed_build_after(cache_files, tmp_path / "cache", monkeypatch, decoded_files=4, dtype="float32")
    journal = partial / "journal.jsonl"
    journal.write_text("".join(json.dumps(json.loads(line)[:3]) + "\n" for line in journal.read_text().splitlines()))

    decoded = _count_decoding(monkeypatch)
    resumed = _build(cache_files, tmp_path / "cache")
    assert resumed.dtype == "float32" and resumed.directory == partial.with_name(partial.name[: -len(".partial")])
    assert decoded == cache_files[4:]
    assert _same_data(resumed, _build(cache_files, tmp_path / "fresh", "float32"))
