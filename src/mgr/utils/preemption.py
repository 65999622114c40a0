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
a handler of its own: mgr leaves it so. Before the time limit (hydra.launcher.signal_delay_s), and on
preemption where the cluster says so (PreemptParameters=send_user_signal), SLURM sends submitit's
signal, USR2 (SUBMITIT_PREEMPT_SIGNAL), not the USR1 on which Lightning saves an hpc checkpoint and
requeues: submitit's handler requeues the job, which starts the Hydra job again from the beginning.
During the fit CheckpointBeforeRequeue first saves hpc_ckpt_<n>.ckpt in the run directory, from which
the requeued job resumes (mgr.run_directory)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from mgr.utils.run_checkpoints import next_hpc_checkpoint

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


def submitit_requeue_signal() -> signal.Signals | None:
    """The signal on which submitit requeues the SLURM job that runs this process (SUBMITIT_PREEMPT_SIGNAL,
    USR2 unless set); None outside a job submitit started on SLURM (it exports SUBMITIT_EXECUTOR=slurm)."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or "SLURM_JOB_ID" not in os.environ:
        return None
    from submitit import JobEnvironment

    return signal.Signals["SIG" + JobEnvironment.USR_SIG]


class CheckpointBeforeRequeue(pl.Callback):
    """During the fit, on submitit's requeue signal, save hpc_ckpt_<n>.ckpt in the run directory (the
    trainer's default_root_dir), then let submitit's own handler requeue the job and end it; the
    requeued job resumes from that checkpoint. The signal only notes the request: the checkpoint waits
    for the end of a training batch other than an epoch's last, a state Lightning resumes from (saved
    in the middle of a validation or after an epoch's last batch, the resumed fit skips that
    validation, and EarlyStopping stops it for want of its metric). Epochs of one batch have no such
    end: there submitit requeues the job as before, without a checkpoint. Under DDP the ranks agree on the
    batch (any rank's request counts) and all save (saving is collective; global rank 0 writes).
    Lightning's own requeue stays off: it listens for USR1, which SLURM does not send submitit's jobs."""

    def __init__(self, signum: signal.Signals):
        self.signum = signum
        self.submitit_handler = None
        self.requested = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        handler = signal.getsignal(self.signum)
        if not callable(handler) or threading.current_thread() is not threading.main_thread():
            return  # no submitit handler to go before (or no signals in this thread)
        self.submitit_handler, self.requested = handler, False
        signal.signal(self.signum, self.note_request)

    def note_request(self, signum: int, frame) -> None:
        self.requested = True

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        if self.submitit_handler is None:
            return
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            if self.requested and trainer.num_training_batches == 1:  # no batch to save at: requeue as before
                self.requeue()
            return
        if trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            path = next_hpc_checkpoint(Path(trainer.default_root_dir))
            trainer.save_checkpoint(path)
            if trainer.is_global_zero:
                log.warning("%s from SLURM (time limit or preemption): saved %s at epoch %d; submitit requeues the "
                            "job, which resumes from it.", self.signum.name, path, trainer.current_epoch)
            self.requeue()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.requested:  # the fit ended before a batch could save: submitit requeues the job as it would
            self.requeue()
        self.restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.restore()

    def requeue(self) -> None:
        """submitit's handler, which requeues the job and ends the process on global rank 0 (and returns on
        the other ranks, which SLURM's requeue then ends)."""
        submitit_handler = self.submitit_handler
        self.restore()
        submitit_handler(self.signum, None)

    def restore(self) -> None:
        """submitit's handler back: outside the fit there is no trainer state worth a checkpoint."""
        if self.submitit_handler is not None and signal.getsignal(self.signum) == self.note_request:
            signal.signal(self.signum, self.submitit_handler)
        self.submitit_handler, self.requested = None, False
