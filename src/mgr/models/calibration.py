"""Temperature scaling (Guo et al. 2017), fitted after training on the validation split's chunk logits of
the best checkpoint's weights and stored in that checkpoint's hyperparameters (`temperature`; a
checkpoint without one has T = 1); the task's forward divides its logits by it, so every probability
mgr reports is calibrated.

- A multi-class model has one temperature T: its probabilities are the softmax of logits / T, T the
  one minimising the validation chunks' negative log-likelihood (cross-entropy). Dividing every logit
  by one positive number keeps each chunk's argmax, so chunk accuracy and the default track rule's
  (mean_logits) predictions do not change; only the probabilities do.
- A multi-label model (task=multilabel) has one temperature per tag, T_k (stored as a list): tag k's
  probability is the sigmoid of its logit / T_k, T_k the one minimising the binary cross-entropy of
  tag k on the validation chunks. Each tag is scaled on its own, since one tag's sigmoid may be too
  sure and another's too shy. A sigmoid of logit / T_k crosses a threshold where the logit does, but
  the thresholds are probabilities: they are chosen again on the calibrated validation tracks
  (`calibrate`), so they are thresholds of the probabilities the model reports.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import move_data_to_device
from torchmetrics.utilities.distributed import gather_all_tensors


log = logging.getLogger(__name__)

# The search range of log T: wide enough for any trained net, narrow enough that a degenerate validation
# set (every chunk right with a margin) cannot send T to 0 or infinity.
LOG_T_RANGE = (-5.0, 5.0)


@dataclass(frozen=True)
class TemperatureFit:
    temperature: float | list[float]  # one T, or a multi-label model's one per tag
    nll_before: float  # the validation chunks' mean negative log-likelihood at T = 1 (multi-label: mean over tags)
    nll_after: float  # ... at the fitted T
    chunks: int

    def __str__(self) -> str:
        return (f"{describe(self.temperature)} fitted on {self.chunks} validation chunks: "
                f"NLL {self.nll_before:.4f} -> {self.nll_after:.4f}")


def describe(temperature: float | list[float]) -> str:
    """One temperature, or per-tag temperatures by their range, for people."""
    if isinstance(temperature, list):
        return f"per-tag temperatures {min(temperature):.3g} to {max(temperature):.3g}"
    return f"temperature {temperature:.3g}"


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> TemperatureFit:
    """The temperature of the task `targets` are of: class indices [N] (multi-class), one T minimising
    the mean cross-entropy of logits / T; rows of 0/1 [N, C] (multi-label), one T per tag
    (`fit_tag_temperatures`)."""
    if targets.dim() == 2:
        return fit_tag_temperatures(logits, targets)
    logits, targets = logits.detach().double().cpu(), targets.detach().cpu()
    temperature, before, after = fitted(lambda t: F.cross_entropy(logits / t, targets))
    return TemperatureFit(temperature, before, after, len(targets))


def fit_tag_temperatures(logits: torch.Tensor, targets: torch.Tensor) -> TemperatureFit:
    """Per-tag temperature scaling: for each tag k, the T_k minimising the mean binary cross-entropy of
    its logits / T_k against its 0/1 `targets` [N, C] (each tag's loss depends on its own T_k only, so
    each is fitted alone). The NLLs are the mean over tags (and chunks) of the binary cross-entropy."""
    logits, targets = logits.detach().double().cpu(), targets.detach().double().cpu()
    fits = [fitted(lambda t, k=k: F.binary_cross_entropy_with_logits(logits[:, k] / t, targets[:, k]))
            for k in range(logits.shape[1])]
    temperatures, before, after = (list(values) for values in zip(*fits))
    return TemperatureFit(temperatures, sum(before) / len(fits), sum(after) / len(fits), len(targets))


def fitted(nll: Callable[[torch.Tensor], torch.Tensor]) -> tuple[float, float, float]:
    """The temperature minimising `nll` (a function of T), by LBFGS on log T in float64 (the NLL of
    logits / T is convex in 1/T, so the minimum is the one), kept within LOG_T_RANGE and never worse
    than T = 1; returns it with the NLL at T = 1 and at it."""
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = nll(log_t.exp())
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().clamp(*LOG_T_RANGE).exp())
    with torch.no_grad():
        before, after = nll(torch.tensor(1.0, dtype=torch.float64)).item(), nll(torch.tensor(temperature, dtype=torch.float64)).item()
    if not after <= before:  # never worse than leaving the model alone (e.g. a failed line search)
        return 1.0, before, before
    return temperature, before, after


def calibrate(model, datamodule, device: torch.device) -> TemperatureFit:
    """Temperature scaling of `model` on the validation split: its temperature (or per-tag temperatures)
    fitted and set, and a multi-label model's thresholds chosen again on the calibrated validation tracks,
    the probabilities they will be compared with (chosen as validation chooses them: choose_thresholds)."""
    from mgr.models.metrics import TrackMetrics

    logits, targets, tracks = validation_logits(model, datamodule, device)
    fit = fit_temperature(logits, targets)
    model.set_temperature(fit.temperature)
    if model.multilabel and len(targets):
        track_metrics = TrackMetrics(model.num_classes, model.track_aggregation, multilabel=True)
        track_metrics.update(model.calibrated(logits), targets, tracks)
        model.choose_thresholds(*track_metrics.track_scores())  # not compute(): every rank's chunks are here
    return fit


def validation_logits(model, datamodule, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The chunk logits (at T = 1), targets (as the task scores against them: class indices, or rows of
    0/1) and tracks of the validation split, scored as the validation step scores them (`loader_outputs`);
    every rank gets every rank's, so every rank fits the same T."""
    datamodule.setup("validate")
    with as_trained(model):
        logits, targets, tracks = loader_outputs(model, datamodule, datamodule.val_dataloader(), device, model)
    return logits, model.targets_of(targets), tracks


@torch.no_grad()
def loader_outputs(model, datamodule, loader, device: torch.device,
                   output: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`output` (the model's logits, or its embeddings) of every chunk `loader` yields, with its target
    and track, as the validation step sees them: the batches through the data module's transfer hook, the
    model in eval mode, padding chunks left out; under DDP every rank's shard, gathered. On the CPU."""
    was_training = model.training
    model.eval().to(device)
    outputs, targets, tracks = [], [], []
    try:
        for batch in loader:
            wave, target, track = datamodule.on_after_batch_transfer(move_data_to_device(batch, device), 0)
            keep = model.counted(target)
            outputs.append(output(wave[keep]).float())
            targets.append(target[keep])
            tracks.append(track[keep])
    finally:
        model.train(was_training)
    parts = [torch.cat(part) for part in (outputs, targets, tracks)]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts = [torch.cat(gather_all_tensors(t)) for t in parts]
    return tuple(t.cpu() for t in parts)


@contextmanager
def as_trained(model) -> Iterator[None]:
    """Within it, `model` (an ensemble: each of its members) computes its probabilities at T = 1, as trained."""
    models = [model, *getattr(model, "members", [])]
    kept = [m.temperature for m in models]
    for m in models:
        m.temperature = 1.0
    try:
        yield
    finally:
        for m, temperature in zip(models, kept):
            m.temperature = temperature


def is_calibrated(model) -> bool:
    """Whether any temperature of `model` (an ensemble: of its members) differs from 1."""
    values = [model.temperature, *(m.temperature for m in getattr(model, "members", []))]
    return any(t != 1.0 for value in values for t in (value if isinstance(value, list) else [value]))


def temperatures(model) -> float | list:
    """The temperature a model's probabilities are computed at (a multi-label model's: one per tag; an
    ensemble's: its members')."""
    members = getattr(model, "members", None)
    return [m.temperature for m in members] if members is not None else model.temperature
