"""Optimizers and learning-rate schedules from the `optimizer` and `scheduler`
config groups. They are plain values (a name and torch's arguments), not
`_target_`s: they are stored in checkpoints, which load with weights_only=True
and so can hold no code."""

from __future__ import annotations

import torch

from mgr import MGRError

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
SCHEDULERS = ("none", "cosine", "plateau")
DEFAULT_OPTIMIZER = {"name": "adam", "lr": 1e-3}  # without an optimizer group (a task built in code)


def build_optimizer(settings: dict | None, parameters) -> torch.optim.Optimizer:
    settings = dict(settings or DEFAULT_OPTIMIZER)
    name = settings.pop("name", "adam")
    if name not in OPTIMIZERS:
        raise MGRError(f"Unknown optimizer.name={name!r}; choose one of {', '.join(OPTIMIZERS)}.")
    return OPTIMIZERS[name](parameters, **settings)


def build_scheduler(settings: dict | None, optimizer: torch.optim.Optimizer, max_epochs: int | None) -> dict | None:
    """Lightning's lr_scheduler entry, or None for a constant learning rate."""
    settings = dict(settings or {"name": "none"})
    name = settings.pop("name", "none")
    if name == "none":
        return None
    if name == "cosine":
        epochs = max_epochs if max_epochs and max_epochs > 0 else 100
        return {"scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, **settings)}
    if name == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", **settings)
        return {"scheduler": scheduler, "monitor": "val/loss"}
    raise MGRError(f"Unknown scheduler.name={name!r}; choose one of {', '.join(SCHEDULERS)}.")
