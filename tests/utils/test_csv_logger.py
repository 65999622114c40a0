"""mgr's CSVLogger continues the metrics.csv of its run directory, and a resumed run's history is
cut back to its checkpoint."""

from __future__ import annotations

import csv

from mgr.utils.csv_logger import CSVLogger, keep_rows_before

HISTORY = "epoch,step,train/loss,val/loss\n0,2,,1.5\n0,2,1.6,\n1,5,,1.4\n1,5,1.3,\n2,8,,1.2\n"


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_logger_in_a_directory_with_history_keeps_it(tmp_path):
    metrics = tmp_path / "csv" / "metrics.csv"
    metrics.parent.mkdir()
    metrics.write_text(HISTORY)
    logger = CSVLogger(save_dir=tmp_path, name="csv", version="")
    logger.log_metrics({"epoch": 2, "train/loss": 1.1, "train/acc": 0.5}, step=8)
    logger.save()
    rows = _rows(metrics)
    assert [(r["epoch"], r["step"]) for r in rows] == [("0", "2"), ("0", "2"), ("1", "5"), ("1", "5"), ("2", "8"), ("2", "8")]
    assert rows[0]["val/loss"] == "1.5" and rows[-1]["train/acc"] == "0.5"  # old rows under the new header


def test_keep_rows_before_drops_what_was_logged_after_the_checkpoint(tmp_path):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text(HISTORY)
    assert keep_rows_before(metrics, 6) == 1  # the checkpoint after epoch 1 (6 batches): epoch 2's val row goes
    assert [(r["epoch"], r["val/loss"]) for r in _rows(metrics)][-2:] == [("1", "1.4"), ("1", "")]
    assert metrics.read_text().startswith("epoch,step,train/loss,val/loss\n")
    assert keep_rows_before(metrics, 6) == 0 and len(_rows(metrics)) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # no temporary file left
