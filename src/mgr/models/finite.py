"""Finite or refused: a run whose loss or weights stop being finite numbers (a learning rate far
too high, an exploding net) stops with one sentence instead of training on and reporting NaN.

`StopOnNonFinite` (added by mgr.train to every run, whatever `callbacks=`) checks the training
loss; the weights are checked wherever they leave a run or enter one: mgr.models.checkpoints refuses to write a checkpoint whose
weights are not all finite, and `load_model` refuses to build from one. Lightning's
`detect_anomaly` would check every operation of every step, several times slower.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from mgr import MGRError
from mgr.models.optim import DEFAULT_OPTIMIZER


def first_non_finite(tensors: dict) -> str | None:
    """The name of the first floating-point tensor of `tensors` (a state_dict) holding a NaN or an
    infinity; None when all are finite. Tensors on one device are read back at once, not one by one."""
    named = [(name, t) for name, t in tensors.items() if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not named:
        return None
    flags = [torch.isfinite(t).all() for _, t in named]
    one_device = len({f.device for f in flags}) == 1
    finite = torch.stack(flags).cpu() if one_device else torch.stack([f.cpu() for f in flags])
    if bool(finite.all()):
        return None
    return named[int((~finite).nonzero()[0])][0]


def lower_lr_advice(optimizer: dict | None) -> str:
    """What to do about a diverged run trained with these `optimizer` settings."""
    lr = float((optimizer or DEFAULT_OPTIMIZER).get("lr", DEFAULT_OPTIMIZER["lr"]))
    return f"lower the learning rate (optimizer.lr={lr:g}; try optimizer.lr={lr / 10:g}) and train again"


class StopOnNonFinite(pl.Callback):
    """Stops training with one sentence when the training loss becomes NaN or infinite.

    On the CPU the loss is checked after every step: reading one number there costs nothing.
    On a GPU, reading it would wait for the step to finish and stall the queue of kernels each
    step; instead a flag on the device collects the steps' results and is read every
    `trainer.log_every_n_steps` steps (when Lightning reads its logged values too) and at the
    epoch's end, so the run stops at most that many steps late. Under DDP every rank stops
    together (one rank raising alone would leave the others waiting in their next collective).
    A head fitted in closed form (`head.fitted`) takes no gradient steps and has no loss here;
    its weights are checked when the checkpoint is saved.
    """

    CHEAP_TO_READ = ("cpu",)  # devices whose values the host reads without waiting for queued work

    def __init__(self) -> None:
        self._flag: torch.Tensor | None = None  # any non-finite loss since the last check (device-side)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):  # manual optimization: nothing returned
            return
        bad = ~torch.isfinite(loss.detach()).all()
        self._flag = bad if self._flag is None else self._flag | bad
        if loss.device.type in self.CHEAP_TO_READ or trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer, pl_module)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Before validation's checkpoint: the last steps of an epoch can leave the weights non-finite
        # after its last finite loss, and the save refusal fires on rank 0 alone (under DDP the other
        # ranks would then be killed mid-collective); here every rank stops together.
        if trainer.training or (trainer.state.fn == "fit" and not trainer.sanity_checking):
            self._check_weights(trainer, pl_module)

    def _check_weights(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        name = first_non_finite(pl_module.state_dict())
        if not trainer.strategy.reduce_boolean_decision(name is not None, all=False):
            return
        raise MGRError(f"Training diverged: by step {trainer.global_step} (epoch {trainer.current_epoch}) the weights "
                       f"hold NaN or infinite values (first: {name or 'on another rank'}); "
                       f"{lower_lr_advice(pl_module.hparams.get('optimizer'))}.")

    def _check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        flag, self._flag = self._flag, None
        if not trainer.strategy.reduce_boolean_decision(bool(flag is not None and flag), all=False):
            return
        raise MGRError(f"Training diverged: the training loss became NaN or infinite by step {trainer.global_step} "
                       f"(epoch {trainer.current_epoch}); {lower_lr_advice(pl_module.hparams.get('optimizer'))}.")
