"""mgr.test_report: per-class scores from a confusion matrix, metrics.json and the printed table."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from conftest import check_predictions_match_metrics, run_dir_of, tiny
from mgr import test_report


def test_per_class_scores_from_a_confusion_matrix():
    # Rows are true classes: a is found 3 of 4 times, b is never predicted, c is absent but predicted once.
    confusion = [[3, 0, 1],
                 [2, 0, 0],
                 [0, 0, 0]]
    a, b, c = test_report.per_class_scores(confusion, ["a", "b", "c"])
    assert a == {"label": "a", "precision": pytest.approx(0.6), "recall": 0.75,
                 "f1": pytest.approx(2 * 0.6 * 0.75 / 1.35), "support": 4}
    # No predictions, no support: zero instead of a division by zero.
    assert b == {"label": "b", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert c == {"label": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert all(type(v) in (str, float, int) for s in (a, b, c) for v in s.values())  # JSON-ready


def test_the_table_shows_every_metric_and_a_dash_for_a_missing_one(tmp_path, capsys):
    metrics = {"test/acc": 0.5, "test/f1": 0.25, "test/track_acc": 1.0}  # no track F1: shown as -
    test_report.print_results(metrics, None, str(tmp_path), "Test results of x.ckpt")
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == ["Test results of x.ckpt",
                         "                chunk    track",
                         "  accuracy     0.5000   1.0000",
                         "  macro-F1     0.2500        -",
                         f"  run directory: {tmp_path}"]


def test_a_test_that_writes_no_report_fails_instead_of_reading_an_old_one(tmp_path):
    """metrics.json is removed before the test: a report left by an earlier test of the run cannot stand in."""
    from omegaconf import OmegaConf

    (tmp_path / "metrics.json").write_text(json.dumps({"test/acc": 0.9}))

    class NoTest:
        callbacks: list = []

        def test(self, *args, **kwargs):
            pass  # as if the test ended without a report (a rank died, a callback was dropped)

    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "seed": 1})
    with pytest.raises(FileNotFoundError):
        test_report.test_and_report(cfg, NoTest(), None, None, "t", {})


def predictions_of(track_labels, track_scores, chunk_predictions, chunk_tracks, track_ids=None) -> dict:
    n = len(track_labels)
    return {"track_ids": np.arange(n) if track_ids is None else np.asarray(track_ids),
            "track_labels": np.asarray(track_labels), "track_scores": np.asarray(track_scores, dtype=float),
            "chunk_predictions": np.asarray(chunk_predictions), "chunk_tracks": np.asarray(chunk_tracks)}


def test_bootstrap_intervals_hold_the_scores_and_are_reproducible():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    scores = np.eye(3)[np.where(rng.random(60) < 0.7, labels, (labels + 1) % 3)]
    chunk_tracks = np.repeat(np.arange(60), 4)
    chunk_predictions = np.where(rng.random(240) < 0.6, labels[chunk_tracks], (labels[chunk_tracks] + 2) % 3)
    p = predictions_of(labels, scores, chunk_predictions, chunk_tracks)
    intervals = test_report.bootstrap_intervals(p, 3, {"resamples": 500, "seed": 3})
    track_acc = (scores.argmax(1) == labels).mean()
    chunk_acc = (chunk_predictions == labels[chunk_tracks]).mean()
    assert intervals["test/track_acc"][0] < track_acc < intervals["test/track_acc"][1]
    assert intervals["test/acc"][0] < chunk_acc < intervals["test/acc"][1]
    assert all(0 <= intervals[k][0] < intervals[k][1] <= 1 for k in ("test/f1", "test/track_f1"))
    assert (intervals["resamples"], intervals["seed"], intervals["level"]) == (500, 3, 0.95)
    assert test_report.bootstrap_intervals(p, 3, {"resamples": 500, "seed": 3}) == intervals
    assert test_report.bootstrap_intervals(p, 3, {"resamples": 500, "seed": 4}) != intervals


def test_prediction_file_rows_sorted_by_path_relative_to_the_data_root(tmp_path):
    root = tmp_path / "music"
    files = [str(root / "b" / "2.wav"), str(root / "a" / "1.wav"), "/elsewhere/0.wav"]
    p = predictions_of([1, 0, 1], [[0.2, 0.8], [0.9, 0.1], [0.6, 0.4]], [1, 0, 0, 0], [0, 1, 2, 2])
    root.mkdir()
    test_report.write_predictions(tmp_path / "p.csv", p, files, str(root), ["x", "y"],
                                 {"seed": 1, "split_seed": 0, "fold": None, "folds": None})
    rows = list(csv.reader(open(tmp_path / "p.csv")))
    assert rows == [["path", "label", "prediction", "chunks", "score_x", "score_y", "seed", "split_seed", "fold", "folds"],
                    ["/elsewhere/0.wav", "y", "x", "2", "0.6", "0.4", "1", "0", "", ""],
                    ["a/1.wav", "x", "x", "1", "0.9", "0.1", "1", "0", "", ""],
                    ["b/2.wav", "y", "y", "1", "0.2", "0.8", "1", "0", "", ""]]


# The lines .ci/run requires at the end of the train job's output.
CI_TABLE = re.compile(r"Test results \(best checkpoint\)\n\s+chunk\s+track\n\s+accuracy\s+[\d.]+\s+[\d.]+\n"
                      r"\s+macro-F1\s+[\d.]+\s+[\d.]+\n\s+run directory: \S+")


@pytest.mark.slow
def test_a_training_run_keeps_its_predictions_and_intervals(run_mgr):
    proc = run_mgr("train", *tiny(), "seed=3")
    run_dir = run_dir_of(proc)
    rows = check_predictions_match_metrics(run_dir)
    assert {(r["seed"], r["split_seed"], r["fold"]) for r in rows} == {("3", "0", "")}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    intervals = metrics["intervals"]
    for key in ("test/acc", "test/f1", "test/track_acc", "test/track_f1"):
        assert intervals[key][0] <= metrics[key] <= intervals[key][1], key
    assert (intervals["resamples"], intervals["seed"]) == (1000, 0)
    out = "\n".join(line for line in proc.stdout.splitlines() if line.strip())
    assert CI_TABLE.search(out) and CI_TABLE.search(out).end() == len(out)  # the table still ends the output
    assert "95% intervals: bootstrap over test tracks (chunk: each track with its chunks), 1000 resamples, seed 0" in out
    lo, hi = intervals["test/track_acc"]
    assert re.search(rf"accuracy\s+\[[\d.]+, [\d.]+\]\s+\[{lo:.4f}, {hi:.4f}\]", out)


def test_the_calibration_errors_are_printed_before_the_table(tmp_path, capsys):
    metrics = {"test/acc": 0.5, "test/f1": 0.25, "test/track_acc": 1.0, "test/track_f1": 1.0, "test/ece": 0.125,
               "test/track_ece": 0.0625}
    test_report.print_results(metrics, None, str(tmp_path), "Test results of x.ckpt")
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "Expected calibration error (15 equal-width bins of the top probability): chunk 0.1250, track 0.0625"
    assert lines[-5] == "Test results of x.ckpt"  # the table still ends the output
    metrics.update({"test/ece_uncalibrated": 0.25, "test/track_ece_uncalibrated": 0.5})
    test_report.print_results(metrics, None, str(tmp_path), "Test results of x.ckpt")
    assert capsys.readouterr().out.splitlines()[1] == ("Expected calibration error (15 equal-width bins of the top "
                                                       "probability): chunk 0.1250 (uncalibrated 0.2500), track 0.0625 "
                                                       "(uncalibrated 0.5000)")
    multilabel = {"test/auc": 0.9, "test/track_auc": 0.95, "test/ece": 0.01, "test/track_ece": 0.02,
                  "test/ece_uncalibrated": 0.03, "test/track_ece_uncalibrated": 0.04}
    test_report.print_results(multilabel, None, str(tmp_path), "Test results of y.ckpt")
    assert capsys.readouterr().out.splitlines()[1] == (
        "Expected calibration error (15 equal-width bins of every tag's probability): chunk 0.0100 (uncalibrated "
        "0.0300), track 0.0200 (uncalibrated 0.0400)")


@pytest.mark.slow
def test_the_track_ece_and_risk_coverage_are_those_of_the_test_predictions(trained_run):
    """metrics.json's track ECE and risk-coverage, recomputed with numpy from test_predictions.csv (the
    tracks' mean calibrated logits, 6 digits): the report scores the probabilities it writes."""
    from mgr import statistics

    metrics = json.loads((trained_run / "metrics.json").read_text())
    rows = list(csv.DictReader(open(trained_run / "test_predictions.csv")))
    scores = np.array([[float(r[f"score_{c}"]) for c in metrics["class_names"]] for r in rows])
    probabilities = np.exp(scores - scores.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    correct = np.array([r["label"] == r["prediction"] for r in rows])
    assert metrics["test/track_ece"] == pytest.approx(
        statistics.expected_calibration_error(probabilities.max(1), correct), abs=1e-4)
    assert 0 <= metrics["test/ece"] <= 1 and metrics["calibration"]["bins"] == 15
    coverage, accuracy, _ = statistics.risk_coverage(probabilities.max(1), correct)
    assert metrics["risk_coverage"][-1]["coverage"] == 1.0
    assert metrics["risk_coverage"][-1]["accuracy"] == pytest.approx(metrics["test/track_acc"], abs=1e-6)
    assert [r["accuracy"] for r in metrics["risk_coverage"]] == pytest.approx(
        [accuracy[int(np.ceil(k / 10 * len(rows))) - 1] for k in range(1, 11)])


def test_multilabel_intervals_are_the_bootstrap_of_scikit_learns_macro_aucs_over_tracks():
    """Each resample draws tracks with replacement (statistics.resample_weights, the seed's); its macro
    ROC-AUC over the classes it holds with a positive and a negative track is scikit-learn's."""
    from sklearn.metrics import roc_auc_score

    from mgr import statistics
    from mgr.test_report import multilabel_intervals

    rng = np.random.default_rng(0)
    labels = (rng.random((30, 3)) < 0.3).astype(float)
    labels[:, 2] = 0
    labels[0, 2] = 1  # one positive track: in many resamples class 2 has none and is left out
    scores = np.clip(0.4 * labels + 0.6 * rng.random((30, 3)), 0, 1)
    bootstrap = {"resamples": 200, "seed": 3}
    intervals = multilabel_intervals({"track_scores": scores, "track_labels": labels}, bootstrap)
    expected = []
    for weights in statistics.resample_weights(30, 200, 3):
        rows = np.repeat(np.arange(30), weights)
        kept = [c for c in range(3) if 0 < labels[rows, c].sum() < len(rows)]
        expected.append(roc_auc_score(labels[rows][:, kept], scores[rows][:, kept], average="macro"))
    assert intervals["test/track_auc"] == pytest.approx(statistics.percentile_interval(np.array(expected)), abs=1e-5)
    assert intervals["test/track_ap"][0] < intervals["test/track_ap"][1]
