"""mgr.data.datamodule: a missing dataset names its download command; evaluation shards across
DDP ranks without repeating a chunk, training's audio-sized epochs without losing one."""

from __future__ import annotations

import logging
import re

import pytest
import torch
import torch.distributed as dist

from conftest import NO_PLOTS, tiny
from mgr import MGRError
from mgr.data import GenreDataModule
from mgr.data.cache import WaveformCache
from mgr.data.chunking import chunk_starts
from mgr.data.datamodule import PADDING_LABEL, _shard
from mgr.data.datasets import RandomChunks
from mgr.data.sources.folder import FolderSource


def test_missing_dataset_names_the_download_command(run_mgr, tmp_path):
    with pytest.raises(MGRError, match="python -m mgr.download dataset=gtzan root="):
        GenreDataModule(source="gtzan", root=str(tmp_path / "nope"), cache_dir=str(tmp_path)).prepare_data()
    with pytest.raises(MGRError, match="python -m mgr.download dataset=fma_metadata root="):
        GenreDataModule(source="fma", root=str(tmp_path), cache_dir=str(tmp_path)).prepare_data()
    proc = run_mgr("train", "data=fma_small", f"data.root={tmp_path / 'fma'}", check=False)
    assert proc.returncode == 1
    assert "mgr: error: FMA metadata not found" in proc.stderr and "download dataset=fma_metadata" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_rank_without_evaluation_chunks_scores_one_padding_chunk(monkeypatch):
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    one_chunk = [(torch.ones(8000), 1, 0)]
    for rank, expected in ((0, [(1, 0)]), (1, [(PADDING_LABEL, 0)])):
        monkeypatch.setattr(dist, "get_rank", lambda: rank)
        dataset, sampler = _shard(one_chunk, shuffle=False)
        assert [dataset[i][1:] for i in sampler] == expected


def _small_cache(small_folder, tmp_path) -> WaveformCache:
    """small_folder's 8 tracks of 8000, 10000, 12000, 14000 samples (twice)."""
    return WaveformCache.build(FolderSource(str(small_folder)).list().files, 8000, tmp_path / "cache", "folder")


def test_an_audio_epoch_shards_across_ddp_ranks(small_folder, tmp_path, monkeypatch):
    train = RandomChunks(_small_cache(small_folder, tmp_path), [0, 1, 2, 3, 7], [0] * 8, chunk=4000,
                         chunks_per_track="audio")  # 2 + 3 + 3 + 4 + 4 crops
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    epochs = []
    for epoch in (0, 1):
        shares = []
        for rank in (0, 1):
            monkeypatch.setattr(dist, "get_rank", lambda: rank)
            _, sampler = _shard(train, shuffle=True)
            sampler.set_epoch(epoch)  # as Lightning does
            shares.append(list(sampler))
        # Each rank gets half of the epoch's crops, no crop twice, every track its share.
        assert len(shares[0]) == len(shares[1]) == 8 and sorted(shares[0] + shares[1]) == list(range(16))
        epochs.append(shares)
    assert epochs[0] != epochs[1]


def test_a_bad_chunks_per_track_stops_the_datamodule_before_any_decoding(run_mgr, tmp_path):
    with pytest.raises(MGRError, match="data.train_chunks_per_track must be a whole number >= 1, 'audio' or 'even', got 0."):
        GenreDataModule(source="gtzan", root=str(tmp_path / "nope"), cache_dir=str(tmp_path), train_chunks_per_track=0)
    proc = run_mgr("train", "data=synth", "data.train_chunks_per_track=x", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "mgr: error: data.train_chunks_per_track must be a whole number >= 1, 'audio' or 'even', got 'x'." in proc.stderr


def _training_loader(small_folder, tmp_path, caplog, chunks_per_track):
    """A set-up data module over the small folder (0.5 s chunks at 8 kHz) and its training loader,
    whose log lines caplog holds."""
    data = GenreDataModule(source="folder", root=str(small_folder), cache_dir=str(tmp_path / "cache"), sample_rate=8000,
                           chunk_seconds=0.5, split={"train": 0.5, "val": 0.25, "test": 0.25},
                           train_chunks_per_track=chunks_per_track)
    data.prepare_data()
    data.setup("fit")
    with caplog.at_level(logging.INFO, logger="mgr.data.datamodule"):
        return data, data.train_dataloader()


def test_setup_logs_the_training_epoch(small_folder, tmp_path, caplog):
    data, loader = _training_loader(small_folder, tmp_path, caplog, "audio")
    train = data.split_tracks["train"]
    assert len(loader.dataset) == sum(-(-data.cache.lengths[t] // 4000) for t in train)
    assert f"Training epoch: {len(loader.dataset)} crops of 0.5 s from {len(train)} tracks." in caplog.messages


def test_even_training_chunks_are_evaluations_chunks_every_epoch(small_folder, tmp_path, caplog):
    data, loader = _training_loader(small_folder, tmp_path, caplog, "even")
    train = data.split_tracks["train"]
    expected = [(k, int(s)) for k, t in enumerate(train) for s in chunk_starts(int(data.cache.lengths[t]), 4000)]
    assert loader.dataset.items == expected  # every chunk once, as evaluation cuts them
    assert f"Training epoch: the {len(expected)} evenly spaced chunks of 0.5 s of {len(train)} tracks." in caplog.messages
    first, second = ([int(i) for b in loader for i in b[2]] for _ in range(2))
    assert sorted(first) == sorted(second) == sorted(k for k, _ in expected) and first != second  # shuffled


@pytest.mark.slow
def test_training_with_audio_sized_epochs(run_mgr):
    proc = run_mgr("train", *tiny(), "debug=fast_dev_run", "data.train_chunks_per_track=audio", *NO_PLOTS)
    crops, tracks = map(int, re.search(r"Training epoch: (\d+) crops of 1.0 s from (\d+) tracks\.", proc.stdout).groups())
    assert 2 * tracks <= crops <= 4 * tracks  # the tiny synth tracks are 2 to 3.5 s


def test_training_with_an_empty_validation_split_is_one_sentence(tmp_path):
    from conftest import write_tone

    for label in ("a", "b"):
        write_tone(tmp_path / "music" / label / "one.wav", seconds=1.2)
    datamodule = GenreDataModule(source="folder", root=str(tmp_path / "music"), cache_dir=str(tmp_path / "cache"),
                                 sample_rate=8000, chunk_seconds=0.5, min_seconds=0.5)
    datamodule.prepare_data()
    with pytest.raises(MGRError, match=r"^The val split is empty \(tracks: train 2, val 0, test 0\); training needs"):
        datamodule.setup("fit")
    with pytest.raises(MGRError, match=r"^The test split is empty .*; testing needs"):
        datamodule.setup("test")


def test_track_groups_number_a_pieces_clips_alike_across_the_splits(tmp_path):
    """A manifest whose tracks come as 2 clips of one group: track_groups gives both clips one number,
    and numbers no two splits share."""
    from test_suite import write_tiny_task

    manifest = tmp_path / "suite" / "clips.csv"
    manifest.parent.mkdir()
    write_tiny_task(manifest, 2)
    data = GenreDataModule(source="folder", root=str(manifest), cache_dir=str(tmp_path / "cache"), sample_rate=8000,
                           chunk_seconds=0.5, folds=5, fold=0)
    data.prepare_data()
    data.setup("fit")
    numbers = {split: data.track_groups(split) for split in ("train", "val", "test")}
    for split, groups in numbers.items():
        files = [data.tracks.files[t] for t in data.split_tracks[split]]
        pieces = [f.rsplit(".", 2)[0] for f in files]  # .../t3.0.wav and .../t3.1.wav: the piece t3
        assert len(groups) == len(files) and len(set(groups)) == len(set(pieces)) == len(files) // 2
        assert all((a == b) == (p == q) for a, p in zip(groups, pieces) for b, q in zip(groups, pieces))
    assert not set(numbers["train"]) & set(numbers["val"]) and not set(numbers["train"]) & set(numbers["test"])
