"""Which run a training run writes: a new run in a directory of its own, or the run of its
directory continued from one of its checkpoints. Settled before any data work, so that a mistake
costs nothing and loses nothing:

- a run without `ckpt_path` does not start in a directory that holds another run's results (Hydra
  makes a fresh directory per run and per multirun job: this stops a reused `hydra.run.dir`);
- `ckpt_path=last` needs the run's `checkpoints/last.ckpt` (Lightning would train from scratch);
- a resumed run keeps its directory's history, cut back to its checkpoint (see mgr.utils.csv_logger);
- the ranks a cluster started (SLURM's srun tasks, torchrun's workers) share one run directory
  (SharedRunDirectory).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mgr import MGRError
from mgr.environment import launched_rank
from mgr.utils.run_checkpoints import hpc_checkpoints, last_checkpoints

log = logging.getLogger(__name__)

# What a run leaves in its directory once it has trained (Hydra's .hydra/ and train.log are
# there before the run starts): checkpoints, metrics.csv of the CSV logger, the test results.
RUN_RESULTS = ("checkpoints/*.ckpt", "hpc_ckpt_*.ckpt", "*/metrics.csv", "metrics.json", "test_predictions.csv")


def prepare_run_directory(cfg: DictConfig) -> None:
    """Stop a run that would overwrite another run or resume from nothing; cut a resumed run's
    metrics.csv back to its checkpoint. Once, in the process that starts the run: Lightning's DDP
    ranks start mgr.train again in the same directory once the run has begun."""
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank != 0:
        return
    run_dir = Path(cfg.paths.output_dir)
    checkpoint = checkpoint_to_resume(cfg.get("ckpt_path"), run_dir)
    results = run_results(run_dir)
    if checkpoint is None and results:
        raise MGRError(f"{run_dir} already holds a run ({results[0].relative_to(run_dir)}); resume it with "
                       "ckpt_path=last, or choose another directory (another hydra.run.dir, or none for a new one).")
    if checkpoint is not None and results:
        continue_history(run_dir, checkpoint)


def checkpoint_to_resume(ckpt_path: str | None, run_dir: Path) -> str | None:
    """The checkpoint the fit resumes from, as Lightning will choose it: `last` is the newest
    last*.ckpt of the run's checkpoints/; without ckpt_path, a requeued SLURM job resumes from
    the newest hpc_ckpt_<n>.ckpt in the run directory (saved before the requeue by Lightning on
    SIGUSR1, or under submitit by mgr.utils.preemption.CheckpointBeforeRequeue)."""
    if ckpt_path == "last":
        last = last_checkpoints(run_dir)
        if not last:
            raise MGRError(f"ckpt_path=last found no checkpoint at {run_dir / 'checkpoints' / 'last.ckpt'}; pass "
                           "hydra.run.dir=<the run to resume>, the run directory that holds checkpoints/last.ckpt.")
        return str(last[-1])
    if ckpt_path:
        return str(ckpt_path)
    return _requeued_slurm_checkpoint(run_dir)


def _requeued_slurm_checkpoint(run_dir: Path) -> str | None:
    from lightning_fabric.plugins.environments import SLURMEnvironment

    versions = hpc_checkpoints(run_dir)
    return str(versions[max(versions)]) if versions and SLURMEnvironment.detect() else None


def run_results(run_dir: Path) -> list[Path]:
    return [path for pattern in RUN_RESULTS for path in sorted(run_dir.glob(pattern))]


def continue_history(run_dir: Path, checkpoint: str) -> None:
    """Keep the rows of the run's metrics.csv logged before `checkpoint` was saved; the resumed
    run logs the rest again. Only from the run's own checkpoint: another run's would splice two
    histories into one."""
    from mgr.models import read_checkpoint
    from mgr.utils.csv_logger import keep_rows_before

    if run_dir.resolve() not in Path(checkpoint).resolve().parents:
        raise MGRError(f"{run_dir} holds a run that {checkpoint} is not part of; continue that run with "
                       f"ckpt_path=last, or start from {checkpoint} in another directory (another hydra.run.dir, "
                       "or none for a new one).")
    histories = sorted(run_dir.glob("*/metrics.csv"))
    if not histories:
        return
    step = batches_stepped(read_checkpoint(checkpoint))
    for history in histories:
        dropped = keep_rows_before(history, step)
        if dropped:
            log.info("Resuming at step %d: %d row(s) of %s logged after the checkpoint are logged again by this run.",
                     step, dropped, history)


def batches_stepped(checkpoint: dict) -> int:
    """The training step a checkpoint resumes at, counted as Lightning counts the `step` of logged rows."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
    return int(loop.get("_batches_that_stepped", checkpoint.get("global_step", 0)))


class SharedRunDirectory(Callback):
    """Hydra callback (conf/hydra/default.yaml) for the ranks a cluster starts: each runs the whole
    command, and Hydra would give each a directory of its own, named after the moment it started.
    They share one, named after the cluster's job, which every rank knows: runs/slurm-<job id>.<step>
    (the same again when SLURM requeues the job, so that it resumes from its hpc checkpoint there) or
    runs/torchrun-<rendezvous id>. A hydra.run.dir given on the command line is kept. Only rank 0
    writes Hydra's .hydra/ and the log file there; the other ranks log to their terminal
    alone.
    Under hydra/launcher=slurm the tasks already share the job directory the submitting process chose."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        dir_given = any(o.startswith("hydra.run.dir=") for o in config.hydra.overrides.hydra)
        try:
            name = cluster_run_name(needed=not dir_given)
            if name is not None and "trainer" in config:
                from mgr.run import checked_cluster_ranks

                checked_cluster_ranks(config.trainer)  # before any work, not once the data is ready
        except MGRError as e:  # Hydra would turn an exception of a callback into a warning and go on
            print(f"mgr: error: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        if name is None:
            return
        if not dir_given:
            config.hydra.run.dir = str(Path(config.hydra.run.dir).parent / name)
        if launched_rank() != 0:
            config.hydra.output_subdir = None

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if cluster_run_name(needed=False) is None or launched_rank() == 0:
            return
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)
            handler.close()


def cluster_run_name(needed: bool = True) -> str | None:
    """The name all ranks of a run that a cluster started share (None for a single process), read from
    the variables by which Lightning detects the cluster (TorchElasticEnvironment, SLURMEnvironment;
    SLURM's job names `bash` and `interactive` mark an interactive shell, not ranks). An error where
    the cluster gives the ranks nothing to share and the name is `needed` (no hydra.run.dir given)."""
    env = os.environ
    if "TORCHELASTIC_RUN_ID" in env:
        if int(env.get("WORLD_SIZE", "1")) < 2:
            return None
        if env["TORCHELASTIC_RUN_ID"] == "none" and needed:  # torchrun's static rendezvous without --rdzv-id
            raise MGRError("torchrun started the ranks without a run id they could name their shared run directory "
                           "by; pass torchrun --rdzv-id=<a name for the run> (or --standalone on one machine), or "
                           "hydra.run.dir=<the run directory>.")
        return f"torchrun-{env['TORCHELASTIC_RUN_ID']}"
    if int(env.get("SLURM_NTASKS", "1")) > 1 and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        step = env.get("SLURM_STEP_ID")
        return f"slurm-{env.get('SLURM_JOB_ID', 'job')}" + (f".{step}" if step else "")
    return None

