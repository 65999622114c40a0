"""How long a run trains: whole epochs, at least trainer.max_epochs, and on a small dataset enough
of them to take `recipe.min_steps` optimizer steps. A fixed epoch count gives a few hundred
recordings about a hundred steps and a large collection thousands; a floor of steps lets one
recipe serve both. The run's schedule follows, as it is sized when the fit starts: the one-cycle
schedule spans Lightning's estimated_stepping_batches and cosine's T_max is trainer.max_epochs,
both read from the trainer whose max_epochs `stretch_to_min_steps` sets (mgr.models.optim)."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

from mgr import MGRError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingLength:
    epochs: int
    optimizer_steps_per_epoch: int
    min_steps: int   # recipe.min_steps
    max_epochs: int  # trainer.max_epochs, the floor

    @property
    def optimizer_steps(self) -> int:
        return self.epochs * self.optimizer_steps_per_epoch

    def as_dict(self) -> dict:
        return {**asdict(self), "optimizer_steps": self.optimizer_steps}

    def __str__(self) -> str:
        return (f"Training {self.epochs} epochs ({self.optimizer_steps} optimizer steps at "
                f"{self.optimizer_steps_per_epoch} an epoch; recipe.min_steps={self.min_steps}, "
                f"trainer.max_epochs={self.max_epochs}).")


def checked_min_steps(recipe) -> int:
    """recipe.min_steps (0 without a recipe or the key: off), checked before any data work."""
    value = (recipe or {}).get("min_steps", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MGRError(f"recipe.min_steps must be a whole number of optimizer steps >= 0 (0: off), got {value!r}.")
    return value


def epochs_for(min_steps: int, max_epochs: int, steps_per_epoch: int) -> int:
    """The fewest whole epochs that take `min_steps` optimizer steps, and never fewer than `max_epochs`."""
    if min_steps <= 0 or steps_per_epoch <= 0:  # off, or no step to count
        return max_epochs
    return max(max_epochs, math.ceil(min_steps / steps_per_epoch))


def optimizer_steps_per_epoch(chunks: int, batch_size: int, world_size: int = 1, accumulate_grad_batches: int = 1,
                              limit_train_batches: int | float = 1.0) -> int:
    """The optimizer steps Lightning takes in an epoch of `chunks` training chunks. Each DDP rank reads
    its DistributedSampler share (mgr.data.datamodule._shard), padded to ceil(chunks / world_size);
    Lightning cuts the rank's batches to limit_train_batches (a count, or a fraction rounded down) and
    steps after every `accumulate_grad_batches` batches and after the epoch's last one."""
    batches = math.ceil(math.ceil(chunks / world_size) / batch_size)
    if isinstance(limit_train_batches, int):
        batches = min(batches, limit_train_batches)
    else:
        batches = int(batches * limit_train_batches)
    return math.ceil(batches / accumulate_grad_batches)


def reason_to_leave_alone(min_steps: int, max_epochs: int | None, max_steps: int, fitted_head: bool) -> str | None:
    """Why the run keeps the length its trainer settings give it, or None when recipe.min_steps sizes it.
    Settings the user gives that fix the length themselves win."""
    if max_steps not in (None, -1):
        return f"trainer.max_steps={max_steps} sets the run's length"
    if max_epochs in (None, -1):
        return f"trainer.max_epochs={max_epochs} sets no epoch count to extend"
    if fitted_head:
        return "the head is fitted in closed form and takes no optimizer steps"
    return None


def stretch_to_min_steps(trainer, datamodule, min_steps: int, fitted_head: bool) -> TrainingLength | None:
    """Set the trainer's epoch count by `epochs_for`, before the fit (Lightning sizes the schedule when
    the fit starts); logs it and returns it, or None where the run's length stays as configured. A
    resume computes the same count from the same data and settings, so it ends where the original run
    would have (on another number of DDP ranks an epoch holds other steps, and the count follows them)."""
    if min_steps <= 0:
        return None
    if reason := reason_to_leave_alone(min_steps, trainer.max_epochs, trainer.max_steps, fitted_head):
        log.info("recipe.min_steps=%d is not applied: %s.", min_steps, reason)
        return None
    datamodule.setup("fit")  # splits once; Lightning's own setup then finds the split made
    # Attached as trainer.fit attaches it, so the loader is chosen for the trainer's device (data.on_device
    # decides, and logs, once, for the device the fit runs on, not first for the CPU).
    datamodule.trainer = trainer
    loader = datamodule.train_dataloader()  # the epoch as Lightning will read it
    steps = optimizer_steps_per_epoch(len(loader.dataset), loader.batch_size, trainer.world_size,
                                      trainer.accumulate_grad_batches, trainer.limit_train_batches)
    length = TrainingLength(epochs_for(min_steps, trainer.max_epochs, steps), steps, min_steps, trainer.max_epochs)
    trainer.fit_loop.max_epochs = length.epochs  # what trainer.max_epochs reads
    log.info("%s", length)
    return length
