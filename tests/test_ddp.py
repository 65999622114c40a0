"""DDP on two CPU processes (gloo): inside a Hydra multirun, one run directory per job,
and test metrics equal to a single-process evaluation of the same checkpoint."""

from __future__ import annotations

import json

import pytest

from conftest import metrics_of, tiny

KEYS = ("test/acc", "test/f1", "test/track_acc", "test/track_f1", "test/loss")


def test_ddp_multirun_matches_single_process_eval(run_mgr, tmp_path):
    # One chunk per track: 5 test chunks, an odd number, so an even split across two ranks
    # (Lightning's DistributedSampler) would repeat one.
    overrides = [o for o in tiny(epochs=2) if not o.startswith("model")]
    run_mgr("train", "-m", "trainer=ddp_cpu", "model=cnn,crnn", *overrides, "data.eval_max_chunks=1",
            "data.eval_batch_size=2")
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [j.name for j in jobs] == ["0", "1"]  # no extra directories from the second rank
    assert not (tmp_path / "logs" / "train" / "runs").exists()
    for job in jobs:
        trained = json.loads((job / "metrics.json").read_text())
        assert sum(map(sum, trained["chunk_confusion"])) == 5  # every chunk counted once
        evaluation = metrics_of(run_mgr("eval", f"ckpt_path={trained['best_checkpoint']}"))
        for key in KEYS:
            assert evaluation[key] == pytest.approx(trained[key], abs=1e-4), key
        assert evaluation["chunk_confusion"] == trained["chunk_confusion"]
        assert evaluation["track_confusion"] == trained["track_confusion"]
