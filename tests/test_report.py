"""mgr.report on a real multirun: two models x two seeds."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import tiny


@pytest.mark.slow
def test_report_summarizes_a_multirun(run_mgr, tmp_path):
    overrides = [o for o in tiny() if not o.startswith("model")]
    run_mgr("train", "-m", "model=cnn,crnn", "seed=1,2", *overrides, "debug=limit")
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    proc = run_mgr("report", f"sweep_dir={sweep}")
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


@pytest.mark.parametrize("sweep_dir,text", [
    (None, "sweep_dir is missing; run python -m mgr.report sweep_dir="),
    ("empty", "no finished runs (metrics.json beside .hydra/) below"),
    ("absent", "is not a directory"),
])
def test_report_without_runs_is_one_clear_error(run_mgr, tmp_path, sweep_dir, text):
    (tmp_path / "empty").mkdir()
    proc = run_mgr("report", *([f"sweep_dir={tmp_path / sweep_dir}"] if sweep_dir else []), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mgr: error:")]
    assert len(errors) == 1 and text in errors[0], proc.stderr
