"""Temperature scaling (Guo et al. 2017): one temperature T per model, the model's probabilities the
softmax of logits / T. T is fitted after training on the validation split's chunk logits of the best
checkpoint's weights, by minimising their negative log-likelihood, and stored in that checkpoint's
hyperparameters (`temperature`; a checkpoint without one has T = 1). Dividing every logit by one
positive number keeps each chunk's argmax, so chunk accuracy and the default track rule's (mean_logits)
predictions do not change; only the probabilities do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import move_data_to_device
from torchmetrics.utilities.distributed import gather_all_tensors

from mgr.labels import PADDING_LABEL

log = logging.getLogger(__name__)

# The search range of T: wide enough for any trained net, narrow enough that a degenerate validation
# set (every chunk right with a margin) cannot send T to 0 or infinity.
LOG_T_RANGE = (-5.0, 5.0)


@dataclass(frozen=True)
class TemperatureFit:
    temperature: float
    nll_before: float  # the validation chunks' mean negative log-likelihood at T = 1
    nll_after: float  # ... at the fitted T
    chunks: int

    def __str__(self) -> str:
        return (f"temperature {self.temperature:.4g} fitted on {self.chunks} validation chunks: "
                f"NLL {self.nll_before:.4f} -> {self.nll_after:.4f}")


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> TemperatureFit:
    """The T minimising the mean cross-entropy of logits / T against `targets`, by LBFGS on log T
    (in float64; the NLL is convex in 1/T, so the minimum is the one), kept within LOG_T_RANGE."""
    logits, targets = logits.detach().double().cpu(), targets.detach().cpu()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().clamp(*LOG_T_RANGE).exp())
    with torch.no_grad():
        before = F.cross_entropy(logits, targets).item()
        after = F.cross_entropy(logits / temperature, targets).item()
    if not after <= before:  # never worse than leaving the model alone (e.g. a failed line search)
        temperature, after = 1.0, before
    return TemperatureFit(temperature, before, after, len(targets))


@torch.no_grad()
def validation_logits(model, datamodule, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunk logits (at T = 1) and labels of the validation split, scored as the validation step
    scores them: the loader's batches through the data module's transfer hook, then the model; under
    DDP each rank scores its shard and every rank gets all of them, so every rank fits the same T."""
    was_training, temperature = model.training, model.temperature
    model.eval().to(device)
    model.temperature = 1.0
    datamodule.setup("validate")
    logits, targets = [], []
    try:
        for batch in datamodule.val_dataloader():
            wave, target, _ = datamodule.on_after_batch_transfer(move_data_to_device(batch, device), 0)
            keep = target != PADDING_LABEL
            logits.append(model(wave[keep]).float())
            targets.append(target[keep])
    finally:
        model.temperature = temperature
        model.train(was_training)
    logits, targets = torch.cat(logits), torch.cat(targets)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        logits, targets = (torch.cat(gather_all_tensors(t)) for t in (logits, targets))
    return logits.cpu(), targets.cpu()


def temperatures(model) -> float | list[float]:
    """The temperature a model's probabilities are computed at (an ensemble's: its members')."""
    members = getattr(model, "members", None)
    return [m.temperature for m in members] if members is not None else model.temperature
