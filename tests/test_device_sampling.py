"""data.on_device (mgr.data.device_chunks): chunks gathered by index from the cache's samples in the
training process give exactly today's evaluation batches, today's training items per epoch (crop
starts drawn from (seed, epoch) instead of a worker's RNG: see the module docstring), the same DDP
shares, and where the cache does not fit, today's loaders with one line saying why."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from conftest import NO_PLOTS, metrics_of, mgr_in_process, tiny
from mgr import MGRError
from mgr.data import GenreDataModule
from mgr.data import device_chunks
from mgr.data.cache import CacheDamaged
from mgr.data.datamodule import PADDING_LABEL, _shard
from mgr.data.datasets import Stored, crops_per_track
from mgr.data.device_chunks import DeviceChunks

RATE = 8000


def _data(small_folder, tmp_path, on_device, dtype="int16", chunk_seconds=0.5, **settings) -> GenreDataModule:
    """A set-up data module over small_folder's 8 tracks of 1 to 1.75 s (one cache per dtype, shared)."""
    data = GenreDataModule(source="folder", root=str(small_folder), cache_dir=str(tmp_path / "cache"), sample_rate=RATE,
                           chunk_seconds=chunk_seconds, split={"train": 0.5, "val": 0.25, "test": 0.25},
                           cache_dtype=dtype, num_workers=0, batch_size=3, eval_batch_size=2, on_device=on_device,
                           **settings)
    data.prepare_data()
    data.setup("fit")
    return data


def _batches(loader) -> list[tuple]:
    """A loader's batches with a Stored wave as its two tensors, for comparing with torch.equal."""
    return [(*(b[0] if isinstance(b[0], Stored) else (b[0],)), *b[1:]) for b in loader]


def _assert_same_batches(ours, todays) -> None:
    assert len(ours) == len(todays) > 0
    for a, b in zip(ours, todays, strict=True):
        assert len(a) == len(b) and all(x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("dtype", ["int16", "float32"])
@pytest.mark.parametrize("chunk_seconds", [0.5, 1.5])  # 1.5 s: longer than some tracks, zero-padded
@pytest.mark.parametrize("max_chunks", [None, 2])
def test_evaluation_batches_are_todays(small_folder, tmp_path, dtype, chunk_seconds, max_chunks):
    settings = dict(dtype=dtype, chunk_seconds=chunk_seconds, eval_max_chunks=max_chunks)
    todays, ours = (_data(small_folder, tmp_path, on_device, **settings) for on_device in (False, True))
    for split in ("val_dataloader", "test_dataloader"):
        loader = getattr(ours, split)()
        assert isinstance(loader, DeviceChunks) and isinstance(getattr(todays, split)(), DataLoader)
        _assert_same_batches(_batches(loader), _batches(getattr(todays, split)()))
    # the even training chunks too, as a set: their order is the epoch's shuffle
    even = [_data(small_folder, tmp_path, on_device, train_chunks_per_track="even", **settings) for on_device in (False, True)]
    chunks = [sorted((int(k), w.tobytes()) for b in loader for w, k in zip(_waves(b), b[2]))
              for loader in (d.train_dataloader() for d in even)]
    assert chunks[0] == chunks[1]


def _waves(batch) -> np.ndarray:
    return (batch[0].samples if isinstance(batch[0], Stored) else batch[0]).numpy()


def test_an_int16_cache_gives_both_paths_the_same_float32_batches(small_folder, tmp_path):
    todays, ours = (_data(small_folder, tmp_path, on_device, chunk_seconds=1.5) for on_device in (False, True))
    assert ours.cache.dtype == "int16"
    for a, b in zip(ours.val_dataloader(), todays.val_dataloader(), strict=True):
        wave, reference = ours.on_after_batch_transfer(a, 0)[0], todays.on_after_batch_transfer(b, 0)[0]
        assert wave.dtype == torch.float32 and torch.equal(wave, reference)


def _start_of(chunk: np.ndarray, track: np.ndarray) -> int:
    """Where `chunk` (noise: one place only) lies in `track`, zero-padded past its end as crop pads it."""
    padded = np.pad(track, (0, max(len(chunk) - len(track), 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, len(chunk))
    (starts,) = np.nonzero((windows == chunk).all(axis=1))
    assert len(starts) == 1
    return int(starts[0])


def _epoch(data: GenreDataModule, loader, epoch: int) -> list[tuple[int, int]]:
    """(track position, crop start) of each chunk of one epoch, in the order read."""
    loader.sampler.set_epoch(epoch)
    train = data.split_tracks["train"]
    return [(int(k), _start_of(w, data.cache.waveform(train[int(k)]))) for b in loader for w, k in zip(_waves(b), b[2])]


@pytest.mark.parametrize("chunks_per_track", [3, "audio"])
def test_training_epochs_crop_every_track_as_often_as_today_and_repeat_with_the_seed(small_folder, tmp_path, monkeypatch,
                                                                                     chunks_per_track):
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    todays, ours = (_data(small_folder, tmp_path, on_device, train_chunks_per_track=chunks_per_track)
                    for on_device in (False, True))
    train = ours.split_tracks["train"]
    loader = ours.train_dataloader()
    assert len(loader.dataset) == len(todays.train_dataloader().dataset) and loader.batch_size == 3
    epochs = [_epoch(ours, loader, e) for e in (0, 1)]
    counts = dict(enumerate(crops_per_track(ours.cache.lengths[train], ours.chunk, chunks_per_track)))
    for chunks in epochs:
        assert Counter(k for k, _ in chunks) == counts == Counter(int(k) for k in todays.train_dataloader().dataset.items)
        assert all(0 <= s <= ours.cache.lengths[train[k]] - ours.chunk for k, s in chunks)  # uniform over the track
    assert epochs[0] != epochs[1]
    # A new run (or a resumed one) with the seed reads each epoch as the first did.
    again = _data(small_folder, tmp_path, True, train_chunks_per_track=chunks_per_track)
    assert [_epoch(again, again.train_dataloader(), e) for e in (1, 0)] == epochs[::-1]
    # Read again without set_epoch (outside Lightning), the loader moves on to the next epoch.
    loader.sampler.set_epoch(0)
    assert [[int(k) for b in loader for k in b[2]] for _ in range(2)] == [[k for k, _ in chunks] for chunks in epochs]


def _as_rank(monkeypatch, rank: int, world_size: int = 2) -> None:
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: world_size)
    monkeypatch.setattr(dist, "get_rank", lambda: rank)


def test_ddp_ranks_read_todays_shares(small_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    todays, ours = (_data(small_folder, tmp_path, on_device, train_chunks_per_track="audio") for on_device in (False, True))
    items = ours.train_dataloader().dataset.items  # 2 + 3 + 3 + 4 crops of the 4 training tracks: 12 for 2 ranks
    evaluation = todays.eval_dataset("val", stored=True)
    for epoch in (0, 1):
        shares = []
        for rank in (0, 1):
            _as_rank(monkeypatch, rank)
            _, sampler = _shard(todays.train_dataloader().dataset, shuffle=True)
            sampler.set_epoch(epoch)
            loader = ours.train_dataloader()
            loader.sampler.set_epoch(epoch)
            shares.append([int(k) for b in loader for k in b[2]])
            assert shares[-1] == [int(items[i]) for i in sampler]  # DistributedSampler's items, in its order
            # evaluation: today's disjoint unpadded share, batch for batch
            dataset, indices = _shard(evaluation, shuffle=False)
            _assert_same_batches(_batches(ours.val_dataloader()),
                                 _batches(DataLoader(dataset, batch_size=2, sampler=indices)))
        assert Counter(shares[0] + shares[1]) == Counter(int(k) for k in items)


def test_a_rank_without_evaluation_chunks_scores_one_padding_chunk(small_folder, tmp_path, monkeypatch):
    ours = _data(small_folder, tmp_path, True, eval_max_chunks=1)  # the 2 val tracks: 2 chunks for 3 ranks
    shares = []
    for rank in range(3):
        _as_rank(monkeypatch, rank, world_size=3)
        shares.append([(b[1].tolist(), b[2].tolist()) for b in ours.val_dataloader()])
    labels = [ours.tracks.labels[t] for t in ours.split_tracks["val"]]
    assert shares == [[([labels[0]], [0])], [([labels[1]], [1])], [([PADDING_LABEL], [0])]]


def test_multi_label_rows_are_gathered_by_track(small_folder, tmp_path):
    """Labels as rows of 0/1 per class (a float tensor [tracks, classes]) come out as each chunk's row."""
    ours = _data(small_folder, tmp_path, True)
    rows = torch.tensor([[1.0, 0.0, 1.0]] * len(ours.tracks.files))
    rows[:, 1] = torch.arange(len(rows), dtype=torch.float32)
    dataset = ours.eval_dataset("test", stored=True)
    dataset.labels = rows
    loader = DeviceChunks(ours._resident_samples(), dataset, 2, False, ours.cache)
    for _, labels, positions in loader:
        assert labels.dtype == torch.float32 and torch.equal(labels, rows[torch.as_tensor(dataset.tracks)[positions]])


def test_a_frozen_encoders_probe_keeps_reading_its_embedding_cache_with_todays_loaders(small_folder, tmp_path):
    from mgr.data.embeddings import ChunkEmbeddings, EmbeddedChunks

    data = _data(small_folder, tmp_path, True)
    store = ChunkEmbeddings.build(data.cache, data.embedding_chunks(), data.chunk, {"name": "mean", "weights_sha256": "0"},
                                  [1], lambda wave: [wave.mean(1, keepdim=True)], str(tmp_path / "cache"),
                                  device=torch.device("cpu"), batch_size=4, name="mean")
    data.use_embeddings(store, [0])
    for loader in (data.train_dataloader(), data.val_dataloader(), data.test_dataloader()):
        assert isinstance(loader, DataLoader) and isinstance(loader.dataset, EmbeddedChunks)


def test_a_damaged_cache_stops_the_first_batch_as_todays_loader_does(small_folder, tmp_path):
    data = _data(small_folder, tmp_path, True)
    loader = data.train_dataloader()  # nothing read yet: a loader only measured (training_length) costs nothing
    with open(data.cache.data_path, "r+b") as f:  # same size, other samples: only the checksums can tell
        f.seek(100)
        f.write(b"\x01\x02" * 50)
    with pytest.raises(CacheDamaged, match="do not match the checksum written when it was decoded"):
        next(iter(loader))


def test_multi_label_synth_batches_are_todays(tmp_path):
    """The multi-label source's rows of 0/1 reach the model as today's loaders give them."""
    settings = dict(source="synth", root=str(tmp_path / "synth"), cache_dir=str(tmp_path / "cache"), sample_rate=RATE,
                    chunk_seconds=1.0, min_seconds=1.0, batch_size=5, eval_batch_size=4, num_workers=0,
                    source_options={"tracks_per_class": 4, "seconds": [1.5, 2.5], "multilabel": True})
    todays, ours = (GenreDataModule(**settings, on_device=on_device) for on_device in (False, True))
    for data in (todays, ours):
        data.prepare_data()
        data.setup("fit")
    assert np.ndim(ours.tracks.labels) == 2
    for split in ("val_dataloader", "test_dataloader"):
        batches = _batches(getattr(ours, split)())
        assert batches[0][2].dtype == torch.float32 and batches[0][2].dim() == 2  # [chunks, classes]
        _assert_same_batches(batches, _batches(getattr(todays, split)()))


def test_auto_falls_back_to_loader_workers_where_the_cache_does_not_fit(small_folder, tmp_path, monkeypatch, caplog):
    needed = _data(small_folder, tmp_path, False).cache.data_path.stat().st_size
    with caplog.at_level(logging.INFO, logger="mgr.data.device_chunks"):
        assert isinstance(_data(small_folder, tmp_path, "auto").train_dataloader(), DeviceChunks)
    (line,) = caplog.messages
    assert re.fullmatch(rf"Chunks drawn on cpu by index from the waveform cache \({needed / 1000:.1f} KB of int16, within "
                        r"50% of the .* of host memory available\), without DataLoader workers \(data.on_device=auto\).",
                        line)
    caplog.clear()
    monkeypatch.setattr(device_chunks, "memory_budget", lambda home: (needed - 1, "a test's budget"))
    data = _data(small_folder, tmp_path, "auto")
    with caplog.at_level(logging.INFO, logger="mgr.data.device_chunks"):
        assert all(isinstance(loader, DataLoader) for loader in (data.train_dataloader(), data.val_dataloader()))
    assert caplog.messages == [f"Chunks read by DataLoader workers: the waveform cache ({needed / 1000:.1f} KB of int16) "
                               "does not fit in a test's budget (data.on_device=auto)."]
    with pytest.raises(MGRError, match=r"^data.on_device=true, but the waveform cache \(.* of int16\) does not fit in "
                                       r"a test's budget: set data.on_device=auto or false to read it with DataLoader "
                                       r"workers\.$"):
        _data(small_folder, tmp_path, True).train_dataloader()
    with pytest.raises(MGRError, match=r"\(.* of float32\) does not fit in a test's budget: .*workers, or store it in "
                                       r"half the bytes with data.cache_dtype=int16\.$"):
        _data(small_folder, tmp_path, True, dtype="float32").val_dataloader()


def test_on_a_gpu_the_samples_live_in_its_memory_where_they_fit_else_in_the_hosts(small_folder, tmp_path, monkeypatch,
                                                                                    caplog):
    cache = _data(small_folder, tmp_path, False).cache
    gpu = torch.device("cuda:0")  # only named: choose_home asks memory_budget, which the test answers
    for gpu_bytes, home in ((10**9, gpu), (10, torch.device("cpu"))):
        budgets = {"cuda": (gpu_bytes, "the GPU's budget"), "cpu": (10**9, "the host's budget")}
        monkeypatch.setattr(device_chunks, "memory_budget", lambda where: budgets[where.type])
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="mgr.data.device_chunks"):
            assert device_chunks.choose_home("auto", cache, gpu) == home
        assert caplog.messages[0].startswith(f"Chunks drawn on {home} by index")
        assert caplog.messages[0].endswith("workers (data.on_device=auto).")
        assert ("each batch copied to cuda:0" in caplog.messages[0]) == (home.type == "cpu")
    monkeypatch.setattr(device_chunks, "memory_budget", lambda where: (10, f"the {where.type} budget"))
    with pytest.raises(MGRError, match=r"does not fit in the cuda budget nor in the cpu budget: "):
        device_chunks.choose_home(True, cache, gpu)


def test_a_wrong_on_device_is_one_sentence_before_any_work(run_mgr, tmp_path):
    for wrong in ("maybe", 1, None):
        with pytest.raises(MGRError, match=r"^data.on_device must be auto \(where the waveform cache fits in memory\), "
                                           r"true or false; got "):
            GenreDataModule(source="folder", root=str(tmp_path), cache_dir=str(tmp_path / "cache"), on_device=wrong)
    proc = run_mgr("train", "data=synth", "data.on_device=maybe", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "mgr: error: data.on_device must be auto (where the waveform cache fits in memory), true or false; got 'maybe'." \
        in proc.stderr


def test_training_on_the_device_end_to_end(run_mgr):
    proc = run_mgr("train", *tiny(), "data.on_device=true", *NO_PLOTS)
    assert "Chunks drawn on cpu by index from the waveform cache" in proc.stdout
    assert "test/track_acc" in metrics_of(proc)


@pytest.mark.slow
def test_ddp_on_the_device_scores_as_one_process(run_mgr, tmp_path, data_dir):
    """2 ddp_cpu ranks, each drawing its share from its own map of the cache, train and test; the same
    checkpoint evaluated in one process gives the same test metrics."""
    trained = run_mgr("train", *tiny(), "trainer=ddp_cpu", "data.on_device=true", *NO_PLOTS)
    assert trained.stdout.count("Chunks drawn on cpu by index from the waveform cache") == 1  # rank 0 logs
    metrics = metrics_of(trained)
    (tmp_path / "eval").mkdir()
    mgr_in_process("eval", f"ckpt_path={metrics['best_checkpoint']}", cwd=tmp_path / "eval", data_dir=data_dir)
    (eval_dir,) = (tmp_path / "eval" / "logs" / "eval" / "runs").iterdir()
    one_process = json.loads((eval_dir / "metrics.json").read_text())
    for key in ("test/acc", "test/f1", "test/track_acc", "test/track_f1", "test/loss"):
        assert metrics[key] == pytest.approx(one_process[key], abs=1e-5), key
    assert metrics["chunk_confusion"] == one_process["chunk_confusion"]
