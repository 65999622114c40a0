"""Plots in every run directory: confusion matrices and learning curves, written at test end."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from mgr.models import read_checkpoint
from mgr.plots import (NAMED_CURVES, PlotsCallback, row_rates, save_confusion_matrix, save_learning_curves,
                       save_precision_recall, save_reliability_diagram, save_risk_coverage, save_tag_scores)


def assert_png(path, min_width=400):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= min_width, path
        image.verify()  # a complete, undamaged file
    # Not a blank canvas: a figure with axes, text and cells has many colours.
    with Image.open(path) as image:
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 20


@pytest.mark.slow
def test_a_training_run_writes_its_plots(trained_run):
    for name in ("confusion_chunk.png", "confusion_track.png", "learning_curves.png", "reliability.png",
                 "risk_coverage.png"):
        assert_png(trained_run / "plots" / name)


@pytest.mark.slow
def test_learning_curves_follow_the_runs_metrics(trained_run):
    """The callback's per-epoch values (kept in the checkpoint) are those of csv/metrics.csv."""
    last = read_checkpoint(trained_run / "checkpoints" / "last.ckpt")
    (state,) = [v for k, v in last["callbacks"].items() if k.startswith("PlotsCallback")]
    history = {row["epoch"]: row for row in state["history"]}
    rows = list(csv.DictReader(open(trained_run / "csv" / "metrics.csv")))
    for key in ("train/loss", "val/loss", "train/acc", "val/acc", "val/track_acc"):
        logged = {int(r["epoch"]): float(r[key]) for r in rows if r.get(key)}
        assert len(logged) == 10, key
        assert {e: history[e][key] for e in logged} == pytest.approx(logged, abs=1e-6), key


def test_confusion_matrix_with_a_class_absent_from_the_split(tmp_path):
    matrix = [[3, 1, 0], [0, 0, 0], [1, 0, 4]]  # nothing of class b was tested: its rates stay 0, not NaN
    np.testing.assert_allclose(row_rates(matrix), [[0.75, 0.25, 0], [0, 0, 0], [0.2, 0, 0.8]])
    assert_png(save_confusion_matrix(matrix, ["a", "b", "c"], tmp_path / "cm.png", "test"))


def test_learning_curves_with_validation_every_other_epoch(tmp_path):
    history = [{"epoch": e, "train/loss": 1 / (e + 1), "train/acc": e / 10} for e in range(6)]
    for row in history[1::2]:
        row.update({"val/loss": row["train/loss"] * 1.1, "val/acc": row["train/acc"] * 0.9})
    assert_png(save_learning_curves(history, tmp_path / "curves.png"))


def test_the_history_survives_a_checkpoint_round_trip(tmp_path):
    callback = PlotsCallback(str(tmp_path))
    callback.history = {0: {"epoch": 0, "val/loss": 1.0}, 1: {"epoch": 1, "val/loss": 0.5}}
    resumed = PlotsCallback(str(tmp_path))
    resumed.load_state_dict(callback.state_dict())
    assert resumed.history == callback.history
    assert np.isfinite([row["val/loss"] for row in resumed.history.values()]).all()


def test_a_multilabel_reliability_diagram_of_every_tag_probability(tmp_path):
    from mgr import statistics

    rng = np.random.default_rng(1)
    probabilities = rng.random((40, 5)) ** 3  # most near 0, as a tagger's are
    labels = rng.random((40, 5)) < probabilities
    levels = {"chunk": statistics.tag_forecasts(probabilities, labels),
              "track": statistics.tag_forecasts(probabilities[:10], labels[:10])}
    assert len(levels["chunk"][0]) == 200
    assert_png(save_reliability_diagram(levels, tmp_path / "reliability.png", "Reliability", multilabel=True))


def test_reliability_diagram_and_risk_coverage_with_empty_bins(tmp_path):
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 300)  # the bins below 0.5 are empty
    correct = rng.random(300) < confidence
    levels = {"chunk": (confidence, correct), "track": (confidence[:20], correct[:20])}
    assert_png(save_reliability_diagram(levels, tmp_path / "reliability.png", "Reliability"))
    assert_png(save_risk_coverage(confidence, {"accuracy": correct}, tmp_path / "risk_coverage.png", "Risk-coverage"))


def test_a_multilabel_risk_coverage_with_never_answered_tracks(tmp_path):
    """Two scores of the answered (top-tag precision, sample F1) and a fifth of the tracks never answered."""
    rng = np.random.default_rng(0)
    confidence = np.where(rng.random(100) < 0.2, np.nan, rng.uniform(0.3, 1.0, 100))
    scores = {"top_tag_precision": rng.random(100) < 0.8, "sample_f1": rng.random(100)}
    assert_png(save_risk_coverage(confidence, scores, tmp_path / "risk_coverage.png", "Risk-coverage"))


@pytest.mark.parametrize("tags", [4, NAMED_CURVES + 5])  # curves named in a legend, or grey
def test_the_per_tag_plots_draw_every_tag_and_name_the_unscored(tmp_path, tags):
    """Tags with a positive and a negative get bars and a curve; the last tag has no positive: it is listed
    unscored and has no curve, and neither plot fails on it."""
    rng = np.random.default_rng(0)
    labels = rng.random((60, tags)) < 0.3
    labels[:, -1] = False
    scores = np.clip(labels + rng.normal(0, 0.6, labels.shape), 0, 1)
    names = [f"tag{k}" for k in range(tags)]
    assert_png(save_tag_scores(names, labels, scores, tmp_path / "tag_scores.png", "Per-tag scores"))
    assert_png(save_precision_recall(names, labels, scores, tmp_path / "precision_recall.png", "Precision-recall"))
