"""recipe.min_steps: whole epochs, at least trainer.max_epochs, enough for min_steps optimizer steps
counted as Lightning steps (DDP shares, limit_train_batches, gradient accumulation); explicit
lengths and fitted heads left alone; the schedule sized by the stretched epoch count."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from mgr import MGRError
from mgr.models.optim import build_scheduler
from mgr.models.training_length import (TrainingLength, checked_min_steps, epochs_for, optimizer_steps_per_epoch,
                                        reason_to_leave_alone, stretch_to_min_steps)


@pytest.mark.parametrize("min_steps,max_epochs,steps_per_epoch,epochs", [
    (1000, 8, 30, 34),    # small data: ceil(1000 / 30)
    (1000, 8, 300, 8),    # large data: the floor is the epoch count
    (1000, 8, 125, 8),    # exactly 1000 steps in 8 epochs
    (1000, 8, 124, 9),    # one step short: one more whole epoch
    (0, 8, 30, 8),        # off
    (1000, 8, 0, 8),      # an epoch without steps cannot reach any count
])
def test_epochs_for_floors_at_max_epochs_and_rounds_up_to_whole_epochs(min_steps, max_epochs, steps_per_epoch, epochs):
    assert epochs_for(min_steps, max_epochs, steps_per_epoch) == epochs


@pytest.mark.parametrize("kwargs,steps", [
    ({"chunks": 100, "batch_size": 32}, 4),                                # 3 full batches and one of 4
    ({"chunks": 96, "batch_size": 32}, 3),
    ({"chunks": 100, "batch_size": 32, "accumulate_grad_batches": 3}, 2),  # the epoch's last batch steps too
    ({"chunks": 100, "batch_size": 32, "accumulate_grad_batches": 4}, 1),
    ({"chunks": 100, "batch_size": 10, "world_size": 3}, 4),               # 34 chunks a rank (padded)
    ({"chunks": 100, "batch_size": 10, "limit_train_batches": 2}, 2),      # a count of batches
    ({"chunks": 100, "batch_size": 10, "limit_train_batches": 0.25}, 2),   # a fraction, rounded down
    ({"chunks": 100, "batch_size": 10, "limit_train_batches": 0.25, "accumulate_grad_batches": 2}, 1),
])
def test_optimizer_steps_per_epoch_counts_as_lightning_steps(kwargs, steps):
    assert optimizer_steps_per_epoch(**kwargs) == steps


class _Tiny(pl.LightningModule):
    """A one-weight model whose schedule is built as GenreClassifier builds it."""

    def __init__(self, scheduler: str = "none"):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.scheduler_name = scheduler
        self.scheduler = None

    def training_step(self, batch, batch_idx):
        return (self.weight * batch[0]).pow(2).mean()

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        entry = build_scheduler({"name": self.scheduler_name}, optimizer, self.trainer.max_epochs,
                                self.trainer.estimated_stepping_batches)
        self.scheduler = entry and entry["scheduler"]
        return optimizer if entry is None else {"optimizer": optimizer, "lr_scheduler": entry}


def _loader(chunks: int, batch_size: int) -> DataLoader:
    return DataLoader(TensorDataset(torch.ones(chunks, 1)), batch_size=batch_size, shuffle=True)


def _trainer(**settings) -> pl.Trainer:
    return pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, **settings)


@pytest.mark.parametrize("chunks,accumulate,limit", [(33, 1, 1.0), (33, 2, 1.0), (32, 3, 1.0), (65, 2, 3), (65, 1, 0.5)])
def test_optimizer_steps_per_epoch_are_the_steps_lightning_takes(chunks, accumulate, limit):
    trainer = _trainer(max_epochs=2, accumulate_grad_batches=accumulate, limit_train_batches=limit)
    trainer.fit(_Tiny(), train_dataloaders=_loader(chunks, 8))
    assert trainer.global_step == 2 * optimizer_steps_per_epoch(chunks, 8, 1, accumulate, limit)


@pytest.mark.parametrize("max_epochs,max_steps,fitted,reason", [
    (8, 500, False, "trainer.max_steps=500"),
    (-1, -1, False, "trainer.max_epochs=-1"),
    (None, -1, False, "trainer.max_epochs=None"),
    (8, -1, True, "fitted in closed form"),
    (8, -1, False, None),
])
def test_explicit_lengths_and_fitted_heads_are_left_alone(max_epochs, max_steps, fitted, reason):
    found = reason_to_leave_alone(1000, max_epochs, max_steps, fitted)
    assert found == reason if reason is None else reason in found


@pytest.mark.parametrize("value", [-1, 1.5, "1000", True])
def test_min_steps_that_is_no_count_is_one_error(value):
    with pytest.raises(MGRError, match="recipe.min_steps must be a whole number"):
        checked_min_steps({"min_steps": value})


def test_min_steps_is_off_without_a_recipe_or_the_key():
    assert checked_min_steps(None) == checked_min_steps({"mixup_alpha": 0.2}) == 0
    assert checked_min_steps({"min_steps": 1000}) == 1000


def test_the_log_line_names_the_rule_and_its_inputs():
    length = TrainingLength(epochs=34, optimizer_steps_per_epoch=30, min_steps=1000, max_epochs=8)
    assert str(length) == ("Training 34 epochs (1020 optimizer steps at 30 an epoch; recipe.min_steps=1000, "
                           "trainer.max_epochs=8).")
    assert length.as_dict() == {"epochs": 34, "optimizer_steps_per_epoch": 30, "min_steps": 1000, "max_epochs": 8,
                                "optimizer_steps": 1020}


class _Data:
    """The two calls stretch_to_min_steps makes of a GenreDataModule."""

    def __init__(self, chunks: int, batch_size: int):
        self.loader = _loader(chunks, batch_size)
        self.stages = []

    def setup(self, stage):
        self.stages.append(stage)

    def train_dataloader(self):
        return self.loader


@pytest.mark.parametrize("scheduler", ["onecycle", "cosine"])
def test_a_stretched_run_takes_its_steps_and_its_schedule_spans_them(scheduler):
    trainer, data = _trainer(max_epochs=2, accumulate_grad_batches=2), _Data(chunks=70, batch_size=10)  # 4 steps an epoch
    length = stretch_to_min_steps(trainer, data, min_steps=30, fitted_head=False)
    assert (length.epochs, length.optimizer_steps_per_epoch, length.optimizer_steps) == (8, 4, 32)
    assert data.stages == ["fit"]
    model = _Tiny(scheduler)
    trainer.fit(model, train_dataloaders=data.loader)  # one-cycle raises if stepped past its total_steps
    assert (trainer.current_epoch, trainer.global_step) == (8, 32)
    if scheduler == "onecycle":
        assert (model.scheduler.total_steps, model.scheduler.last_epoch) == (32, 32)  # stepped to its end
    else:
        assert (model.scheduler.T_max, model.scheduler.last_epoch) == (8, 8)


@pytest.mark.parametrize("settings,min_steps,fitted", [
    ({"max_epochs": 2, "max_steps": 5}, 30, False),
    ({"max_epochs": -1}, 30, False),
    ({"max_epochs": 2}, 30, True),
    ({"max_epochs": 2}, 0, False),
])
def test_a_run_left_alone_keeps_its_trainer_and_data_untouched(settings, min_steps, fitted):
    trainer, data = _trainer(**settings), _Data(chunks=70, batch_size=10)
    assert stretch_to_min_steps(trainer, data, min_steps, fitted_head=fitted) is None
    assert trainer.max_epochs == settings["max_epochs"] and data.stages == []


class _DataSeeingTheTrainer(pl.LightningDataModule):
    """A data module that, like GenreDataModule under data.on_device, picks its loader for the device of
    the trainer it is attached to: it records which trainer it saw when asked for the training loader."""

    def __init__(self):
        super().__init__()
        self.loader = _loader(70, 10)
        self.trainer_seen = []

    def train_dataloader(self):
        self.trainer_seen.append(self.trainer)
        return self.loader


def test_the_count_reads_the_loader_of_the_trainers_device():
    # Without the trainer, data.on_device=auto chose for the CPU first, and again (a second log line)
    # for the GPU or DDP rank the fit runs on.
    trainer, data = _trainer(max_epochs=2), _DataSeeingTheTrainer()
    stretch_to_min_steps(trainer, data, min_steps=30, fitted_head=False)
    assert data.trainer_seen == [trainer]
    trainer.fit(_Tiny(), datamodule=data)  # Lightning attaches the same trainer again
    assert data.trainer_seen[-1] is trainer and trainer.current_epoch == 5
