"""python -m mgr.eval: the test metrics of a training run, reproduced from its checkpoint alone."""

from __future__ import annotations

import csv

import pytest

from conftest import compose_resolved, metrics_of, mgr_in_process, run_dir_of, save_checkpoint
from mgr.models import GenreClassifier, load_model


@pytest.mark.slow
def test_eval_reproduces_the_test_metrics(trained_proc, tmp_path, data_dir):
    train_metrics = metrics_of(trained_proc)
    # From another working directory: the checkpoint alone says where the data is.
    evaluation = mgr_in_process("eval", f"ckpt_path={train_metrics['best_checkpoint']}", cwd=tmp_path, data_dir=data_dir)
    eval_metrics = metrics_of(evaluation)
    for key in ("test/acc", "test/f1", "test/track_acc", "test/track_f1", "test/loss", "test/ece", "test/track_ece",
                "test/ece_uncalibrated", "test/track_ece_uncalibrated"):  # the ECE before calibration too
        assert eval_metrics[key] == pytest.approx(train_metrics[key], abs=1e-4), key
    assert eval_metrics["track_confusion"] == train_metrics["track_confusion"]
    assert eval_metrics["track_per_class"] == train_metrics["track_per_class"]
    # The checkpoint's calibrated probabilities, so the same risk-coverage curve, in metrics.json and plotted.
    assert eval_metrics["calibration"]["temperature"] == train_metrics["calibration"]["temperature"] != 1.0
    assert [row["coverage"] for row in eval_metrics["risk_coverage"]] == pytest.approx([k / 10 for k in range(1, 11)])
    for ours, theirs in zip(eval_metrics["risk_coverage"], train_metrics["risk_coverage"]):
        assert ours == pytest.approx(theirs, abs=1e-4)
    assert (run_dir_of(evaluation) / "plots" / "risk_coverage.png").is_file()
    assert eval_metrics["checkpoint"] == train_metrics["best_checkpoint"]
    # Tracks combined by the checkpoint's own rule: the run's, mgr.train's default.
    assert eval_metrics["track_aggregation"] == train_metrics["track_aggregation"] == "mean_logits"


def test_eval_config_composes():
    cfg = compose_resolved("eval", ["ckpt_path=/x.ckpt"])
    assert cfg.ckpt_path == "/x.ckpt" and cfg.get("data") is None  # data comes from the checkpoint
    cfg = compose_resolved("eval", ["ckpt_path=/x.ckpt", "data=folder", "data.root=/music"])
    assert cfg.data.source == "folder"


@pytest.mark.slow
def test_eval_of_an_ensemble_of_one_model_reproduces_its_metrics(trained_proc, tmp_path, data_dir):
    """The same checkpoint twice: the mean of identical probabilities is the model's, so the averaged
    scoring (mgr.models.ensemble) gives the training run's test metrics; metrics.json and every row of
    test_predictions.csv name the checkpoints."""
    train_metrics = metrics_of(trained_proc)
    best = train_metrics["best_checkpoint"]
    evaluation = mgr_in_process("eval", f"ckpt_path=[{best},{best}]", "callbacks=none", cwd=tmp_path,
                                data_dir=data_dir)
    assert "Test results of " + f"{best}, {best}" in evaluation.stdout
    eval_metrics = metrics_of(evaluation)
    for key in ("test/acc", "test/f1", "test/track_acc", "test/track_f1", "test/loss", "test/ece", "test/track_ece",
                "test/ece_uncalibrated", "test/track_ece_uncalibrated"):  # the ECE before calibration too
        assert eval_metrics[key] == pytest.approx(train_metrics[key], abs=1e-4), key
    assert eval_metrics["calibration"]["temperature"] == [train_metrics["calibration"]["temperature"]] * 2
    assert eval_metrics["track_confusion"] == train_metrics["track_confusion"]
    assert eval_metrics["chunk_confusion"] == train_metrics["chunk_confusion"]
    assert eval_metrics["checkpoints"] == [best, best] and "checkpoint" not in eval_metrics
    rows = list(csv.DictReader(open(run_dir_of(evaluation) / "test_predictions.csv")))
    trained_rows = list(csv.DictReader(open(run_dir_of(trained_proc) / "test_predictions.csv")))
    assert [(r["path"], r["prediction"]) for r in rows] == [(r["path"], r["prediction"]) for r in trained_rows]
    assert {r["checkpoints"] for r in rows} == {f"{best};{best}"}


@pytest.mark.slow
def test_checkpoints_that_disagree_are_one_sentence_before_any_data_work(trained_proc, tmp_path, data_dir):
    """A checkpoint of the classes in another order: mgr.eval names it and writes no results; mgr.embed,
    which cannot average embeddings, refuses a list."""
    best = metrics_of(trained_proc)["best_checkpoint"]
    model = load_model(best)
    odd = tmp_path / "reversed.ckpt"
    save_checkpoint(GenreClassifier(**{**model.hparams, "class_names": model.class_names[::-1]}), odd)
    for task, text in (("eval", f"Cannot average {odd} with {best}: it has classes {model.class_names[::-1]}, not "
                                f"{model.class_names};"),
                       ("embed", "ckpt_path names 2 checkpoints; only mgr.predict and mgr.eval average several")):
        proc = mgr_in_process(task, f"ckpt_path=[{best},{odd}]", cwd=tmp_path, data_dir=tmp_path / "data", check=False)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("mgr: error:")]
        assert proc.returncode == 1 and len(errors) == 1 and text in errors[0], proc.stderr
    assert not list(tmp_path.rglob("metrics.json")) and not list(tmp_path.rglob("*.npz"))
    assert not (tmp_path / "data").exists()  # no data generated, nothing decoded
