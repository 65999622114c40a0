"""Optimizers and learning-rate schedules from the `optimizer` and `scheduler`
config groups. They are plain values (a name and torch's arguments), not
`_target_`s: they are stored in checkpoints, which load with weights_only=True
and so can hold no code."""

from __future__ import annotations

import torch

from mgr import MGRError

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
SCHEDULERS = ("none", "cosine", "onecycle", "plateau")
DEFAULT_OPTIMIZER = {"name": "adam", "lr": 1e-3}  # without an optimizer group (a task built in code)


def build_optimizer(settings: dict | None, parameters) -> torch.optim.Optimizer:
    settings = dict(settings or DEFAULT_OPTIMIZER)
    name = settings.pop("name", "adam")
    if name not in OPTIMIZERS:
        raise MGRError(f"Unknown optimizer.name={name!r}; choose one of {', '.join(OPTIMIZERS)}.")
    return OPTIMIZERS[name](parameters, **settings)


def build_scheduler(settings: dict | None, optimizer: torch.optim.Optimizer, max_epochs: int | None,
                    total_steps: float | None = None) -> dict | None:
    """Lightning's lr_scheduler entry, or None for a constant learning rate. `total_steps`: the
    run's optimizer steps (Lightning's estimated_stepping_batches), which a one-cycle schedule spans."""
    settings = dict(settings or {"name": "none"})
    name = settings.pop("name", "none")
    if name == "none":
        return None
    if name == "cosine":
        epochs = max_epochs if max_epochs and max_epochs > 0 else 100
        return {"scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, **settings)}
    if name == "onecycle":
        # Warm-up then cosine annealing, stepped per batch (Smith & Topin 2019): the schedule that
        # suits short runs, where a per-epoch warm-up would spend whole epochs at a tiny rate.
        if not total_steps or total_steps == float("inf"):
            raise MGRError("scheduler=onecycle needs a bounded run: set trainer.max_epochs or trainer.max_steps.")
        peaks = [group["lr"] for group in optimizer.param_groups]  # each group's rate is its peak
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=int(total_steps), **settings)
        return {"scheduler": scheduler, "interval": "step"}
    if name == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", **settings)
        return {"scheduler": scheduler, "monitor": "val/loss"}
    raise MGRError(f"Unknown scheduler.name={name!r}; choose one of {', '.join(SCHEDULERS)}.")
