"""The metrics of both tasks: the chunk metrics (`chunk_metrics`) and the track metrics (`TrackMetrics`:
each track's chunks combined by the model's `TrackAggregation`, mgr.models.aggregation, then scored).

- multiclass (one label per track): accuracy and macro-F1, and the confusion matrix of the tracks.
- multilabel (any number of labels per track, targets [N, classes] of 0/1): ROC-AUC and average
  precision (PR-AUC), macro (the mean over the classes with a positive and a negative, chunk and track
  level alike: `scored_mean`) and micro (all decisions pooled), by torchmetrics; at the test, also F1
  (macro and micro) at per-class thresholds, those `f1_thresholds` chose on the validation tracks.

TrackMetrics is a torchmetrics Metric, so under DDP the per-chunk states are gathered from all
ranks before the chunks of a track are combined.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (MulticlassAccuracy, MulticlassF1Score, MultilabelAUROC,
                                         MultilabelAveragePrecision)
from torchmetrics.functional.classification import (multiclass_accuracy, multiclass_confusion_matrix,
                                                    multiclass_f1_score, multilabel_auroc,
                                                    multilabel_average_precision, multilabel_f1_score)
from torchmetrics.utilities import dim_zero_cat

from mgr.models.aggregation import TrackAggregation

# Training's multilabel chunk metrics are binned at this many thresholds: constant memory over an epoch of
# any size (validation's and the test's are exact, over every chunk).
TRAINING_BINS = 200


def scored_mean(per_class: torch.Tensor, positives: torch.Tensor, items: torch.Tensor | int) -> torch.Tensor:
    """The macro mean of a multilabel ranking metric (`per_class`, torchmetrics' average="none") over the
    classes that have both a positive and a negative among the `items` (`positives`: each class's count):
    another class has no ROC-AUC, and torchmetrics would count it as 0 (scikit-learn refuses it; mgr.report's
    pooled means leave it out as this does). nan where no class has both."""
    per_class = per_class.reshape(-1)  # torchmetrics squeezes a one-class result
    scored = (positives > 0) & (positives < items)
    return per_class[scored].mean() if scored.any() else per_class.new_tensor(float("nan"))


def scored_macro(function, probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`scored_mean` of a functional multilabel ranking metric (torchmetrics') on `probabilities` [N, C]
    against the 0/1 `labels` [N, C]."""
    return scored_mean(function(probabilities, labels, labels.shape[1], average="none"), labels.sum(0), len(labels))


class ScoredMacro:
    """A torchmetrics multilabel ranking metric (the class it is mixed into) whose macro mean is its
    `scored_mean`: it counts each class's positives and the items in states summed over DDP ranks beside
    the metric's own, gathered as they are, so every rank leaves out the same classes."""

    def __init__(self, num_labels: int, average: str = "macro", thresholds: int | None = None):
        if average != "macro":
            raise ValueError(f"{type(self).__name__} is a macro mean, not average={average!r}")
        super().__init__(num_labels, average="none", thresholds=thresholds)  # per class: scored_mean averages
        self.add_state("positives", default=torch.zeros(num_labels, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("items", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(preds, target)
        self.positives += (target > 0).sum(0)
        self.items += len(target)

    def compute(self) -> torch.Tensor:
        return scored_mean(super().compute(), self.positives, self.items)


class ScoredMacroAUROC(ScoredMacro, MultilabelAUROC):
    """The macro ROC-AUC over the classes with a positive and a negative (ScoredMacro)."""


class ScoredMacroAveragePrecision(ScoredMacro, MultilabelAveragePrecision):
    """The macro average precision (PR-AUC) over the classes with a positive and a negative (ScoredMacro)."""


# The multilabel ranking metrics, by name: (the metric's class, its functional form, its `average`): a macro
# mean over the classes with a positive and a negative, chunks (ScoredMacro) and tracks (scored_macro) alike.
RANKING = {"auc": (ScoredMacroAUROC, multilabel_auroc, "macro"),
           "auc_micro": (MultilabelAUROC, multilabel_auroc, "micro"),
           "ap": (ScoredMacroAveragePrecision, multilabel_average_precision, "macro"),
           "ap_micro": (MultilabelAveragePrecision, multilabel_average_precision, "micro")}


def chunk_metrics(num_classes: int, multilabel: bool, bins: int | None = None) -> MetricCollection:
    """The chunk metrics of a task (updated with logits and targets: class indices, or 0/1 rows as integers);
    a multi-label model's ranking metrics binned at `bins` thresholds (None: exact)."""
    if not multilabel:
        return MetricCollection({"acc": MulticlassAccuracy(num_classes, average="micro"),
                                 "f1": MulticlassF1Score(num_classes, average="macro")})
    return MetricCollection({name: cls(num_classes, average=average, thresholds=bins)
                             for name, (cls, _, average) in RANKING.items()})


def f1_thresholds(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per class, the threshold on `probabilities` [N, C] that maximises the class's F1 against the 0/1
    `labels` [N, C] (a probability at or above it is a yes): half-way between the lowest probability
    answered yes and the next lower one, so nothing depends on how a tie at the threshold is read. A
    class with no positive among the N keeps 0.5 (any threshold scores F1 0 there)."""
    probabilities, labels = probabilities.double().cpu(), labels.cpu() > 0
    thresholds = torch.full((probabilities.shape[1],), 0.5, dtype=torch.float64)
    for c in range(probabilities.shape[1]):
        if labels[:, c].any():
            thresholds[c] = best_f1_threshold(probabilities[:, c], labels[:, c])
    return thresholds.float()


def best_f1_threshold(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """The threshold of `f1_thresholds` for one class (some of `positive` true)."""
    order = torch.argsort(scores, descending=True)
    scores, positive = scores[order], positive[order]
    cut = torch.cat([scores[1:] < scores[:-1], torch.tensor([True])])  # answering yes down to here splits no tie
    yes = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    f1 = 2 * torch.cumsum(positive.double(), 0) / (yes + positive.sum())  # 2TP / (2TP + FP + FN)
    k = int(torch.argmax(torch.where(cut, f1, torch.tensor(-1.0, dtype=torch.float64))))  # the first best
    below = scores[k + 1] if k + 1 < len(scores) else torch.tensor(0.0, dtype=torch.float64)
    return float((scores[k] + below) / 2)


class TrackMetrics(Metric):
    full_state_update = False

    def __init__(self, num_classes: int, aggregation: TrackAggregation = TrackAggregation(), multilabel: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.multilabel = multilabel
        self.aggregation = aggregation  # the model sets it: its track_aggregation
        self.thresholds: torch.Tensor | None = None  # multilabel: the model sets it for the test (its thresholds)
        self.add_state("logits", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")
        self.add_state("tracks", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, targets: torch.Tensor, tracks: torch.Tensor) -> None:
        self.logits.append(logits.detach().float())
        self.targets.append(targets)
        self.tracks.append(tracks)

    @property
    def names(self) -> tuple[str, ...]:
        """The metrics `compute` gives besides the predictions (the task logs them as <stage>/<name>)."""
        if not self.multilabel:
            return "track_acc", "track_f1"
        f1 = ("track_f1", "track_f1_micro") if self.thresholds is not None else ()
        return (*(f"track_{name}" for name in RANKING), *f1)

    def track_scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores [n_tracks, C] of every track seen, by the aggregation, and the label of each track
        (its class, or its row of 0/1)."""
        logits, targets, tracks = (dim_zero_cat(s) for s in (self.logits, self.targets, self.tracks))
        ids, inverse = torch.unique(tracks, return_inverse=True)
        labels = targets.new_zeros((len(ids), *targets.shape[1:]))
        labels[inverse] = targets  # every chunk of a track carries the track's label
        return self.aggregation.scores(logits, inverse, len(ids)), labels

    def compute(self) -> dict[str, torch.Tensor]:
        scores, labels = self.track_scores()
        # The predictions behind the scores (gathered from every rank, tracks in the order of their ids):
        # the test report keeps them and draws its bootstrap intervals from them.
        tracks = dim_zero_cat(self.tracks)
        ids, chunk_tracks = torch.unique(tracks, return_inverse=True)
        logits = dim_zero_cat(self.logits)
        metrics = self.multilabel_scores(scores, labels) if self.multilabel else self.multiclass_scores(scores, labels)
        return {**metrics, "track_ids": ids, "track_scores": scores, "track_labels": labels,
                "chunk_predictions": logits if self.multilabel else logits.argmax(1), "chunk_tracks": chunk_tracks}

    def multiclass_scores(self, scores: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.num_classes
        return {"track_acc": multiclass_accuracy(scores, labels, c, average="micro"),
                "track_f1": multiclass_f1_score(scores, labels, c, average="macro"),
                "track_confusion": multiclass_confusion_matrix(scores, labels, c)}

    def multilabel_scores(self, scores: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        c, probabilities, labels = self.num_classes, self.aggregation.probabilities_of(scores), labels.long()
        out = {f"track_{name}": scored_macro(function, probabilities, labels) if average == "macro"
               else function(probabilities, labels, c, average=average)
               for name, (_, function, average) in RANKING.items()}
        if self.thresholds is not None:
            answered = (probabilities >= self.thresholds.to(probabilities.device)).float()
            out["track_f1"] = multilabel_f1_score(answered, labels, c, average="macro")
            out["track_f1_micro"] = multilabel_f1_score(answered, labels, c, average="micro")
        return out

