"""DDP where a cluster starts the processes: the ranks SLURM's srun starts (one task per device) and
the workers of torchrun each run `python -m mgr.train` with plain ddp, spawn nothing, and share one
run directory.

The SLURM runs are the documented command (docs/how-to/slurm-resume.md),

    python -m mgr.train -m hydra/launcher=slurm hydra.launcher.nodes=M hydra.launcher.gpus_per_node=N \\
        hydra.launcher.tasks_per_node=N trainer=ddp trainer.devices=N trainer.num_nodes=M

as far as this CPU can run it: submitit and sbatch are not here, so the test starts the tasks srun would
start, one process per task with the SLURM_* variables srun sets, each running the same mgr overrides
(trainer=ddp_cpu, the CPU's trainer=ddp) without the launcher; 2 tasks on one node, then 2 nodes of one
task each, both on this machine. Each run trains and tests with world size 2, one process per rank, in
one run directory, and its test metrics are those of the same checkpoint evaluated in one process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from lightning_fabric.plugins.environments.lightning import find_free_network_port

from conftest import mgr_in_process, tiny

RUN = [*tiny(), "trainer=ddp_cpu", "data.num_workers=0"]
KEYS = ("test/acc", "test/f1", "test/track_acc", "test/track_f1", "test/loss")
# The variables of a launch that must not leak into another from the test's own environment.
LAUNCH_VARIABLES = ("SLURM_", "TORCHELASTIC_", "MGR_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                    "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")


def base_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCH_VARIABLES)}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "offline"}


def srun_task_environment(rank: int, nodes: int, tasks_per_node: int, job_id: int, port: int) -> dict[str, str]:
    """What srun sets for task `rank` of a job of `nodes` nodes with `tasks_per_node` tasks each (the
    variables Lightning's SLURMEnvironment reads, and the job name of a batch job, not an interactive
    shell); every node is this machine."""
    return {"SLURM_JOB_ID": str(job_id), "SLURM_JOB_NAME": "mgrjob", "SLURM_STEP_ID": "0",
            "SLURM_NTASKS": str(nodes * tasks_per_node), "SLURM_NTASKS_PER_NODE": str(tasks_per_node),
            "SLURM_NNODES": str(nodes), "SLURM_JOB_NUM_NODES": str(nodes), "SLURM_NODELIST": "127.0.0.1",
            "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank % tasks_per_node),
            "SLURM_NODEID": str(rank // tasks_per_node), "MASTER_PORT": str(port)}


def mgr_train_argv(cwd: Path, data_dir: Path, *overrides: str) -> list[str]:
    return ["-m", "mgr.train", *RUN, *overrides, f"paths.data_dir={data_dir}", f"paths.log_dir={cwd / 'logs'}"]


def run_together(launches: list[tuple[list[str], dict[str, str]]], cwd: Path) -> str:
    """Start every process at once (the ranks wait for each other): their output, together. Each in a
    session of its own, so that a rank left waiting for the others (or torchrun's workers) ends with
    the launch."""
    logs = [cwd / f"process{i}.out" for i in range(len(launches))]
    procs = [subprocess.Popen(argv, cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True) for (argv, env), log in zip(launches, logs)]
    try:
        for proc in procs:
            proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    outputs = [log.read_text() for log in logs]
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-5000:]
    return "\n".join(outputs)


def simulated_srun(cwd: Path, data_dir: Path, nodes: int, tasks_per_node: int, *extra: str) -> str:
    cwd.mkdir(parents=True)
    job_id, port = 4242 + nodes, find_free_network_port()
    overrides = [f"trainer.devices={tasks_per_node}", f"trainer.num_nodes={nodes}", *extra]
    argv = [sys.executable, *mgr_train_argv(cwd, data_dir, *overrides)]
    return run_together([(argv, {**base_environment(), **srun_task_environment(rank, nodes, tasks_per_node, job_id, port)})
                         for rank in range(nodes * tasks_per_node)], cwd)


def torchrun(cwd: Path, data_dir: Path) -> str:
    cwd.mkdir(parents=True)
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", *mgr_train_argv(cwd, data_dir)]
    return run_together([(argv, base_environment())], cwd)


def check_one_process_per_rank_and_one_run_directory(output: str, cwd: Path, name: str) -> Path:
    ranks = re.findall(r"Initializing distributed: GLOBAL_RANK: (\d+), MEMBER: \d+/(\d+)", output)
    assert sorted(ranks) == [("0", "2"), ("1", "2")], output[-5000:]
    assert output.count("each runs strategy ddp in its own process, nothing is spawned") == 2, output[-5000:]
    (run_dir,) = (cwd / "logs" / "train" / "runs").iterdir()
    assert re.fullmatch(name, run_dir.name) and sorted(p.name for p in (cwd / "logs" / "train").iterdir()) == ["runs"]
    log = (run_dir / "train.log").read_text()  # rank 0's alone
    assert log.count("nothing is spawned") == 1, log
    return run_dir


@pytest.mark.slow
def test_srun_tasks_and_torchrun_workers_are_the_ranks_of_one_run(tmp_path, data_dir):
    runs = {}
    for case, (nodes, tasks_per_node, extra) in {"one_node": (1, 2, ()), "two_nodes": (2, 1, ("logger=many",))}.items():
        output = simulated_srun(tmp_path / case, data_dir, nodes, tasks_per_node, *extra)
        runs[case] = check_one_process_per_rank_and_one_run_directory(output, tmp_path / case, rf"slurm-{4242 + nodes}\.0")
    assert len(list(runs["two_nodes"].glob("wandb/offline-run-*/run-*.wandb"))) == 1  # rank 0's W&B run alone
    output = torchrun(tmp_path / "torchrun", data_dir)
    runs["torchrun"] = check_one_process_per_rank_and_one_run_directory(output, tmp_path / "torchrun", r"torchrun-[0-9a-f-]+")

    trained = {case: json.loads((run_dir / "metrics.json").read_text()) for case, run_dir in runs.items()}
    (tmp_path / "eval").mkdir()
    best = trained["one_node"]["best_checkpoint"]
    assert Path(best).parent.parent == runs["one_node"]
    evaluated = mgr_in_process("eval", f"ckpt_path={best}", cwd=tmp_path / "eval", data_dir=data_dir)
    (eval_dir,) = (tmp_path / "eval" / "logs" / "eval" / "runs").iterdir()
    one_process = json.loads((eval_dir / "metrics.json").read_text())
    for case, metrics in trained.items():  # the same seed and world size: the same training, whoever started it
        for key in KEYS:
            assert metrics[key] == pytest.approx(one_process[key], abs=1e-5), (case, key)
        assert metrics["chunk_confusion"] == one_process["chunk_confusion"], case
    assert evaluated.returncode == 0
