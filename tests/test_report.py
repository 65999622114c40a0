"""mgr.report on a real multirun: two models x two seeds."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import tiny


def test_report_summarizes_a_multirun(run_mgr, tmp_path):
    overrides = [o for o in tiny() if not o.startswith("model")]
    run_mgr("train", "-m", "model=cnn,crnn", "seed=1,2", *overrides, "debug=limit")
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    proc = subprocess.run([sys.executable, "-m", "mgr.report", str(sweep)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "4 runs in 2 groups" in proc.stdout
    for name in ("report.md", "report.csv", "report_runs.csv"):
        assert (sweep / name).stat().st_size > 0
    assert (sweep / "report.png").read_bytes()[:4] == b"\x89PNG"
    rows = {r["model"]: r for r in csv.DictReader(open(sweep / "report.csv"))}
    assert set(rows) == {"cnn", "crnn"}
    for model, row in rows.items():
        accs = [json.loads((job / "metrics.json").read_text())["test/track_acc"]
                for job in sweep.iterdir() if job.is_dir() and f"model={model}" in (job / ".hydra" / "overrides.yaml").read_text()]
        assert row["n"] == "2" and float(row["test/track_acc_mean"]) == pytest.approx(np.mean(accs))
        assert float(row["test/track_acc_std"]) == pytest.approx(np.std(accs, ddof=1))
    assert "| synth | mel | cnn | 2 |" in (sweep / "report.md").read_text()


def test_report_on_an_empty_directory_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mgr.report", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 1 and "no finished runs" in proc.stderr and "Traceback" not in proc.stderr
