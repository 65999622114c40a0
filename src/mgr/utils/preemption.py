"""Preemption: a job told to stop (SIGTERM from `kill`, a cloud scheduler, submitit, Kubernetes) saves
checkpoints/last.ckpt where Lightning ends the fit, so
`python -m mgr.train ckpt_path=last hydra.run.dir=<that run>` continues where it stopped.

Then the process ends, with status 128 + the signal's number (143; 130 for Ctrl-C) and one line that
names the job and says how to resume it (mgr.entry.exit_when_told_to_stop, around every task). A
local multirun (Hydra's basic launcher) runs its jobs one after the other in one process, and Hydra
starts the next job after any job that returned or raised an error: a stop must end the process.
What reaches Hydra need not be Lightning's SIGTERMException: `pkill -f mgr.train` kills the
DataLoader workers too, and torch reports their death as an error at any moment, even while this
callback saves or inside Lightning's own SIGTERM handler. So the stop is recorded as the signal
arrives, before any Python handler runs (mgr.entry.recording_stops), not inferred from the error.

On SLURM (hydra/launcher=slurm) every job is a process of its own, whose SIGTERM submitit handles with
a handler of its own: mgr leaves it, and the signals that requeue a job before its time limit, to
submitit and Lightning as before."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class CheckpointOnSigterm(pl.Callback):
    """Save checkpoints/last.ckpt where Lightning stops the fit on SIGTERM."""

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.training:
            path = self.dirpath / "last.ckpt"
            trainer.save_checkpoint(path)
            log.warning("Stopped by SIGTERM at epoch %d; saved %s (resume with ckpt_path=last).",
                        trainer.current_epoch, path)
