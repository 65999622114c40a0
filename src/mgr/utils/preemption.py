"""Preemption: a job told to stop (SIGTERM from a cloud scheduler, submitit, Kubernetes)
saves checkpoints/last.ckpt before Lightning ends the fit, so
`python -m mgr.train ckpt_path=last hydra.run.dir=<that run>` continues where it stopped.
On SLURM, Lightning handles SIGUSR1 itself: it saves and requeues the job, and the
requeued job resumes from that checkpoint in the same run directory."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class CheckpointOnSigterm(pl.Callback):
    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.training:
            path = self.dirpath / "last.ckpt"
            trainer.save_checkpoint(path)
            log.warning("Stopped by SIGTERM at epoch %d; saved %s (resume with ckpt_path=last).",
                        trainer.current_epoch, path)
