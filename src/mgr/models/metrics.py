"""Track-level metrics: chunk logits averaged per track, then scored.

A torchmetrics Metric, so under DDP the per-chunk states are gathered from all
ranks before the per-track mean is taken.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_confusion_matrix, multiclass_f1_score
from torchmetrics.utilities import dim_zero_cat


class TrackMetrics(Metric):
    full_state_update = False

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.add_state("logits", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")
        self.add_state("tracks", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, targets: torch.Tensor, tracks: torch.Tensor) -> None:
        self.logits.append(logits.detach().float())
        self.targets.append(targets)
        self.tracks.append(tracks)

    def track_logits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean logits [n_tracks, C] and the label of each track."""
        logits, targets, tracks = (dim_zero_cat(s) for s in (self.logits, self.targets, self.tracks))
        ids, inverse = torch.unique(tracks, return_inverse=True)
        sums = torch.zeros(len(ids), self.num_classes, device=logits.device).index_add_(0, inverse, logits)
        counts = torch.bincount(inverse, minlength=len(ids)).clamp(min=1).unsqueeze(1)
        labels = torch.zeros(len(ids), dtype=targets.dtype, device=targets.device).scatter_(0, inverse, targets)
        return sums / counts, labels

    def compute(self) -> dict[str, torch.Tensor]:
        mean_logits, labels = self.track_logits()
        c = self.num_classes
        return {
            "track_acc": multiclass_accuracy(mean_logits, labels, c, average="micro"),
            "track_f1": multiclass_f1_score(mean_logits, labels, c, average="macro"),
            "track_confusion": multiclass_confusion_matrix(mean_logits, labels, c),
        }
