"""Figures of a run: confusion matrices, learning curves, embedding maps, reliability diagrams,
risk-coverage curves and, for a multi-label model, each tag's ROC-AUC and PR-AUC and its
precision-recall curve, as PNG files.

Drawn with matplotlib's object API (`Figure`, no pyplot), so no display and no
global state are needed; matplotlib is imported only when a figure is drawn.
`PlotsCallback` writes the run's figures when testing ends.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pytorch_lightning as pl

log = logging.getLogger(__name__)

# The per-epoch values the learning curves show: (panel, metric key, line label).
CURVES = (
    ("loss", "train/loss", "train"),
    ("loss", "val/loss", "val"),
    ("accuracy", "train/acc", "train (chunk)"),
    ("accuracy", "val/acc", "val (chunk)"),
    ("accuracy", "val/track_acc", "val (track)"),
    # A multi-label run's (task=multilabel) in the same panel: its macro ROC-AUC.
    ("accuracy", "train/auc", "train (chunk ROC-AUC)"),
    ("accuracy", "val/auc", "val (chunk ROC-AUC)"),
    ("accuracy", "val/track_auc", "val (track ROC-AUC)"),
)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def save_confusion_matrix(matrix, class_names: Sequence[str], path: str | Path, title: str) -> Path:
    """Counts and row-normalised rates side by side; rows are true classes, columns predictions."""
    counts = np.asarray(matrix, dtype=float)
    n = len(class_names)
    rates = row_rates(counts)
    size = 2.5 + 0.45 * n
    fig = _figure(2 * size + 1.0, size + 0.6)
    fig.suptitle(title)
    for ax, values, name, fmt in zip(fig.subplots(1, 2), (counts, rates), ("counts", "row-normalised"), ("{:.0f}", "{:.2f}")):
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if values is rates else max(values.max(), 1))
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set(title=name, xlabel="predicted", ylabel="true", xticks=range(n), yticks=range(n))
        ax.set_xticklabels(class_names, rotation=45, ha="right")
        ax.set_yticklabels(class_names)
        if n <= 30:  # beyond that the numbers no longer fit their cells
            threshold = values.max() / 2 if values.max() > 0 else 1
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if values[i, j] > threshold else "black")
    return _save(fig, path)


def row_rates(counts) -> np.ndarray:
    """Each row divided by its sum: the share of a true class given each prediction (recall on the diagonal)."""
    counts = np.asarray(counts, dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)  # a class absent from the split: 0, not NaN


def save_learning_curves(history: list[dict[str, float]], path: str | Path, title: str = "Learning curves") -> Path:
    """Loss and accuracy per epoch, train and val; `history` holds one dict per epoch with an "epoch" key."""
    fig = _figure(10, 4)
    fig.suptitle(title)
    axes = dict(zip(("loss", "accuracy"), fig.subplots(1, 2)))
    for panel, key, label in CURVES:
        points = [(row["epoch"], row[key]) for row in history if key in row]
        if points:
            epochs, values = zip(*points)
            axes[panel].plot(epochs, values, marker="o", markersize=3, label=label)
    for panel, ax in axes.items():
        ax.set(xlabel="epoch", ylabel="accuracy or macro ROC-AUC" if panel == "accuracy" else panel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    return _save(fig, path)


def save_embedding_map(panels: dict[str, np.ndarray], labels: dict[str, np.ndarray], class_names: Sequence[str],
                       path: str | Path, title: str) -> Path:
    """Scatter plots of 2-D points (e.g. t-SNE), one panel per entry of `panels`, coloured by label."""
    from matplotlib import colormaps

    colours = colormaps["tab10" if len(class_names) <= 10 else "tab20"]
    fig = _figure(6 * len(panels) + 1.5, 5.5)
    fig.suptitle(title)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, points) in zip(axes, panels.items()):
        for c, class_name in enumerate(class_names):
            mine = points[labels[name] == c]
            ax.scatter(mine[:, 0], mine[:, 1], s=10 if len(points) > 200 else 25, color=colours(c % colours.N),
                       label=class_name, alpha=0.8, edgecolors="none")
        ax.set(title=name, xticks=[], yticks=[])
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=1.5, frameon=False)
    return _save(fig, path)


def save_feature_examples(maps: np.ndarray, titles: Sequence[str], per_row: int, path: str | Path, title: str) -> Path:
    """Feature maps [n, bins, frames] in a grid, `per_row` to a row, frequency (or lag) upwards."""
    rows = -(-len(maps) // per_row)
    fig = _figure(3.2 * per_row, 2.2 * rows + 0.4)
    fig.suptitle(title)
    axes = np.atleast_2d(fig.subplots(rows, per_row, squeeze=False))
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, name in zip(axes.flat, maps, titles):
        ax.imshow(image, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
        ax.set_title(name, fontsize=9)
    return _save(fig, path)


def save_reliability_diagram(levels: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str,
                             multilabel: bool = False) -> Path:
    """One panel per level (`levels`: name -> (top probability, correct) per prediction): the accuracy of
    each of mgr.statistics' equal-width confidence bins against its mean confidence, the diagonal being
    perfect calibration, and the bins' shares of the predictions below. `multilabel`: the forecasts are
    every (item, tag) probability and whether the tag is present (mgr.statistics.tag_forecasts), so a
    bin's height is the fraction of its forecasts whose tag is present."""
    from mgr import statistics

    bins = statistics.CALIBRATION_BINS
    fig = _figure(5 * len(levels), 5.5)
    fig.suptitle(title)
    axes = np.atleast_2d(fig.subplots(2, len(levels), squeeze=False, height_ratios=(3, 1), sharex=True))
    centres = (np.arange(bins) + 0.5) / bins
    outcome, probability = ("fraction present", "tag probability") if multilabel else ("accuracy", "top probability")
    for (name, (confidence, correct)), top, bottom in zip(levels.items(), axes[0], axes[1]):
        totals, accuracy, mean_confidence = statistics.reliability_bins(confidence, correct, bins)
        ece = statistics.expected_calibration_error(confidence, correct, bins)
        used = totals > 0
        forecasts = f"({name}, tag) pairs" if multilabel else f"{name}s"
        top.bar(centres[used], accuracy[used], width=1 / bins, edgecolor="black", alpha=0.7, label=outcome)
        top.plot(mean_confidence[used], accuracy[used], "o", color="C1", markersize=4, label="at mean probability")
        top.plot([0, 1], [0, 1], "--", color="grey", label="calibrated")
        top.set(title=f"{name} level: ECE {ece:.3f} ({len(confidence)} {forecasts})", ylabel=outcome, xlim=(0, 1),
                ylim=(0, 1))
        top.legend(loc="upper left")
        bottom.bar(centres, totals / max(totals.sum(), 1), width=1 / bins, color="grey")
        bottom.set(xlabel=probability, ylabel="share")
    return _save(fig, path)


# The scores of the answered a risk-coverage curve draws (mgr.test_report.risk_coverage_forecasts), as named on it.
SCORE_LABELS = {"accuracy": "accuracy", "top_tag_precision": "precision of the top answered tag",
                "sample_f1": "sample-wise F1"}


def save_risk_coverage(confidence, scores: dict[str, np.ndarray], path: str | Path, title: str) -> Path:
    """Each of `scores` (name -> each prediction's score: 1/0 for right/wrong, or an F1) averaged over the
    answered predictions against the share answered, answering the most confident first
    (mgr.statistics.risk_coverage), with the min_confidence that answers each share on a second axis. A
    prediction of confidence nan is never answered: a dotted line marks the share ever answered below 1."""
    from mgr import statistics

    fig = _figure(6, 4.5)
    fig.suptitle(title)
    ax = fig.subplots()
    for colour, (name, values) in zip(("C0", "C2", "C3"), scores.items()):
        coverage, mean, threshold = statistics.risk_coverage(confidence, values)
        ax.plot(coverage, mean, color=colour, label=f"{SCORE_LABELS.get(name, name)} of the answered")
    if len(coverage) and coverage[-1] < 1:
        ax.axvline(coverage[-1], color="grey", linestyle=":", label="never answered beyond")
    ylabel = SCORE_LABELS.get(name, name) if len(scores) == 1 else "mean over the answered"
    ax.set(xlabel="coverage (share answered)", ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    other = ax.twinx()  # the coverages and thresholds are the same for every score
    other.plot(coverage, threshold, color="C1", linestyle="--", label="min_confidence")
    other.set(ylabel="min_confidence (lowest confidence answered)", ylim=(0, 1.02))
    fig.legend(loc="lower left", bbox_to_anchor=(0.12, 0.12))
    return _save(fig, path)


# Up to this many tags, each precision-recall curve has its own colour and legend entry.
NAMED_CURVES = 10


def save_tag_scores(names: Sequence[str], labels, scores, path: str | Path, title: str) -> Path:
    """Each tag's ROC-AUC and PR-AUC (average precision; scikit-learn's) over the items (`labels`, `scores`
    [items, tags]) as horizontal bars, the tags sorted by ROC-AUC; a tag without a positive or a negative has
    no ROC-AUC and is listed at the bottom, unscored. The dashed line is what ranking by chance gives
    (ROC-AUC 0.5)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels, scores = np.asarray(labels) > 0, np.asarray(scores, dtype=float)
    scored = labels.any(0) & ~labels.all(0)
    auc, ap = (np.array([metric(labels[:, k], scores[:, k]) if scored[k] else np.nan for k in range(len(names))])
               for metric in (roc_auc_score, average_precision_score))
    order = np.argsort(np.where(scored, auc, -np.inf), kind="stable")  # worst at the bottom, unscored below it
    fig = _figure(7, max(3.0, 0.28 * len(names) + 1.2))
    fig.suptitle(title)
    ax = fig.subplots()
    rows = np.arange(len(names))
    ax.barh(rows + 0.2, np.nan_to_num(auc[order]), height=0.4, color="C0", label="ROC-AUC")
    ax.barh(rows - 0.2, np.nan_to_num(ap[order]), height=0.4, color="C1", label="PR-AUC (average precision)")
    ax.set_yticks(rows, [names[k] + ("" if scored[k] else " (unscored)") for k in order], fontsize=8)
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set(xlim=(0, 1), xlabel="score over the test items")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)  # clear of the bars
    return _save(fig, path)


def save_precision_recall(names: Sequence[str], labels, scores, path: str | Path, title: str) -> Path:
    """Each tag's precision-recall curve over the items (`labels`, `scores` [items, tags]; tags with a
    positive only), in colour with its average precision up to NAMED_CURVES tags, else thin and grey; and in
    black the micro-average's (every (item, tag) pair one prediction)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    labels, scores = np.asarray(labels) > 0, np.asarray(scores, dtype=float)
    fig = _figure(6, 5)
    fig.suptitle(title)
    ax = fig.subplots()
    with_positives = [k for k in range(len(names)) if labels[:, k].any()]
    named = len(with_positives) <= NAMED_CURVES
    for k in with_positives:
        precision, recall, _ = precision_recall_curve(labels[:, k], scores[:, k])
        style = ({"label": f"{names[k]} (AP {average_precision_score(labels[:, k], scores[:, k]):.2f})"} if named
                 else {"color": "grey", "alpha": 0.4, "linewidth": 0.7})
        ax.plot(recall, precision, drawstyle="steps-post", **style)
    if labels.any():
        precision, recall, _ = precision_recall_curve(labels.ravel(), scores.ravel())
        micro = average_precision_score(labels.ravel(), scores.ravel())
        ax.plot(recall, precision, color="black", linewidth=2, drawstyle="steps-post",
                label=f"micro-average (AP {micro:.2f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=7 if named else 8)
    return _save(fig, path)


class PlotsCallback(pl.Callback):
    """Keeps the train/val metrics of every epoch and, when testing ends, draws the chunk and track
    confusion matrices and the learning curves into `dirpath` (global rank 0 only)."""

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)
        self.history: dict[int, dict[str, float]] = {}

    def _record(self, trainer: pl.Trainer, prefix: str) -> None:
        row = self.history.setdefault(trainer.current_epoch, {"epoch": trainer.current_epoch})
        for key, value in trainer.callback_metrics.items():
            if key.startswith(prefix):
                row[key] = float(value)

    def on_validation_end(self, trainer, pl_module):
        # Not in on_validation_epoch_end: callbacks run before the module logs its epoch metrics there.
        if not trainer.sanity_checking:
            self._record(trainer, "val/")

    def on_train_epoch_end(self, trainer, pl_module):
        self._record(trainer, "train/")

    def on_test_end(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return
        names = pl_module.class_names
        written = []
        for level in ("chunk", "track"):
            matrix = pl_module.test_results.get(f"{level}_confusion")
            if matrix is not None:
                title = f"Test confusion matrix, {level} level ({int(np.sum(matrix))} {level}s)"
                written.append(save_confusion_matrix(matrix, names, self.dirpath / f"confusion_{level}.png", title))
        written += self._calibration_plots(pl_module)
        written += self._tag_plots(pl_module)
        history = [self.history[e] for e in sorted(self.history)]
        if any(len(row) > 1 for row in history):
            written.append(save_learning_curves(history, self.dirpath / "learning_curves.png"))
        log.info("Plots: %s", ", ".join(str(p) for p in written))

    def _calibration_plots(self, pl_module) -> list[Path]:
        """The reliability diagram (chunk and track level, of the calibrated probabilities) and the tracks'
        risk-coverage curve (mgr.test_report.risk_coverage_forecasts: metrics.json's `risk_coverage`)."""
        from mgr.test_report import calibration_forecasts, risk_coverage_forecasts

        tested = pl_module.test_results
        if "chunk_logits" not in tested or not len(tested.get("track_labels", [])):
            return []
        levels = calibration_forecasts(tested, pl_module)
        title = "Reliability diagram (test" + (", every tag's probability)" if pl_module.multilabel else ")")
        written = [save_reliability_diagram(levels, self.dirpath / "reliability.png", title, pl_module.multilabel)]
        written.append(save_risk_coverage(*risk_coverage_forecasts(tested, pl_module),
                                          self.dirpath / "risk_coverage.png", "Risk-coverage of the test tracks"))
        return written

    def _tag_plots(self, pl_module) -> list[Path]:
        """A multi-label model's per-tag ROC-AUC and PR-AUC bars and precision-recall curves of the test
        tracks, from their probabilities as test_predictions.csv lists them."""
        from mgr.test_report import track_probabilities

        tested = pl_module.test_results
        if not pl_module.multilabel or not len(tested.get("track_labels", [])):
            return []
        probabilities = track_probabilities(tested, pl_module.track_aggregation)
        labels, names, n = tested["track_labels"], pl_module.class_names, len(tested["track_labels"])
        return [save_tag_scores(names, labels, probabilities, self.dirpath / "tag_scores.png",
                                f"Per-tag scores of the {n} test tracks"),
                save_precision_recall(names, labels, probabilities, self.dirpath / "precision_recall.png",
                                      f"Precision-recall of the {n} test tracks")]

    # Saved in checkpoints, so a resumed run draws its curves from the first epoch.
    def state_dict(self) -> dict:
        return {"history": [self.history[e] for e in sorted(self.history)]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = {int(row["epoch"]): dict(row) for row in state_dict.get("history", [])}
