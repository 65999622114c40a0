"""Progress for a run whose output goes to a file (a SLURM job, nohup, benchmarks/suite/reference.py's
output.log): Lightning's rich progress bar draws only on a terminal, so such a log showed
nothing between "Training epoch: ..." and the test, however long the training.

`LogProgress` is a Lightning progress bar that writes plain log lines instead (so they reach
train.log too): where a stage stands at most once every `EVERY_S` seconds (a minute), and one line per
finished training epoch with its time and train/val metrics. The entry points use it in place
of the rich bar when stdout is not a terminal; `trainer.enable_progress_bar=false` turns off both.
"""

from __future__ import annotations

import logging
import math
import sys
import time

import torch
from pytorch_lightning.callbacks import ProgressBar

log = logging.getLogger("mgr.progress")


def progress_for_logs(enabled: bool) -> list:
    """The callbacks to add to a trainer: LogProgress when progress is on and stdout is no terminal."""
    return [LogProgress()] if enabled and not sys.stdout.isatty() else []


class LogProgress(ProgressBar):
    EVERY_S = 60.0  # at least this many seconds between a stage's lines

    def __init__(self):
        super().__init__()
        self.enabled = True
        self._epoch_started = self._stage_started = self._last = 0.0

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def _start_stage(self) -> None:
        self._stage_started = time.monotonic()  # the batches/s of this stage count from here

    def _batch(self, trainer, stage: str, done: int, total: float) -> None:
        now = time.monotonic()
        if not self.enabled or not trainer.is_global_zero or trainer.sanity_checking or now - self._last < self.EVERY_S:
            return
        self._last = now
        of = f"/{int(total)}" if math.isfinite(total) else ""
        epoch = f"{_epoch(trainer)}, " if stage == "training" else ""
        rate = done / max(now - self._stage_started, 1e-9)
        log.info("%s%s: batch %d%s, %.2f batches/s.", epoch, stage, done, of, rate)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start_stage()
        self._epoch_started = self._last = self._stage_started

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._batch(trainer, "training", batch_idx + 1, self.total_train_batches)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch(trainer, "validating", batch_idx + 1, _total(trainer.num_val_batches, dataloader_idx))

    def on_validation_start(self, trainer, pl_module) -> None:
        self._start_stage()

    def on_test_start(self, trainer, pl_module) -> None:
        self._start_stage()
        self._last = self._stage_started

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch(trainer, "testing", batch_idx + 1, _total(trainer.num_test_batches, dataloader_idx))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self.enabled or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in sorted(trainer.callback_metrics.items())
                   if k.startswith(("train/", "val/")) and isinstance(v, torch.Tensor) and v.numel() == 1}
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        log.info("%s done in %.0f s%s.", _epoch(trainer), time.monotonic() - self._epoch_started,
                 f": {shown}" if shown else "")
        self._last = time.monotonic()


def _epoch(trainer) -> str:
    last = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
    return f"Epoch {trainer.current_epoch + 1}/{last}"


def _total(batches: int | float | list, dataloader_idx: int) -> float:
    return batches[dataloader_idx] if isinstance(batches, list) else batches
