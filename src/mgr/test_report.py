"""The test report of mgr.train and mgr.eval: score the confusion matrices per class, draw bootstrap
intervals, write test_predictions.csv and metrics.json, hand the results to the callbacks that take
them (W&B's), and print the chunk/track table.

Every report holds the expected calibration errors of the test chunks and tracks, of the probabilities
as calibrated (test/ece, test/track_ece) and as trained, at T = 1 (test/ece_uncalibrated,
test/track_ece_uncalibrated), and the risk-coverage curve of the test tracks: the share each
`mgr.predict min_confidence=...` would answer, and how well (`calibration_report`, `risk_coverage_forecasts`). A
multi-label model's report (task=multilabel) holds its ROC-AUC and PR-AUC (macro and micro) and its F1 at
the per-class thresholds, per class too, and its test_predictions.csv a probability per class with the
labels and the answers `;`-separated; it has no confusion matrices, and bootstrap intervals of its track
macro ROC-AUC and PR-AUC only. Its calibration errors are those of every (item, tag) probability as a
forecast of the tag (mgr.statistics.tag_forecasts); its risk-coverage curve answers a track by the
probability of its most probable tag at or above its threshold (a track with none is never answered: the
coverage then ends below 1) and scores the answered by whether that tag is right (the precision of the
first answer) and, beside it, by the mean sample-wise F1 of their answers. A
model with a tree over its classes (`class_parents`: FMA's genres_all) is also scored per level of the
tree, on its answers rolled up (`level_results`); its other metrics and predictions are its own.

The report is written where the test predictions are: by the `TestReport` callback on global rank 0
at the end of the test (under ddp_spawn, in the spawned rank 0, which holds every rank's predictions,
gathered by the task). The process that called `test_and_report` then reads metrics.json back and
prints the table, so that it ends the output."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from pytorch_lightning import Callback

from mgr import statistics

# The printed table: row name, chunk metric, track metric.
TABLE_ROWS = (("accuracy", "test/acc", "test/track_acc"), ("macro-F1", "test/f1", "test/track_f1"))
# ... of a multi-label model (F1 at the per-class thresholds chosen on the validation tracks: tracks only).
MULTILABEL_TABLE_ROWS = (("ROC-AUC macro", "test/auc", "test/track_auc"),
                         ("ROC-AUC micro", "test/auc_micro", "test/track_auc_micro"),
                         ("PR-AUC macro", "test/ap", "test/track_ap"), ("PR-AUC micro", "test/ap_micro", "test/track_ap_micro"),
                         ("F1 macro", None, "test/track_f1"), ("F1 micro", None, "test/track_f1_micro"))
# Bootstrap intervals of every run: `+bootstrap.resamples=` / `+bootstrap.seed=` change them.
BOOTSTRAP = {"resamples": 1000, "seed": 0}
# What identifies a run among the runs of one configuration: mgr.report's axes, in every row of
# test_predictions.csv so files of several runs can be concatenated and still say where a row came from.
RUN_AXES = ("seed", "split_seed", "fold", "folds")
PREDICTION_COLUMNS = ("path", "label", "prediction", "chunks")  # then score_<class>, then RUN_AXES
MULTILABEL_PREDICTION_COLUMNS = ("path", "labels", "predictions", "chunks")  # labels and answers ;-separated
# The task's test predictions (GenreClassifier.test_results, every rank's): per track, then per chunk.
PREDICTION_KEYS = ("track_ids", "track_scores", "track_labels", "chunk_predictions", "chunk_tracks")
METRICS = "metrics.json"


def per_class_scores(confusion: list[list[int]], class_names: list[str]) -> list[dict]:
    """Precision, recall, F1 and support of each class from a confusion matrix (rows: true class)."""
    m = np.asarray(confusion, dtype=float)
    tp, predicted, actual = np.diag(m), m.sum(axis=0), m.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    return [dict(label=name, precision=float(p), recall=float(r), f1=float(f), support=int(s))
            for name, p, r, f, s in zip(class_names, precision, recall, f1, actual)]


def test_and_report(cfg: DictConfig, trainer, model, datamodule, title: str, provenance: dict,
                    ckpt_path: str | None = None, columns: dict | None = None) -> dict[str, float]:
    """Test (on `ckpt_path`'s weights if given, else the model's) with a TestReport beside the trainer's
    callbacks (`provenance`: which checkpoints; `columns`: more columns of the same value in every row
    of test_predictions.csv, after the run's axes), then print the table. Returns the test metrics."""
    run_dir = Path(cfg.paths.output_dir)
    report = TestReport(run_dir, provenance, {**run_axes(cfg), **(columns or {})},
                        {**BOOTSTRAP, **(cfg.get("bootstrap") or {})})
    (run_dir / METRICS).unlink(missing_ok=True)  # a test that writes no report must not pass for one
    trainer.callbacks.append(report)
    try:
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path)
    finally:
        trainer.callbacks.remove(report)
    results = json.loads((run_dir / METRICS).read_text())
    metrics = {k: v for k, v in results.items() if k.startswith("test/")}
    print_results(metrics, results.get("intervals"), str(run_dir), title)
    return metrics


class TestReport(Callback):
    """Writes metrics.json (the test metrics, `provenance`, class names, the track aggregation, confusion
    matrices, per-class scores, under "head" the head's `report` where it has one: what it chose; an
    ensemble's, one per member; the bootstrap intervals) and test_predictions.csv, on global rank 0 when
    the test ends, then hands the results to the callbacks that take them (a `report_test` method:
    mgr.wandb_logging's). Plain values only: ddp_spawn sends it to the ranks."""

    def __init__(self, run_dir: Path, provenance: dict, columns: dict, bootstrap: dict):
        self.run_dir, self.provenance, self.columns, self.bootstrap = Path(run_dir), provenance, columns, bootstrap

    def on_test_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        tested = pl_module.test_results
        predictions = {k: np.asarray(tested[k]) for k in PREDICTION_KEYS}
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        names = pl_module.class_names
        results = {**self.provenance, "class_names": names, **pl_module.track_aggregation.as_dict()}
        answered = None
        if pl_module.multilabel:
            predictions["track_scores"], answered = track_answers(predictions["track_scores"], pl_module)
            results.update(multilabel_results(predictions, answered, names, pl_module.thresholds))
            results["intervals"] = multilabel_intervals(predictions, self.bootstrap)
            if pl_module.class_parents:  # FMA's genres_all: the tree over the classes
                results["levels"] = level_results(predictions, answered, names, pl_module.class_parents, metrics)
            results.update(calibration_report(tested, pl_module, metrics))
        else:
            results.update(self._multiclass_results(tested, predictions, names, pl_module, metrics))
        if reports := head_reports(pl_module):
            results["head"] = reports
        datamodule = trainer.datamodule
        test_files = [datamodule.tracks.files[i] for i in datamodule.split_tracks["test"]]
        write_predictions(self.run_dir / "test_predictions.csv", predictions, test_files, datamodule.hparams.root,
                          names, self.columns, answered)
        (self.run_dir / METRICS).write_text(json.dumps({**metrics, **results}, indent=2))
        for callback in trainer.callbacks:
            if hasattr(callback, "report_test"):
                callback.report_test(trainer, results, self.run_dir)

    def _multiclass_results(self, tested: dict, predictions: dict, names: list[str], model, metrics: dict) -> dict:
        """The confusion matrices, per-class scores, bootstrap intervals and calibration of a multi-class
        model (its calibration errors added to `metrics`)."""
        results = {"chunk_confusion": tested["chunk_confusion"], "track_confusion": tested["track_confusion"]}
        results["track_per_class"] = per_class_scores(results["track_confusion"], names)
        results["intervals"] = bootstrap_intervals(predictions, len(names), self.bootstrap)
        return {**results, **calibration_report(tested, model, metrics)}


def track_probabilities(predictions: dict, aggregation) -> np.ndarray:
    """The test tracks' scores (`predictions["track_scores"]`) as probabilities, by the model's TrackAggregation."""
    import torch

    return aggregation.probabilities_of(torch.as_tensor(predictions["track_scores"], dtype=torch.float64)).numpy()


def track_answers(track_scores, model) -> tuple[np.ndarray, np.ndarray]:
    """A multi-label model's test tracks' probabilities (`track_scores` by its TrackAggregation) and its
    answers at its per-class thresholds (model.answered, not rolled up a class tree): what
    test_predictions.csv lists and the F1 scores count."""
    import torch

    probabilities = track_probabilities({"track_scores": track_scores}, model.track_aggregation)
    return probabilities, model.answered(torch.as_tensor(probabilities)).numpy()


def multilabel_results(predictions: dict, answered: np.ndarray, names: list[str], thresholds: list[float] | None) -> dict:
    """A multi-label model's thresholds and, per class (`track_per_class`), its test tracks' ROC-AUC and
    PR-AUC, and the precision, recall and F1 of its answers at its threshold, with its support."""
    import torch
    from torchmetrics.functional.classification import multilabel_auroc, multilabel_average_precision

    probabilities = torch.as_tensor(predictions["track_scores"])
    labels = torch.as_tensor(predictions["track_labels"]).round().long()
    c = len(names)
    auc, ap = (np.atleast_1d(f(probabilities, labels, c, average="none").numpy())
               for f in (multilabel_auroc, multilabel_average_precision))
    truth = labels.numpy() > 0
    tp, answered_yes, actual = (answered & truth).sum(0), answered.sum(0), truth.sum(0)
    precision = np.divide(tp, answered_yes, out=np.zeros(c), where=answered_yes > 0)
    recall = np.divide(tp, actual, out=np.zeros(c), where=actual > 0)
    f1 = np.divide(2 * tp, answered_yes + actual, out=np.zeros(c), where=answered_yes + actual > 0)
    thresholds = list(thresholds) if thresholds is not None else None
    per_class = [dict(label=name, roc_auc=float(auc[k]), pr_auc=float(ap[k]), precision=float(precision[k]),
                      recall=float(recall[k]), f1=float(f1[k]), support=int(actual[k]),
                      threshold=None if thresholds is None else thresholds[k]) for k, name in enumerate(names)]
    return {"task": "multilabel", "thresholds": thresholds, "track_per_class": per_class}


def level_results(predictions: dict, answered: np.ndarray, names: list[str], class_parents: dict,
                  metrics: dict) -> list[dict]:
    """The test tracks scored per level of the class tree (mgr.data.genre_tree.ClassHierarchy: top-level
    classes 1, their children 2, ...), on the probabilities and answers rolled up the tree: per level, the
    macro ROC-AUC, PR-AUC and F1 over its classes that have a positive and a negative test track (as
    mgr.report's macro means: another class has no ROC-AUC), added to `metrics` as test/level<n>/track_auc,
    track_ap and track_f1. Returns per level its classes and those left out."""
    import torch

    from mgr.data.genre_tree import ClassHierarchy
    from mgr.sweep_tags import scored_tags

    hierarchy = ClassHierarchy(names, class_parents)
    probabilities, rolled = hierarchy.roll_up(torch.as_tensor(predictions["track_scores"]), torch.as_tensor(answered))
    per_class = multilabel_results({**predictions, "track_scores": probabilities.numpy()}, rolled.numpy(), names,
                                   None)["track_per_class"]
    scored = scored_tags(np.asarray(predictions["track_labels"]) > 0)
    levels = np.asarray(hierarchy.levels)
    out = []
    for level in range(1, levels.max() + 1):
        classes = np.flatnonzero(levels == level)
        kept = [k for k in classes if scored[k]]
        for key, name in (("roc_auc", "track_auc"), ("pr_auc", "track_ap"), ("f1", "track_f1")):
            values = [per_class[k][key] for k in kept]
            metrics[f"test/level{level}/{name}"] = float(np.mean(values)) if values else float("nan")
        out.append({"level": level, "classes": [names[k] for k in classes],
                    "left_out": [names[k] for k in classes if not scored[k]]})
    return out


def calibration_report(tested: dict, model, metrics: dict) -> dict:
    """The expected calibration errors (15 equal-width bins, mgr.statistics) of the test chunks and tracks,
    added to `metrics`: test/ece and test/track_ece of the probabilities as calibrated, test/ece_uncalibrated
    and test/track_ece_uncalibrated of them as trained (T = 1). Returns the temperatures the probabilities
    were computed at (a multi-label model's: one per tag; an ensemble's: its members') and the track-level
    risk-coverage curve (`risk_coverage`, mgr.statistics.risk_coverage_table of `risk_coverage_forecasts`:
    the coverage, the min_confidence that answers it, and the scores of the answered: a multi-class model's
    accuracy, a multi-label model's top_tag_precision and sample_f1), from the task's test results."""
    from mgr.models.calibration import temperatures

    for suffix, as_trained in (("", False), ("_uncalibrated", True)):
        levels = calibration_forecasts(tested, model, as_trained)
        metrics.update({f"test/{prefix}ece{suffix}": statistics.expected_calibration_error(*levels[level])
                        for level, prefix in (("chunk", ""), ("track", "track_"))})
    binning = "equal-width bins of every (item, tag) probability" if model.multilabel else "equal-width top-probability bins"
    report = {"calibration": {"bins": statistics.CALIBRATION_BINS, "binning": binning, "temperature": temperatures(model)}}
    report["risk_coverage"] = statistics.risk_coverage_table(*risk_coverage_forecasts(tested, model))
    return report


def risk_coverage_forecasts(tested: dict, model) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """What the test tracks' risk-coverage curve is drawn from, as `mgr.predict min_confidence=...` decides
    (on the calibrated probabilities): per track the confidence min_confidence is compared with, and the
    scores of its answer (the curve is the first's). Multi-class: its top probability, and whether its
    argmax is right (accuracy). Multi-label: the probability of its most probable answered tag (nan where
    it has none: never answered), whether that tag is one of its labels (top_tag_precision) and the F1 of
    its answers (sample_f1), its answers at the thresholds rolled up the class tree where the model has
    one, as mgr.predict answers (mgr.data.genre_tree.rolled_answers, mgr.statistics.tag_answers)."""
    if not model.multilabel:
        confidence, correct = calibration_forecasts(tested, model)["track"]
        return confidence, {"accuracy": correct}
    import torch

    from mgr.data.genre_tree import rolled_answers

    probabilities = track_probabilities({"track_scores": tested["track_scores"]}, model.track_aggregation)
    probabilities, answered = (t.numpy() for t in rolled_answers(model, torch.as_tensor(probabilities)))
    confidence, top_tag_right, f1 = statistics.tag_answers(probabilities, answered, tested["track_labels"])
    return confidence, {"top_tag_precision": top_tag_right, "sample_f1": f1}


def calibration_forecasts(tested: dict, model, as_trained: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The test's forecasts whose calibration is measured, per level ("chunk", "track"): (each forecast's
    probability, whether what it forecast came true), of the probabilities as calibrated or, `as_trained`,
    at T = 1. Multi-class: each prediction's top probability and whether it was right; multi-label: every
    (item, tag) probability and whether the item has the tag (mgr.statistics.tag_forecasts)."""
    suffix = "_as_trained" if as_trained else ""
    labels = np.asarray(tested["track_labels"])
    chunk_labels = labels[np.asarray(tested["chunk_rows"], dtype=int)]
    chunk = chunk_probabilities(tested[f"chunk_logits{suffix}"], model.multilabel)
    track = track_probabilities({"track_scores": tested[f"track_scores{suffix}"]}, model.track_aggregation)
    return {"chunk": forecasts(chunk, chunk_labels, model.multilabel), "track": forecasts(track, labels, model.multilabel)}


def chunk_probabilities(logits, multilabel: bool) -> np.ndarray:
    """Chunk logits [chunks, classes] as probabilities: one sigmoid per tag (multi-label), else a softmax."""
    import torch

    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    return (torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)).numpy()


def forecasts(probabilities: np.ndarray, labels: np.ndarray, multilabel: bool) -> tuple[np.ndarray, np.ndarray]:
    """A multi-class model's top probabilities and whether each argmax is the label, or a multi-label
    model's (item, tag) probabilities and whether each tag is present (labels: rows of 0/1)."""
    if multilabel:
        return statistics.tag_forecasts(probabilities, labels)
    return probabilities.max(axis=1), probabilities.argmax(axis=1) == labels


def head_reports(model):
    """What a head chose, and from what (the `select` probe's report); for an ensemble (mgr.models.ensemble)
    the list of its members' (None for a member whose head chose nothing); None when no head reports."""
    members = getattr(model, "members", None)
    reports = [getattr(m.head, "report", None) for m in (members if members is not None else [model])]
    if not any(reports):
        return None
    return reports if members is not None else reports[0]


def run_axes(cfg: DictConfig) -> dict:
    """The seed, split seed and fold of a run (None where the run has no folds)."""
    data = cfg.get("data") or {}
    return {"seed": cfg.get("seed"), "split_seed": data.get("split_seed"), "fold": data.get("fold"),
            "folds": data.get("folds")}


def bootstrap_intervals(predictions: dict[str, np.ndarray], num_classes: int, bootstrap: dict) -> dict:
    """95 % percentile bootstrap intervals of chunk and track accuracy and macro-F1. Tracks are
    drawn with replacement; chunk metrics draw each track with all its chunks (a cluster
    bootstrap: a track's chunks are not independent), from the same resamples."""
    p = predictions
    n = len(p["track_labels"])
    tracks = statistics.unit_confusions(p["track_labels"], p["track_scores"].argmax(1), np.arange(n), num_classes)
    chunks = statistics.unit_confusions(p["track_labels"][p["chunk_tracks"]], p["chunk_predictions"], p["chunk_tracks"],
                                   num_classes)
    resamples, seed = int(bootstrap["resamples"]), int(bootstrap["seed"])
    track, chunk = (statistics.bootstrap_scores(c, resamples, seed) for c in (tracks, chunks))
    return {"test/acc": chunk["accuracy"], "test/f1": chunk["macro_f1"],
            "test/track_acc": track["accuracy"], "test/track_f1": track["macro_f1"],
            "level": statistics.LEVEL, "resamples": resamples, "seed": seed,
            "method": "percentile bootstrap over test tracks; chunk metrics draw each track with all its chunks"}


def multilabel_intervals(predictions: dict[str, np.ndarray], bootstrap: dict) -> dict:
    """95 % percentile bootstrap intervals of a multi-label model's track macro ROC-AUC and PR-AUC: tracks
    drawn with replacement (statistics.over_tracks); in each resample the macro means cover the classes
    with a positive and a negative track drawn (mgr.models.metrics.scored_macro), as the test's own do."""
    import torch
    from torchmetrics.functional.classification import multilabel_auroc, multilabel_average_precision

    from mgr.models.metrics import scored_macro

    probabilities = torch.as_tensor(predictions["track_scores"], dtype=torch.float32)
    labels = torch.as_tensor(predictions["track_labels"]).round().long()

    def macro(parts, rows) -> np.ndarray:
        chosen = torch.as_tensor(rows[0])
        return np.array([float(scored_macro(f, probabilities[chosen], labels[chosen]))
                         for f in (multilabel_auroc, multilabel_average_precision)])

    _, drawn = statistics.over_tracks([{"tracks": np.arange(len(labels))}], macro, bootstrap)
    return {"test/track_auc": statistics.percentile_interval(drawn[:, 0]),
            "test/track_ap": statistics.percentile_interval(drawn[:, 1]),
            "level": statistics.LEVEL, "resamples": int(bootstrap["resamples"]), "seed": int(bootstrap["seed"]),
            "method": "percentile bootstrap over test tracks; the macro means over the classes each resample "
                      "holds with a positive and a negative track"}


def write_predictions(path: Path, predictions: dict[str, np.ndarray], test_files: list[str], root: str | None,
                      class_names: list[str], axes: dict, answered: np.ndarray | None = None) -> None:
    """test_predictions.csv: one row per test track, sorted by path (the same order however the test
    was sharded), paths relative to the data root where they lie below it, so runs of several
    configurations, or machines, pair up by path. A multi-label model's (`answered`: [tracks, classes],
    its answers at its thresholds) lists its labels and its answers `;`-separated."""
    p = predictions
    if answered is None:
        labels = [class_names[label] for label in p["track_labels"]]
        predicted = [class_names[int(scores.argmax())] for scores in p["track_scores"]]
    else:
        labels, predicted = (tag_lists(rows, class_names) for rows in (p["track_labels"] > 0, answered))
    chunks = np.bincount(p["chunk_tracks"], minlength=len(p["track_ids"]))
    base = Path(root) if root and Path(root).is_dir() else Path(root).parent if root else None
    rows = []
    for k, track in enumerate(p["track_ids"]):
        file = test_files[int(track)]
        shown = os.path.relpath(file, base) if base and Path(file).is_relative_to(base) else file
        scores = p["track_scores"][k]
        rows.append([shown, labels[k], predicted[k], int(chunks[k]),
                     *(f"{s:.6g}" for s in scores), *("" if v is None else v for v in axes.values())])
    columns = PREDICTION_COLUMNS if answered is None else MULTILABEL_PREDICTION_COLUMNS
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*columns, *(f"score_{c}" for c in class_names), *axes])
        writer.writerows(sorted(rows))


def tag_lists(rows: np.ndarray, class_names: list[str]) -> list[str]:
    """Each row's classes (of a [tracks, classes] array of booleans), `;`-separated."""
    return [";".join(name for name, yes in zip(class_names, row) if yes) for row in rows]


def print_results(metrics: dict[str, float], intervals: dict | None, run_dir: str, title: str) -> None:
    """Print the intervals (where there are some) and the chunk/track table, whose five lines end the
    output as .ci/run expects (a multi-label model's table: MULTILABEL_TABLE_ROWS)."""
    lines = []
    rows = MULTILABEL_TABLE_ROWS if "test/track_auc" in metrics else TABLE_ROWS
    if "test/ece" in metrics:  # before the table, whose lines end the output
        lines.append(calibration_line(metrics, multilabel=rows is MULTILABEL_TABLE_ROWS))
    lines += level_lines(metrics)
    width = max(10, *(len(name) for name, _, _ in rows))
    if intervals:
        lines += [f"\n{intervals['level']:.0%} intervals: bootstrap over test tracks (chunk: each track with its chunks), "
                  f"{intervals['resamples']} resamples, seed {intervals['seed']}",
                  f"  {'':{width}s} {'chunk':>16s} {'track':>16s}"]
        for name, chunk, track in rows:
            if chunk in intervals or track in intervals:
                lines.append(f"  {name:{width}s} " + " ".join(
                    f"[{intervals[k][0]:.4f}, {intervals[k][1]:.4f}]" if k in intervals else f"{'':16s}"
                    for k in (chunk, track)))
    lines += [f"\n{title}", f"  {'':{width}s} {'chunk':>8s} {'track':>8s}"]
    for name, chunk, track in rows:  # a metric scored on tracks only (multi-label F1) leaves its chunk cell blank
        cells = (f"{metrics[k]:8.4f}" if k in metrics else f"{'-':>8s}" for k in (chunk, track))
        lines.append(f"  {name:{width}s} " + " ".join(cells))
    lines.append(f"  run directory: {run_dir}")
    print("\n".join(lines), flush=True)


def level_lines(metrics: dict[str, float]) -> list[str]:
    """The per-level test metrics of a model with a class tree (`level_results`), one line a level; none without."""
    levels = sorted({int(k.split("/")[1][len("level"):]) for k in metrics if k.startswith("test/level")})
    if not levels:
        return []
    lines = ["\nPer level of the genre tree (tracks, rolled up; macro over the genres with a positive and a negative):"]
    for n in levels:
        cells = (f"{name} {metrics[f'test/level{n}/{key}']:.4f}" for name, key in
                 (("ROC-AUC", "track_auc"), ("PR-AUC", "track_ap"), ("F1", "track_f1")))
        lines.append(f"  level {n}: " + "  ".join(cells))
    return lines


def calibration_line(metrics: dict[str, float], multilabel: bool) -> str:
    """The expected calibration errors of the chunks and tracks, calibrated, then as trained where known."""
    def cell(level: str) -> str:
        uncalibrated = metrics.get(f"test/{level}ece_uncalibrated")
        value = f"{metrics.get(f'test/{level}ece', float('nan')):.4f}"
        return value if uncalibrated is None else f"{value} (uncalibrated {uncalibrated:.4f})"

    of = "every tag's probability" if multilabel else "the top probability"
    return (f"\nExpected calibration error (15 equal-width bins of {of}): chunk {cell('')}, "
            f"track {cell('track_')}")
