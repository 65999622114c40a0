"""Preemption: a job told to stop (SIGTERM from `kill`, a cloud scheduler, submitit, Kubernetes) saves
checkpoints/last.ckpt before Lightning ends the fit, so
`python -m mgr.train ckpt_path=last hydra.run.dir=<that run>` continues where it stopped; then the
process ends with 128 + the signal's number (143; 130 for Ctrl-C) and one line that says how to resume.

A local multirun (Hydra's basic launcher) runs its jobs one after the other in one process: the stop
must end the process, or Hydra starts the next job. Lightning turns SIGTERM into a SIGTERMException
where its loops can stop, but what reaches Hydra may be another error (a DataLoader worker killed by
the same `pkill` fails the fit's teardown), which Hydra records as a failed job before it starts the
next. So CheckpointOnSigterm records the stop (mgr.entry.record_stop) whatever ended the stage, and
mgr's task wrapper (mgr.entry.exit_when_told_to_stop) ends the process once the job has returned.
Outside Lightning's loops (data preparation, calibration) SIGTERM keeps its default: the process
ends at once.

On SLURM (submitit) every job is a process of its own; submitit (SIGUSR2) or Lightning (SIGUSR1)
requeue it before the time limit, which this leaves alone, and the requeued job resumes from its
checkpoint in the same run directory."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from mgr.entry import record_stop

log = logging.getLogger(__name__)


class CheckpointOnSigterm(pl.Callback):
    """Save checkpoints/last.ckpt where Lightning stops the fit on SIGTERM, and record any stop (SIGTERM,
    Ctrl-C) that reached the trainer, however the stage then ended."""

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.training:
            path = self.dirpath / "last.ckpt"
            trainer.save_checkpoint(path)
            log.warning("Stopped by SIGTERM at epoch %d; saved %s (resume with ckpt_path=last).",
                        trainer.current_epoch, path)
        if trainer.received_sigterm:  # also when another error ended the stage (a worker killed with this process)
            record_stop(signal.SIGTERM)
        if isinstance(exception, KeyboardInterrupt):  # Lightning ends it with sys.exit(1)
            record_stop(signal.SIGINT)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # A SIGTERM after the loops' last check (the last batch, the epoch's end) lets the stage finish.
        if trainer.received_sigterm:
            record_stop(signal.SIGTERM)
