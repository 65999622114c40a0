"""A run whose stdout is no terminal (here: captured) logs its progress as plain lines (and,
with progress off, none: tests/test_train.py's cache test)."""

import re

from conftest import NO_PLOTS, tiny
from mgr.utils.progress import LogProgress


def test_a_run_without_a_terminal_logs_its_progress(run_mgr, monkeypatch):
    monkeypatch.setattr(LogProgress, "EVERY_S", 0.0)  # a line after every batch
    out = run_mgr("train", *tiny(), *NO_PLOTS, "trainer.enable_progress_bar=true", "debug=fast_dev_run").stdout
    batches = [int(n) for n in re.findall(r"Epoch 1/1, training: batch (\d+)/\d+, [\d.]+ batches/s\.", out)]
    assert batches and batches == list(range(1, len(batches) + 1))
    assert re.search(r"validating: batch 1/\d+", out) and re.search(r"testing: batch 1/\d+", out)
    done = re.search(r"Epoch 1/1 done in \d+ s: (.+)\.\n", out).group(1)
    assert "train/loss" in done and "val/loss" in done and "val/track_acc" in done

