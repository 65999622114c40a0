"""A damaged waveform cache is repaired or refused, never read as if it were whole:
extents checked on open, per-file checksums checked on first read, mgr.data.verify."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mgr import MGRError
from mgr.data import cache as cache_module
from mgr.data.cache import WaveformCache
from mgr.data.datasets import RandomChunks


@pytest.fixture
def files(tmp_path) -> list[str]:
    rng = np.random.default_rng(2)
    paths = []
    for i in range(12):
        path = tmp_path / "music" / f"{i:02d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), 0.1 * rng.standard_normal(4000 + 500 * i).astype(np.float32), 8000)
        paths.append(str(path))
    return paths


def _build(files, root) -> WaveformCache:
    return WaveformCache.build(files, 8000, root, "folder")


def _count_decoding(monkeypatch) -> list[str]:
    decoded: list[str] = []
    real = cache_module.load_audio
    monkeypatch.setattr(cache_module, "load_audio", lambda p, r: decoded.append(p) or real(p, r))
    return decoded


def _same_data(a: WaveformCache, b: WaveformCache) -> bool:
    return (a.directory / "waveforms.f32").read_bytes() == (b.directory / "waveforms.f32").read_bytes() \
        and a.lengths.tolist() == b.lengths.tolist()


def _verify(*overrides: str) -> subprocess.CompletedProcess:
    """python -m mgr.data.verify, its run directory (<log_dir>/verify/runs/...) in a temporary folder."""
    with tempfile.TemporaryDirectory() as logs:
        return subprocess.run([sys.executable, "-m", "mgr.data.verify", *overrides, f"paths.log_dir={logs}"],
                              capture_output=True, text=True, timeout=120)


def _untimed(stdout: str) -> list[str]:
    return sorted(line.rsplit(" (", 1)[0] for line in stdout.strip().splitlines())


def test_truncated_cache_is_refused_on_open_and_rebuilt_from_the_cut(files, tmp_path, monkeypatch, caplog):
    built = _build(files, tmp_path / "cache")
    data = built.directory / "waveforms.f32"
    cut = 4 * int(built.offsets[7] + 100)  # inside file 7: files 0-6 are whole
    with open(data, "r+b") as f:
        f.truncate(cut)
    with pytest.raises(MGRError, match=rf"waveform cache {built.directory} is damaged: .*cut short.*delete"):
        WaveformCache(built.directory)

    decoded = _count_decoding(monkeypatch)
    repaired = _build(files, tmp_path / "cache")
    assert repaired.directory == built.directory
    assert "damaged" in caplog.text and "cut short" in caplog.text
    assert decoded == files[7:]  # the intact files 0-6 are kept
    assert _same_data(repaired, _build(files, tmp_path / "fresh"))
    assert all(len(repaired.waveform(i)) == repaired.lengths[i] for i in range(len(files)))


def test_a_flipped_byte_stops_the_first_read_of_its_file(files, tmp_path):
    built = _build(files, tmp_path / "cache")
    data = built.directory / "waveforms.f32"
    raw = bytearray(data.read_bytes())
    raw[4 * int(built.offsets[5]) + 1001] ^= 0x10  # one bit of one sample of file 5
    data.write_bytes(bytes(raw))

    reopened = _build(files, tmp_path / "cache")  # the extents still match: opened as before
    reopened.waveform(4)
    with pytest.raises(MGRError, match=rf"waveform cache {built.directory} is damaged: the samples of .*05.wav "
                                       r"do not match .*; delete that folder"):
        reopened.waveform(5)

    # In a DataLoader worker, torch re-raises the error with the worker's traceback; the message stays one sentence.
    loader = torch.utils.data.DataLoader(RandomChunks(reopened, [5], [0] * len(files), chunk=1000), num_workers=1)
    with pytest.raises(MGRError) as caught:
        next(iter(loader))
    assert str(caught.value).startswith(f"The waveform cache {built.directory} is damaged") and "\n" not in str(caught.value)

    check = _verify(f"caches={built.directory}")
    assert check.returncode == 1
    assert check.stdout.strip().splitlines() == [
        f"DAMAGED {built.directory}: the samples of {files[5]} do not match the checksum written when it was "
        f"decoded (1 of {len(files)} files); delete that folder and the next run decodes it again."]


def test_a_deleted_index_rebuilds_the_cache(files, tmp_path, monkeypatch, caplog):
    built = _build(files, tmp_path / "cache")
    (built.directory / "index.json").unlink()
    assert "no index.json" in _verify(f"caches={tmp_path / 'cache'}").stdout

    decoded = _count_decoding(monkeypatch)
    rebuilt = _build(files, tmp_path / "cache")
    assert "no index.json" in caplog.text and decoded == files
    assert _same_data(rebuilt, _build(files, tmp_path / "fresh"))
    assert not list((tmp_path / "cache").glob("*.partial"))


def test_each_file_is_verified_once_per_process(files, tmp_path, monkeypatch):
    built = _build(files, tmp_path / "cache")
    sums = json.loads((built.directory / "index.json").read_text())["crc32"]
    assert len(sums) == len(files) and len(set(sums)) == len(files)
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


def test_a_cache_from_before_checksums_gets_them_once_unless_truncated(files, tmp_path, monkeypatch, caplog):
    built = _build(files, tmp_path / "cache")
    index_path = built.directory / "index.json"
    index = json.loads(index_path.read_text())
    sums = index.pop("crc32")
    index_path.write_text(json.dumps({**index, "version": 2}))  # as mgr wrote it before checksums

    upgraded = _build(files, tmp_path / "cache")
    assert "written before mgr recorded checksums" in caplog.text
    assert json.loads(index_path.read_text())["crc32"] == sums
    assert _verify(f"caches={built.directory}").returncode == 0

    index_path.write_text(json.dumps({**index, "version": 2}))
    with open(built.directory / "waveforms.f32", "r+b") as f:
        f.truncate(4 * int(upgraded.offsets[-1]))
    decoded = _count_decoding(monkeypatch)
    rebuilt = _build(files, tmp_path / "cache")  # no checksums to tell which files are intact: all decoded again
    assert decoded == files
    assert _same_data(rebuilt, _build(files, tmp_path / "fresh"))


def test_verify_command_summarises_good_caches(files, tmp_path):
    first = _build(files, tmp_path / "cache")
    second = WaveformCache.build(files[:3], 8000, tmp_path / "cache", "folder")
    check = _verify(f"paths.data_dir={tmp_path}")  # by default the caches under paths.cache_dir
    assert check.returncode == 0, check.stderr
    lines = check.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("2 caches, every checksum matches")
    assert {line.split()[1].rstrip(":") for line in lines[:2]} == {str(first.directory), str(second.directory)}
    assert all(line.startswith("ok ") and "every checksum matches" in line for line in lines[:2])
    both = _verify(f"caches=[{first.directory},{second.directory}]")
    assert both.returncode == 0 and _untimed(both.stdout) == _untimed(check.stdout)
    helped = _verify("--help")
    assert "python -m mgr.data.verify" in helped.stdout and "caches: ${paths.cache_dir}" in helped.stdout
    missing = _verify(f"caches={tmp_path / 'nothing_here'}")
    assert missing.returncode == 1 and missing.stderr.startswith(f"mgr: error: {tmp_path / 'nothing_here'} is no waveform cache")


def test_bytes_beyond_the_index_are_dropped_without_decoding(files, tmp_path, monkeypatch, caplog):
    built = _build(files, tmp_path / "cache")
    with open(built.directory / "waveforms.f32", "ab") as f:
        f.write(b"\0" * 400)  # a copy that wrote past the end
    decoded = _count_decoding(monkeypatch)
    repaired = _build(files, tmp_path / "cache")
    assert "400 bytes more than its index accounts for" in caplog.text and decoded == []
    assert _same_data(repaired, _build(files, tmp_path / "fresh"))
