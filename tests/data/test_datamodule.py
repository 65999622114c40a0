"""mgr.data.datamodule: a missing dataset names its download command; evaluation shards across
DDP ranks without repeating a chunk."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from mgr import MGRError
from mgr.data import GenreDataModule
from mgr.data.datamodule import PADDING_LABEL, _shard


def test_missing_dataset_names_the_download_command(run_mgr, tmp_path):
    with pytest.raises(MGRError, match="python -m mgr.data.download dataset=gtzan root="):
        GenreDataModule(source="gtzan", root=str(tmp_path / "nope"), cache_dir=str(tmp_path)).prepare_data()
    with pytest.raises(MGRError, match="python -m mgr.data.download dataset=fma_metadata root="):
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
