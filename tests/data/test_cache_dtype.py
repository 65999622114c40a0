"""data.cache_dtype: int16 caches (scaled per file so nothing clips) and float16 ones read back within a
quantisation step of float32's samples, in half the bytes; the default keeps an existing float32 cache;
the data module's batches are dequantised on the device by on_after_batch_transfer."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import pytorch_lightning as pl
import soundfile as sf
import torch

from conftest import verify_command
from mgr import MGRError
from mgr.data import GenreDataModule
from mgr.data import cache as cache_module
from mgr.data.cache import WaveformCache
from mgr.data.datasets import Stored, cache_chunk, dequantise

RATE = 8000
PEAKS = {"full": 1.0, "over": 1.7, "quiet": 0.001}  # full scale, above it (as resampling can give), -60 dBFS


@pytest.fixture
def level_files(tmp_path) -> list[str]:
    """A noise file at full scale, one above it and a quiet one, stored as float WAVs (nothing clipped)."""
    rng = np.random.default_rng(5)
    files = []
    for name, peak in PEAKS.items():
        noise = rng.uniform(-1, 1, RATE + 1000 * len(files))
        noise[100] = 1.0  # the peak, exactly
        path = tmp_path / "music" / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), (peak * noise).astype(np.float32), RATE, subtype="FLOAT")
        files.append(str(path))
    return files


def _samples(cache: WaveformCache, track: int) -> np.ndarray:
    return cache_chunk(cache, track, 0, int(cache.lengths[track])).numpy()


def test_int16_round_trips_each_level_within_a_quantisation_step(level_files, tmp_path):
    exact = WaveformCache.build(level_files, RATE, tmp_path / "cache", "folder", dtype="float32")
    small = WaveformCache.build(level_files, RATE, tmp_path / "cache", "folder", dtype="int16")
    assert small.directory != exact.directory and small.directory.name.startswith(f"folder-{RATE}Hz-int16-")
    assert small.data_path.name == "waveforms.i16" and small.waveform(0).dtype == np.int16
    for i, peak in enumerate(PEAKS.values()):
        x = np.asarray(exact.waveform(i))
        assert np.abs(x).max() == pytest.approx(peak, rel=1e-6)
        scale = max(1.0, float(np.abs(x).max()))
        assert small.scales[i] == pytest.approx(scale)  # over full scale: its own scale, else 1
        step = scale / 32767
        error = np.abs(_samples(small, i) - x).max()
        # Half a step of rounding, and float32's own rounding of samples near the scale.
        assert error <= 0.5 * step + scale * 2 ** -20, (peak, error, step)
        if peak >= 1:  # the peak uses the full range
            assert np.abs(small.waveform(i)).max() == 32767


def test_float16_round_trips_relative_to_the_level(level_files, tmp_path):
    exact = WaveformCache.build(level_files, RATE, tmp_path / "cache", "folder", dtype="float32")
    half = WaveformCache.build(level_files, RATE, tmp_path / "cache", "folder", dtype="float16")
    for i, peak in enumerate(PEAKS.values()):
        x = np.asarray(exact.waveform(i))
        assert np.abs(_samples(half, i) - x).max() <= peak * 2 ** -11  # float16's 11 significant bits


def test_compact_caches_take_half_the_bytes_of_float32(cache_files, tmp_path):
    sizes = {dtype: WaveformCache.build(cache_files, RATE, tmp_path / "cache", "folder", dtype=dtype).data_path.stat().st_size
             for dtype in ("float32", "int16", "float16")}
    assert sizes["int16"] == sizes["float16"] == sizes["float32"] // 2


def _as_written_before_cache_dtype(cache: WaveformCache) -> None:
    """The index a float32 cache had before data.cache_dtype: no dtype, no scales."""
    path = cache.directory / "index.json"
    index = json.loads(path.read_text())
    del index["dtype"], index["scales"]
    path.write_text(json.dumps(index))


def _count_decoding(monkeypatch) -> list[str]:
    decoded: list[str] = []
    real = cache_module.load_audio
    monkeypatch.setattr(cache_module, "load_audio", lambda p, r: decoded.append(p) or real(p, r))
    return decoded


def test_an_old_float32_cache_is_used_as_it_is_by_default(cache_files, tmp_path, monkeypatch):
    old = WaveformCache.build(cache_files, RATE, tmp_path / "cache", "folder", dtype="float32")
    _as_written_before_cache_dtype(old)
    # Its name is the one mgr gave it before data.cache_dtype: the key over the same header and files as then.
    h = hashlib.sha1(f"v{cache_module.CACHE_VERSION}|mono|{RATE}|min0|silence0.0001".encode())
    for f in cache_files:
        h.update(f"\n{f}|{os.stat(f).st_size}|{os.stat(f).st_mtime_ns}".encode())
    assert old.directory.name == f"folder-{RATE}Hz-{h.hexdigest()[:16]}"

    decoded = _count_decoding(monkeypatch)
    for dtype in (None, "float32"):  # the default, and asked for
        found = WaveformCache.build(cache_files, RATE, tmp_path / "cache", "folder", dtype=dtype)
        assert found.directory == old.directory and found.dtype == "float32" and found.scales.tolist() == [1.0] * 12
        np.testing.assert_array_equal(_samples(found, 3), np.asarray(found.waveform(3)))
    assert decoded == [] and len(list((tmp_path / "cache").iterdir())) == 2  # the cache and its lock: nothing beside
    assert verify_command(f"caches={old.directory}").stdout.startswith(f"ok {old.directory}: 12 files")

    # int16 asked for: decoded beside it; from then on the default takes the int16 one.
    small = WaveformCache.build(cache_files, RATE, tmp_path / "cache", "folder", dtype="int16")
    assert decoded == cache_files and old.directory.exists()
    assert WaveformCache.build(cache_files, RATE, tmp_path / "cache", "folder").directory == small.directory


def test_the_default_for_a_new_cache_is_int16(cache_files, tmp_path):
    assert WaveformCache.build(cache_files, RATE, tmp_path / "cache", "folder").dtype == "int16"


def test_an_unknown_dtype_is_one_sentence_before_any_work(small_folder, tmp_path):
    with pytest.raises(MGRError, match=r"^data.cache_dtype must be int16, float16, float32 or null \(.*\); got 'int8'.$"):
        GenreDataModule(source="folder", root=str(small_folder), cache_dir=str(tmp_path / "cache"), cache_dtype="int8")
    assert not (tmp_path / "cache").exists()


def _data(small_folder, tmp_path, dtype) -> GenreDataModule:
    data = GenreDataModule(source="folder", root=str(small_folder), cache_dir=str(tmp_path / "cache"), sample_rate=RATE,
                           chunk_seconds=0.5, split={"train": 0.5, "val": 0.25, "test": 0.25}, cache_dtype=dtype,
                           num_workers=0)
    data.prepare_data()
    data.setup("fit")
    return data


def test_batches_after_the_transfer_hook_equal_float32_within_a_step(small_folder, tmp_path):
    exact, small = _data(small_folder, tmp_path, "float32"), _data(small_folder, tmp_path, "int16")
    assert small.cache.dtype == "int16" and exact.cache.dtype == "float32"
    for split in ("val_dataloader", "test_dataloader"):
        (reference, *rest), batch = next(iter(getattr(exact, split)())), next(iter(getattr(small, split)()))
        assert isinstance(batch[0], Stored) and batch[0].samples.dtype == torch.int16  # half the bytes to copy
        wave, target, track = small.on_after_batch_transfer(batch, 0)
        assert wave.dtype == torch.float32 and wave.shape == reference.shape
        assert (wave - reference).abs().max() <= 0.5 / 32767 * 1.001  # these files stay under full scale: scale 1
        assert target.tolist() == rest[0].tolist() and track.tolist() == rest[1].tolist()
    train = next(iter(small.train_dataloader()))
    assert isinstance(train[0], Stored) and small.on_after_batch_transfer(train, 0)[0].dtype == torch.float32
    unchanged = next(iter(exact.val_dataloader()))  # a float32 cache's batch passes as it is
    assert exact.on_after_batch_transfer(unchanged, 0)[0] is unchanged[0]
    assert dequantise(reference) is reference
    # Readers that bypass Lightning's hooks (mgr.embed, the feature images) get float32 from eval_dataset.
    wave, _, _ = small.eval_dataset("val")[0]
    assert wave.dtype == torch.float32 and (wave - exact.eval_dataset("val")[0][0]).abs().max() <= 0.5 / 32767 * 1.001


class _SeesBatches(pl.LightningModule):
    """Records the waveforms Lightning hands to validation_step."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.seen: list[torch.Tensor] = []

    def validation_step(self, batch, batch_idx):
        self.seen.append(batch[0])


def test_lightning_calls_the_data_modules_transfer_hook(small_folder, tmp_path):
    exact, small = _data(small_folder, tmp_path, "float32"), _data(small_folder, tmp_path, "int16")
    models = {}
    for name, data in (("float32", exact), ("int16", small)):
        models[name] = _SeesBatches()
        pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False).validate(models[name], datamodule=data, verbose=False)
    seen = [torch.cat(models[name].seen) for name in ("float32", "int16")]
    assert seen[1].dtype == torch.float32 and (seen[1] - seen[0]).abs().max() <= 0.5 / 32767 * 1.001
