"""benchmarks/gpu_check.sh --smoke: every step of the GPU check runs on a CPU, tiny, and writes its tables."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURE = re.compile(r"^\d+(\.\d+)?( min|x)?$")  # 12, 0.875, 1.1 min, 3.2x


def rows(section: str) -> list[list[str]]:
    """The cells of every table row of a results.md section (headers and rules included)."""
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("|")]


def row(section: str, first: str) -> list[str]:
    """The one row whose first cell starts with `first`."""
    (found,) = [r for r in rows(section) if r[0].startswith(first)]
    return found


def run_row(section: str, override: str) -> list[str]:
    """benchmarks/default_run.py's row of the run whose command ends with `override`."""
    (found,) = [r for r in rows(section) if r[0].startswith("`python -m mgr.train") and r[0].endswith(f"{override}`")]
    return found


def figures(cells: list[str]) -> list[float]:
    assert cells and all(FIGURE.match(c) for c in cells), cells
    return [float(c.split()[0].rstrip("x")) for c in cells]


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_step_and_writes_its_tables(tmp_path):
    env = {**os.environ, "MGR_DATA_DIR": str(tmp_path / "data"), "OUT": str(tmp_path / "out")}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--smoke"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    results = (tmp_path / "out" / "results.md").read_text()
    assert done.returncode == 0, results + (tmp_path / "out" / "log.txt").read_text()[-4000:]
    sections = {s.splitlines()[0]: s for s in results.split("\n## ")[1:]}
    assert list(sections) == [
        "Features on cpu against librosa on the CPU", "Training throughput on cpu, 32",
        "Training throughput on cpu, bf16", "Default run, trainer=default",
        "Default run, trainer=ddp_cpu trainer.devices=1", "mgr.predict on cpu",
        "data.on_device against the workers' loader on cpu", "Cache sample type, int16 against float32",
        "2-job sweep, hydra/launcher=pool"]
    for section in sections.values():
        assert len(rows(section)) >= 3, section  # header, rule and at least one figure
    assert "| mel | torch | cpu |" in results and "librosa" in results

    loader = sections["data.on_device against the workers' loader on cpu"]
    assert "**128 chunks of 3 s an epoch, batch 32, 2 batches a pass, int16 cache, on cpu" in loader  # the caption
    today = [r for r in rows(loader) if r[0].startswith("today's")]
    assert [r[1] for r in today] == ["0", "1"] and all(figures(r[2:]) for r in today)  # chunks/s, 0 and 1 worker
    assert min(figures(row(loader, "data.on_device (DeviceChunks)")[2:])) > 0
    for setting in ("true", "false"):  # the default run each way: wall time and test accuracies
        figures(run_row(loader, f"data.on_device={setting}")[2:])

    sample_types = sections["Cache sample type, int16 against float32"]
    for dtype in ("int16", "float32"):
        figures(run_row(sample_types, f"data.cache_dtype={dtype}")[2:])
    int16, float32 = row(sample_types, "int16"), row(sample_types, "float32")
    assert int16[1].startswith("synth-8000Hz-int16-") and int16[2] == float32[2] == "20"
    assert 0.45 < figures(int16[3:])[1] < 0.55 and float32[4] == "1.00"  # half float32's bytes

    pool = sections["2-job sweep, hydra/launcher=pool"]
    jobs = [r for r in rows(pool) if r[0] in ("0", "1")]
    assert [j[1] for j in jobs] == ["seed=1", "seed=2"]
    assert len({j[2] for j in jobs}) == 2 and all(j[2].startswith("slot ") for j in jobs)  # a slot each
    assert all(j[3] == "cpu" for j in jobs) and all(figures(j[4:]) for j in jobs)  # from s, to s, accuracy
    summary = row(pool, "2")
    assert summary[1:3] == ["2", "2"] and figures(summary[3:])[0] > 0  # both finished, at once for a while

    environment = json.loads((tmp_path / "out" / "environment.json").read_text())
    assert environment["packages"]["torch"]
