"""python -m mgr.eval: the test metrics of a training run, reproduced from its checkpoint alone."""

from __future__ import annotations

import pytest

from conftest import compose_resolved, metrics_of, mgr_in_process


@pytest.mark.slow
def test_eval_reproduces_the_test_metrics(trained_proc, tmp_path, data_dir):
    train_metrics = metrics_of(trained_proc)
    # From another working directory: the checkpoint alone says where the data is.
    evaluation = mgr_in_process("eval", f"ckpt_path={train_metrics['best_checkpoint']}", cwd=tmp_path, data_dir=data_dir)
    eval_metrics = metrics_of(evaluation)
    for key in ("test/acc", "test/f1", "test/track_acc", "test/track_f1", "test/loss"):
        assert eval_metrics[key] == pytest.approx(train_metrics[key], abs=1e-4), key
    assert eval_metrics["track_confusion"] == train_metrics["track_confusion"]
    assert eval_metrics["track_per_class"] == train_metrics["track_per_class"]
    assert eval_metrics["checkpoint"] == train_metrics["best_checkpoint"]
    # Tracks combined by the checkpoint's own rule: the run's, mgr.train's default.
    assert eval_metrics["track_aggregation"] == train_metrics["track_aggregation"] == "mean_logits"


def test_eval_config_composes():
    cfg = compose_resolved("eval", ["ckpt_path=/x.ckpt"])
    assert cfg.ckpt_path == "/x.ckpt" and cfg.get("data") is None  # data comes from the checkpoint
    cfg = compose_resolved("eval", ["ckpt_path=/x.ckpt", "data=folder", "data.root=/music"])
    assert cfg.data.source == "folder"
