"""A job of hydra/launcher=slurm told to stop before its time limit (or preempted) gets submitit's
signal, USR2, not the USR1 of Lightning's own requeue: during the fit mgr first saves hpc_ckpt_<n>.ckpt
in the run directory, then submitit's handler requeues the job, and the requeued job resumes from it.

The job runs on the CPU without SLURM: the variables srun and submitit set, and in place of submitit's
handler one that records which checkpoints existed when it was called, then, on global rank 0, exits
as submitit's does once it has requeued the job (on the other ranks it returns, as submitit's does)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning_fabric.plugins.environments.lightning import find_free_network_port

from conftest import NO_PLOTS, mgr_in_process, tiny, wait_until
from test_cluster_ddp import base_environment, srun_task_environment

# What submitit's job process sets up before it runs the Hydra job: its handlers (SIGTERM ignored, the
# requeue signal), here a stand-in that notes the hpc checkpoints present and exits as submitit does.
FAKE_SUBMITIT_JOB = '''
import os, runpy, signal, sys
from pathlib import Path

called, run_dir = Path(sys.argv[1]), Path(sys.argv[2])

def requeue(signum, frame):
    if os.environ["SLURM_PROCID"] != "0":
        return  # submitit's other tasks neither requeue nor exit
    called.write_text(" ".join(sorted(p.name for p in run_dir.glob("hpc_ckpt_*.ckpt"))) or "no checkpoint")
    sys.exit(-1)

signal.signal(signal.SIGTERM, lambda signum, frame: None)
signal.signal(signal.SIGUSR2, requeue)
sys.argv = ["mgr.train", *sys.argv[3:]]
runpy.run_module("mgr.train", run_name="__main__")
'''


def _epoch(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


def submitit_job_environment(restart_count: int, rank: int = 0, tasks: int = 1, port: int = 29500) -> dict[str, str]:
    """What task `rank` of a job of `tasks` tasks on one node that submitit submitted to SLURM finds in
    its environment."""
    return {**base_environment(), **srun_task_environment(rank, nodes=1, tasks_per_node=tasks, job_id=4242, port=port),
            "SUBMITIT_EXECUTOR": "slurm", "SLURM_RESTART_COUNT": str(restart_count)}


def start_job(script: Path, called: Path, run_dir: Path, overrides: list[str], restart_count: int, cwd: Path):
    return subprocess.Popen([sys.executable, str(script), str(called), str(run_dir), *overrides], cwd=cwd,
                            env=submitit_job_environment(restart_count), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def start_ddp_job(script: Path, called: Path, run_dir: Path, overrides: list[str], restart_count: int, cwd: Path):
    """Its two tasks, each in a session of its own (a rank left waiting for the other is killed with it)."""
    port = find_free_network_port()
    return [subprocess.Popen([sys.executable, str(script), str(called), str(run_dir), *overrides], cwd=cwd,
                             env=submitit_job_environment(restart_count, rank, tasks=2, port=port),
                             stdout=(cwd / f"job{restart_count}_rank{rank}.out").open("w"), stderr=subprocess.STDOUT,
                             start_new_session=True) for rank in range(2)]


def kill(procs) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_time_limit_signal_saves_a_checkpoint_that_the_requeued_job_resumes_from(tmp_path, data_dir, monkeypatch):
    run_dir = tmp_path / "run"
    overrides = [*tiny(epochs=40), *NO_PLOTS, "data.num_workers=0", f"hydra.run.dir={run_dir}",
                 f"paths.data_dir={data_dir}", f"paths.log_dir={tmp_path / 'logs'}"]
    mgr_in_process("train", *tiny(), "debug=fast_dev_run", *NO_PLOTS, cwd=tmp_path, data_dir=data_dir)  # data first
    script, called = tmp_path / "fake_submitit_job.py", tmp_path / "submitit_handler_called"
    script.write_text(FAKE_SUBMITIT_JOB)

    job = start_job(script, called, run_dir, overrides, restart_count=0, cwd=tmp_path)
    last = run_dir / "checkpoints" / "last.ckpt"
    wait_until(last.exists, job)  # training: an epoch has ended
    job.send_signal(signal.SIGUSR2)
    output = job.communicate(timeout=120)[0]
    assert called.exists(), output[-3000:]
    assert called.read_text() == "hpc_ckpt_1.ckpt", output[-3000:]  # saved before submitit requeued
    assert job.returncode == 255, output[-3000:]  # sys.exit(-1): submitit's way out once requeued
    assert "requeing job" not in output  # Lightning's own requeue stayed off
    checkpoint = run_dir / "hpc_ckpt_1.ckpt"
    stopped_at = _epoch(checkpoint)
    assert stopped_at < 39

    monkeypatch.setenv("SLURM_NTASKS", "1")  # Lightning's SLURMEnvironment.detect(), as in the requeued job
    monkeypatch.setenv("SLURM_JOB_NAME", "mgrjob")
    from mgr.run_directory import checkpoint_to_resume

    assert checkpoint_to_resume(None, run_dir) == str(checkpoint)

    # The requeued job: the same command in the same run directory.
    called.unlink()
    requeued = start_job(script, called, run_dir, overrides, restart_count=1, cwd=tmp_path)
    output = requeued.communicate(timeout=300)[0]
    assert requeued.returncode == 0, output[-3000:]
    assert "already holds a run" not in output
    log = output + (run_dir / "train.log").read_text()
    assert f"Restoring states from the checkpoint path at {checkpoint}" in log, log[-3000:]
    assert "`Trainer.fit` stopped: `max_epochs=40` reached." in log  # trained on to the end from there
    assert (run_dir / "metrics.json").exists()
    # The history: the epochs before the signal as the first job logged them, each once.
    validated = [row["epoch"] for row in csv.DictReader((run_dir / "csv" / "metrics.csv").open()) if row.get("val/loss")]
    assert len(validated) == len(set(validated)), validated
    assert {str(e) for e in range(stopped_at)} | {"39"} <= set(validated), validated
    assert not called.exists()


@pytest.mark.slow
def test_ddp_ranks_save_together_and_the_requeued_ranks_resume(tmp_path, data_dir):
    """SLURM signals every task: the two ranks save at the same batch (saving is collective), rank 0's
    submitit handler requeues the job and exits; the requeued job's two ranks resume from the checkpoint."""
    run_dir = tmp_path / "run"
    overrides = [*tiny(epochs=30), "trainer=ddp_cpu", "data.num_workers=0", *NO_PLOTS, f"hydra.run.dir={run_dir}",
                 f"paths.data_dir={data_dir}", f"paths.log_dir={tmp_path / 'logs'}"]
    mgr_in_process("train", *tiny(), "debug=fast_dev_run", *NO_PLOTS, cwd=tmp_path, data_dir=data_dir)  # data first
    script, called = tmp_path / "fake_submitit_job.py", tmp_path / "submitit_handler_called"
    script.write_text(FAKE_SUBMITIT_JOB)

    ranks = start_ddp_job(script, called, run_dir, overrides, restart_count=0, cwd=tmp_path)
    try:
        last = run_dir / "checkpoints" / "last.ckpt"
        wait_until(last.exists, ranks[0])
        for rank in ranks:
            rank.send_signal(signal.SIGUSR2)
        ranks[0].wait(timeout=120)
    finally:
        kill(ranks)  # rank 1, left alone: SLURM's requeue ends it
    output = (tmp_path / "job0_rank0.out").read_text()
    assert ranks[0].returncode == 255, output[-3000:]
    assert called.read_text() == "hpc_ckpt_1.ckpt", output[-3000:]

    ranks = start_ddp_job(script, called, run_dir, overrides, restart_count=1, cwd=tmp_path)
    try:
        for rank in ranks:
            rank.wait(timeout=300)
    finally:
        kill(ranks)
    output = (tmp_path / "job1_rank0.out").read_text()
    assert [rank.returncode for rank in ranks] == [0, 0], output[-3000:]
    assert f"Restoring states from the checkpoint path at {run_dir / 'hpc_ckpt_1.ckpt'}" in output, output[-3000:]
    assert "`Trainer.fit` stopped: `max_epochs=30` reached." in output


@pytest.mark.slow
def test_epochs_of_one_batch_are_requeued_without_a_checkpoint(tmp_path, data_dir):
    """An epoch of one batch ends nowhere Lightning resumes from: submitit requeues the job at once, as it
    did before mgr saved checkpoints (not never, which would let the time limit kill it unrequeued)."""
    run_dir = tmp_path / "run"
    overrides = [*tiny(epochs=200), *NO_PLOTS, "~callbacks.early_stopping", "data.num_workers=0", "data.batch_size=64",
                 f"hydra.run.dir={run_dir}", f"paths.data_dir={data_dir}", f"paths.log_dir={tmp_path / 'logs'}"]
    mgr_in_process("train", *tiny(), "debug=fast_dev_run", *NO_PLOTS, cwd=tmp_path, data_dir=data_dir)  # data first
    script, called = tmp_path / "fake_submitit_job.py", tmp_path / "submitit_handler_called"
    script.write_text(FAKE_SUBMITIT_JOB)
    job = start_job(script, called, run_dir, overrides, restart_count=0, cwd=tmp_path)
    try:
        last = run_dir / "checkpoints" / "last.ckpt"
        wait_until(last.exists, job)
        job.send_signal(signal.SIGUSR2)
        output = job.communicate(timeout=120)[0]
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 255, output[-3000:]
    assert called.read_text() == "no checkpoint"
    assert "`Trainer.fit` stopped" not in output  # requeued at the epoch the signal came in, not once the fit ended
