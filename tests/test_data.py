"""Synth generation, decoding, the waveform cache, splits and chunking."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mgr import MGRError
from mgr.data import cache as cache_module
from mgr.data import synth
from mgr.data.audio import DecodeError, load_audio
from mgr.data.cache import WaveformCache
from mgr.data.datasets import EvenChunks, RandomChunks
from mgr.data.sources.folder import FolderSource
from mgr.data.sources.synth import SynthSource
from mgr.data.splits import check_disjoint, stratified_split


def _digest(folder: Path) -> dict[str, str]:
    """Hash of the decoded audio (Ogg streams carry a random serial number, so bytes differ)."""
    return {
        str(p.relative_to(folder)): hashlib.sha1(sf.read(str(p), dtype="float32")[0].tobytes()).hexdigest()
        for p in sorted(folder.rglob("*.*"))
        if p.suffix != ".json"
    }


def test_synth_is_deterministic_and_mixes_formats(tmp_path):
    a = synth.generate(tmp_path / "a", 3, (1.0, 2.0), seed=7)
    b = synth.generate(tmp_path / "b", 3, (1.0, 2.0), seed=7)
    c = synth.generate(tmp_path / "c", 3, (1.0, 2.0), seed=8)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    tracks = SynthSource(str(tmp_path / "a"), 3, (1.0, 2.0), 7).list()
    assert len(tracks.class_names) >= 4 and len(tracks.files) == 3 * len(tracks.class_names)
    assert {Path(f).suffix for f in tracks.files} == {".wav", ".flac", ".ogg"}
    assert {sf.info(f).channels for f in tracks.files} == {1}  # stereo appears from the 4th track on
    assert {sf.info(f).samplerate for f in tracks.files} == {22050}  # other rates from the 4th track on
    # Asking again reuses the files instead of generating anew.
    mtime = Path(tracks.files[0]).stat().st_mtime_ns
    synth.generate(tmp_path / "a", 3, (1.0, 2.0), seed=7)
    assert Path(tracks.files[0]).stat().st_mtime_ns == mtime


def test_synth_classes_differ_in_sound():
    """Each class has its own spectral shape: the class means of a coarse spectrum are far apart."""
    def spectrum(label, seed):
        x = synth.render_track(label, seed, 2.0)
        s = np.abs(np.fft.rfft(x))[: 8000]
        return np.log(s.reshape(40, -1).mean(1) + 1e-6)

    means = [np.mean([spectrum(c, s) for s in range(3)], axis=0) for c in range(len(synth.CLASSES))]
    for i in range(len(means)):
        for j in range(i + 1, len(means)):
            assert np.abs(means[i] - means[j]).mean() > 0.3, (synth.CLASSES[i], synth.CLASSES[j])


def _write(path: Path, audio: np.ndarray, rate: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, rate)
    return path


def test_load_audio_downmixes_and_resamples(tmp_path):
    t = np.arange(44100) / 44100
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = _write(tmp_path / "stereo.flac", np.stack([tone, tone], 1), 44100)
    audio = load_audio(path, 22050)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 22050) <= 1
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.02)


def test_corrupt_files_raise_decode_error(tmp_path):
    good = _write(tmp_path / "good.wav", np.zeros(8000, dtype=np.float32) + 0.1, 8000)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("this is not audio\n" * 20)
    data = good.read_bytes()
    (tmp_path / "truncated.wav").write_bytes(data[: len(data) // 2])
    for name in ("empty.wav", "text.wav", "truncated.wav"):
        with pytest.raises(DecodeError):
            load_audio(tmp_path / name, 8000)


@pytest.fixture
def small_folder(tmp_path) -> Path:
    root = tmp_path / "music"
    rng = np.random.default_rng(0)
    for genre in ("a", "b"):
        for i in range(4):
            _write(root / genre / f"{i}.wav", 0.1 * rng.standard_normal(8000 + 2000 * i).astype(np.float32), 8000)
    return root


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
    _write(Path(files[0]), np.zeros(100, dtype=np.float32), 8000)  # a changed file
    assert WaveformCache.build(files, 8000, tmp_path / "cache", "folder").directory != first
    assert not list((tmp_path / "cache").glob("*.partial-*"))


def test_cache_reports_bad_files(small_folder, tmp_path):
    (small_folder / "a" / "broken.wav").write_bytes(b"RIFF")
    files = FolderSource(str(small_folder)).list().files
    cache = WaveformCache.build(files, 8000, tmp_path / "cache", "folder")
    bad = [f for f in files if f.endswith("broken.wav")]
    assert list(cache.bad_files) == bad and not cache.is_ok(files.index(bad[0]))
    assert "broken.wav" in cache.report_path.read_text()


def test_folder_source_errors_are_clear(tmp_path):
    with pytest.raises(MGRError, match="needs data.root"):
        FolderSource(None).list()
    with pytest.raises(MGRError, match="does not exist"):
        FolderSource(str(tmp_path / "nope")).list()
    (tmp_path / "empty" / "rock").mkdir(parents=True)
    with pytest.raises(MGRError, match="need at least 2"):
        FolderSource(str(tmp_path / "empty")).list()


def test_split_is_stratified_deterministic_and_disjoint():
    labels = [i % 4 for i in range(200)]
    a = stratified_split(labels, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    b = stratified_split(labels, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    c = stratified_split(labels, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=4)
    assert a == b and a != c
    assert sorted(sum(a.values(), [])) == list(range(200))
    assert [len(a[k]) for k in ("train", "val", "test")] == [160, 20, 20]
    for k in ("val", "test"):
        assert sorted(np.bincount([labels[i] for i in a[k]])) == [5, 5, 5, 5]
    s = stratified_split(labels, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=3)
    assert [len(s[k]) for k in ("train", "val", "test")] == [120, 40, 40]


def test_check_disjoint_catches_leaks():
    with pytest.raises(MGRError, match="both the train and the test"):
        check_disjoint({"train": [1, 2], "val": [3], "test": [2]})


def test_chunk_datasets(small_folder, tmp_path):
    files = FolderSource(str(small_folder)).list().files
    cache = WaveformCache.build(files, 8000, tmp_path / "cache", "folder")
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    train = RandomChunks(cache, [0, 3, 5], labels, chunk=9000, chunks_per_track=2)
    assert len(train) == 6
    wave, label, k = train[0]
    assert wave.shape == (9000,) and label == 0 and k == 0
    assert (wave[8000:] == 0).all()  # an 8000-sample track is padded to the chunk length
    evaluation = EvenChunks(cache, [0, 3], labels, chunk=4000)
    # 8000 samples -> 2 chunks; 14000 -> 4 chunks evenly spaced from 0 to 10000
    assert [item for item in evaluation.items] == [(0, 0), (0, 4000), (1, 0), (1, 3333), (1, 6667), (1, 10000)]
    wave, label, k = evaluation[5]
    np.testing.assert_array_equal(wave.numpy(), cache.waveform(3)[10000:14000])
    assert (label, k) == (0, 1)


# The hardened cache: bad files, parallel decoding, crashes, concurrent builders ----------------

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
    return [str(_write(tmp_path / "many" / f"{i:03d}.wav", 0.1 * rng.standard_normal(4000 + 100 * i).astype(np.float32), 8000))
            for i in range(40)]


def _cache_bytes(cache: WaveformCache) -> tuple[bytes, list, list]:
    return (cache.directory / "waveforms.f32").read_bytes(), cache.lengths.tolist(), cache.offsets.tolist()


def _child(args: list[str], tmp_path: Path) -> "subprocess.Popen":
    import subprocess
    import sys

    script = tmp_path / "child_build.py"
    script.write_text(CHILD_BUILD)
    return subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cache_reports_each_kind_of_bad_file(tmp_path):
    root = tmp_path / "music"
    _write(root / "a" / "good.wav", 0.1 * np.ones(8000, dtype=np.float32), 8000)
    _write(root / "a" / "silent.wav", np.zeros(8000, dtype=np.float32), 8000)
    _write(root / "a" / "short.wav", 0.1 * np.ones(2000, dtype=np.float32), 8000)
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
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert journal is not None and not list((tmp_path / "cache").glob("*Hz-????????????????"))  # nothing final
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
    crash = _write(tmp_path / "many" / "crash.wav", 0.1 * np.ones(8000, dtype=np.float32), 8000)
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
