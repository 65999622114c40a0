"""Track-level metrics: each track's chunks combined by the model's `TrackAggregation`
(mgr.models.aggregation: mean of logits by default), then scored.

A torchmetrics Metric, so under DDP the per-chunk states are gathered from all
ranks before the chunks of a track are combined.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_confusion_matrix, multiclass_f1_score
from torchmetrics.utilities import dim_zero_cat

from mgr.models.aggregation import TrackAggregation


class TrackMetrics(Metric):
    full_state_update = False

    def __init__(self, num_classes: int, aggregation: TrackAggregation = TrackAggregation()):
        super().__init__()
        self.num_classes = num_classes
        self.aggregation = aggregation  # the model sets it: its track_aggregation
        self.add_state("logits", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")
        self.add_state("tracks", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, targets: torch.Tensor, tracks: torch.Tensor) -> None:
        self.logits.append(logits.detach().float())
        self.targets.append(targets)
        self.tracks.append(tracks)

    def track_scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores [n_tracks, C] of every track seen, by the aggregation, and the label of each track."""
        logits, targets, tracks = (dim_zero_cat(s) for s in (self.logits, self.targets, self.tracks))
        ids, inverse = torch.unique(tracks, return_inverse=True)
        labels = torch.zeros(len(ids), dtype=targets.dtype, device=targets.device).scatter_(0, inverse, targets)
        return self.aggregation.scores(logits, inverse, len(ids)), labels

    def compute(self) -> dict[str, torch.Tensor]:
        scores, labels = self.track_scores()
        c = self.num_classes
        # The predictions behind the scores (gathered from every rank, tracks in the order of their ids):
        # the test report keeps them and draws its bootstrap intervals from them.
        tracks = dim_zero_cat(self.tracks)
        ids, chunk_tracks = torch.unique(tracks, return_inverse=True)
        return {
            "track_acc": multiclass_accuracy(scores, labels, c, average="micro"),
            "track_f1": multiclass_f1_score(scores, labels, c, average="macro"),
            "track_confusion": multiclass_confusion_matrix(scores, labels, c),
            "track_ids": ids, "track_scores": scores, "track_labels": labels,
            "chunk_predictions": dim_zero_cat(self.logits).argmax(1), "chunk_tracks": chunk_tracks,
        }
