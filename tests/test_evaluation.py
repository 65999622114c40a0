"""mgr.evaluation: per-class scores from a confusion matrix, metrics.json and the printed table."""

from __future__ import annotations

import json

import pytest

from mgr import evaluation


def test_per_class_scores_from_a_confusion_matrix():
    # Rows are true classes: a is found 3 of 4 times, b is never predicted, c is absent but predicted once.
    confusion = [[3, 0, 1],
                 [2, 0, 0],
                 [0, 0, 0]]
    a, b, c = evaluation.per_class_scores(confusion, ["a", "b", "c"])
    assert a == {"label": "a", "precision": pytest.approx(0.6), "recall": 0.75,
                 "f1": pytest.approx(2 * 0.6 * 0.75 / 1.35), "support": 4}
    # No predictions, no support: zero instead of a division by zero.
    assert b == {"label": "b", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert c == {"label": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert all(type(v) in (str, float, int) for s in (a, b, c) for v in s.values())  # JSON-ready


def test_results_go_to_metrics_json_and_the_table(tmp_path, capsys):
    metrics = {"test/acc": 0.5, "test/f1": 0.25, "test/track_acc": 1.0}  # no track F1: shown as nan
    evaluation.write_and_print_results(metrics, {"checkpoint": "x.ckpt"}, str(tmp_path), "Test results of x.ckpt")
    assert json.loads((tmp_path / "metrics.json").read_text()) == {**metrics, "checkpoint": "x.ckpt"}
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == ["Test results of x.ckpt",
                         "                chunk    track",
                         "  accuracy     0.5000   1.0000",
                         "  macro-F1     0.2500      nan",
                         f"  run directory: {tmp_path}"]


def test_the_report_is_written_once():
    """Scoring and the table live in mgr.evaluation only: not beside the W&B code or the task wrapper."""
    from mgr import tracking
    from mgr.utils import tasks

    for module in (tracking, tasks):
        assert not {"per_class_scores", "test_and_report", "write_and_print_results"} & set(vars(module))
