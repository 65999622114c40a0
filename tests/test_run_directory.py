"""Resuming keeps a run's whole history, and resume mistakes stop before any work: a run killed
mid-epoch resumes with every epoch's metrics once and its learning curves from epoch 0;
`ckpt_path=last` without the run's last checkpoint, and a new run in a used run directory, are
one `mgr: error:` line each."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
from omegaconf import OmegaConf

from conftest import NO_PLOTS, mgr_command, mgr_in_process, tiny
from mgr import MGRError
from mgr.models import read_checkpoint
from mgr.run_directory import prepare_run_directory

EPOCHS = 4


class KillInValidation(pl.Callback):
    """SIGKILL at the end of `epoch`'s validation: its val row is in metrics.csv, its checkpoint
    is not saved yet (ModelCheckpoint saves at the epoch's end), so last.ckpt is the epoch before."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_validation_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch and not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGKILL)


def _rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _epochs_of(rows: list[dict], key: str) -> list[int]:
    return [int(r["epoch"]) for r in rows if r.get(key)]


def _one_error(proc) -> str:
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("mgr: error:")]
    return error


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_with_its_whole_history(tmp_path, data_dir, monkeypatch):
    run_dir = tmp_path / "run"
    run = [*tiny(epochs=EPOCHS), "~callbacks.feature_images", f"hydra.run.dir={run_dir}"]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    killed = mgr_command("train", *run, "+callbacks.kill._target_=test_run_directory.KillInValidation", "+callbacks.kill.epoch=2",
                         cwd=tmp_path, data_dir=data_dir, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 1
    assert _epochs_of(_rows(run_dir), "val/loss") == [0, 1, 2]  # epoch 2's validation, logged before the kill

    resumed = mgr_in_process("train", *run, "ckpt_path=last", cwd=tmp_path, data_dir=data_dir)
    assert "Restoring states from the checkpoint path" in resumed.stdout + resumed.stderr
    rows = _rows(run_dir)
    for key in ("train/loss", "val/loss", "val/track_acc"):
        assert _epochs_of(rows, key) == list(range(EPOCHS)), key  # each epoch once: epoch 2's from the resumed run
    assert len([r for r in rows if r["test/track_acc"]]) == 1
    # The learning curves: the plots callback's history, kept in the checkpoint, from epoch 0, as logged.
    last = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    (state,) = [v for k, v in last["callbacks"].items() if k.startswith("PlotsCallback")]
    assert [row["epoch"] for row in state["history"]] == list(range(EPOCHS))
    for key in ("train/loss", "val/loss"):
        logged = [float(r[key]) for r in rows if r.get(key)]
        assert [row[key] for row in state["history"]] == pytest.approx(logged, abs=1e-6), key
    assert (run_dir / "plots" / "learning_curves.png").stat().st_size > 0


def test_resume_last_without_the_runs_last_checkpoint_stops_before_any_data_work(tmp_path):
    data_dir = tmp_path / "data"
    for where in ([], [f"hydra.run.dir={tmp_path / 'not_a_run'}"]):
        proc = mgr_in_process("train", *tiny(), "ckpt_path=last", *where, cwd=tmp_path, data_dir=data_dir, check=False)
        error = _one_error(proc)
        assert "checkpoints/last.ckpt" in error and "hydra.run.dir=<the run to resume>" in error
        if where:
            assert str(tmp_path / "not_a_run" / "checkpoints" / "last.ckpt") in error
    assert not data_dir.exists()  # no data generated or decoded
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("metrics.*"))


@pytest.mark.slow
def test_a_used_run_directory_stops_a_new_run_and_keeps_its_results(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    run = [*tiny(), *NO_PLOTS, f"hydra.run.dir={run_dir}"]
    mgr_in_process("train", *run, cwd=tmp_path, data_dir=data_dir)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and ".hydra" not in p.parts}
    assert {"metrics.json", "last.ckpt", "metrics.csv"} <= {p.name for p in before}
    again = _one_error(mgr_in_process("train", *run, cwd=tmp_path, data_dir=data_dir, check=False))
    assert str(run_dir) in again and "ckpt_path=last" in again and "another directory" in again
    other = _one_error(mgr_in_process("train", *run, f"ckpt_path={tmp_path / 'other' / 'last.ckpt'}", cwd=tmp_path,
                                      data_dir=data_dir, check=False))
    assert "is not part of" in other  # another run's checkpoint would splice two histories
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and ".hydra" not in p.parts}
    changed = {p.name for p in after if before.get(p) != after[p]}
    assert changed <= {"train.log", "environment.json"}, changed  # Hydra's log and the environment, before the check


def test_a_requeued_slurm_job_resumes_in_its_directory(tmp_path, monkeypatch):
    # Lightning resumes a requeued SLURM job from the hpc_ckpt_<n>.ckpt it saved: not a new run.
    (tmp_path / "hpc_ckpt_1.ckpt").write_bytes(b"")
    (tmp_path / "metrics.json").write_text("{}")
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "ckpt_path": None})
    with pytest.raises(MGRError, match="already holds a run"):
        prepare_run_directory(cfg)
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "mgr")
    prepare_run_directory(cfg)
