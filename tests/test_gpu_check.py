"""benchmarks/gpu_check.sh --smoke: every step of the GPU check runs on a CPU, tiny."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_step_and_writes_its_tables(tmp_path):
    env = {**os.environ, "MGR_DATA_DIR": str(tmp_path / "data"), "OUT": str(tmp_path / "out")}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--smoke"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    results = (tmp_path / "out" / "results.md").read_text()
    assert done.returncode == 0, results + (tmp_path / "out" / "log.txt").read_text()[-4000:]
    sections = results.split("\n## ")[1:]
    titles = [s.splitlines()[0] for s in sections]
    assert titles == ["Features on cpu against librosa on the CPU", "Training throughput on cpu, 32",
                      "Training throughput on cpu, bf16", "Default run, trainer=default",
                      "Default run, trainer=ddp_cpu trainer.devices=1", "mgr.predict on cpu"]
    for section in sections:
        rows = [line for line in section.splitlines() if line.startswith("|")]
        assert len(rows) >= 3, section  # header, rule and at least one figure
    assert "| mel | torch | cpu |" in results and "librosa" in results
    environment = json.loads((tmp_path / "out" / "environment.json").read_text())
    assert environment["packages"]["torch"]
