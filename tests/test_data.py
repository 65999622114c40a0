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
from mgr.data.sources import FolderSource, SynthSource
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
