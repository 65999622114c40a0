"""mgr.report's scores of multi-label runs (task=multilabel; mgr.sweep_report's MULTILABEL scoring): the
pooled macro ROC-AUC and PR-AUC of runs' test tracks with bootstrap intervals over tracks, over one dataset
or several, and the paired bootstrap of two systems' macro ROC-AUC difference. The macro means cover the
tags with a positive and a negative among the tracks scored (`scored_tags`); the others are named."""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np

from mgr import MGRError, statistics


def tag_rows(members: list[dict]) -> list[tuple]:
    """(dataset, tags, path, labels [T], [probabilities [T]]) of every test track of every run of `members`
    with predictions: `tag_parts`' rows of one system."""
    return [(r["dataset"], tuple(r["predictions"]["classes"]), path, labels, [scores]) for r in members
            if r["predictions"] for path, (labels, scores) in r["predictions"]["rows"].items()]


def tag_parts(rows: list[tuple]) -> list[dict]:
    """`tag_rows`-like rows (the systems' probabilities of each row in their last item) by dataset: its tags,
    its tracks ("dataset:path", one per row), labels [n, T] and the systems' probabilities [systems, n, T]."""
    by_dataset: dict[str, list] = defaultdict(list)
    for row in rows:
        by_dataset[row[0]].append(row)
    parts = []
    for dataset, some in by_dataset.items():
        if len(tag_lists := {r[1] for r in some}) > 1:
            raise MGRError(f"The runs of data={dataset} score different tags ({' against '.join(map(str, sorted(tag_lists)))}); "
                           "report runs of one tag list together.")
        parts.append({"dataset": dataset, "classes": list(some[0][1]), "tracks": [f"{dataset}:{r[2]}" for r in some],
                      "labels": np.array([r[3] for r in some], dtype=bool),
                      "scores": np.array([r[4] for r in some], dtype=float).transpose(1, 0, 2)})
    return parts


def scored_tags(labels: np.ndarray) -> np.ndarray:
    """The tags [T] a macro mean covers: those with a positive and a negative among the tracks (`labels` [n, T]);
    another tag has no ROC-AUC (and a trivial PR-AUC), and is left out."""
    return labels.any(0) & ~labels.all(0)


def macro_score(metric: Callable, labels: np.ndarray, scores: np.ndarray) -> float:
    """torchmetrics' multi-label `metric` (multilabel_auroc, multilabel_average_precision), macro over the
    `scored_tags` of the tracks (rows of `labels` and `scores` [n, T]); nan when no tag is scored."""
    import torch

    tags = scored_tags(labels)
    if not tags.any():
        return float("nan")
    return float(metric(torch.as_tensor(scores[:, tags], dtype=torch.float64), torch.as_tensor(labels[:, tags], dtype=torch.long),
                        int(tags.sum()), average="macro", validate_args=False))


def macro_aucs(parts: list[dict], rows: list[np.ndarray]) -> np.ndarray:
    """[macro ROC-AUC, macro PR-AUC] of each part's (dataset's) first system on its `rows`, mean over the parts."""
    from torchmetrics.functional.classification import multilabel_auroc, multilabel_average_precision

    return np.mean([[macro_score(metric, p["labels"][r], p["scores"][0][r])
                     for metric in (multilabel_auroc, multilabel_average_precision)] for p, r in zip(parts, rows)], axis=0)


def auc_difference(parts: list[dict], rows: list[np.ndarray]) -> np.ndarray:
    """[macro ROC-AUC of system 0 minus system 1] of each part on its `rows` (both on the same rows and tags),
    mean over the parts."""
    from torchmetrics.functional.classification import multilabel_auroc

    return np.array([np.mean([macro_score(multilabel_auroc, p["labels"][r], p["scores"][0][r])
                              - macro_score(multilabel_auroc, p["labels"][r], p["scores"][1][r]) for p, r in zip(parts, rows)])])


def interval_of(drawn: np.ndarray) -> tuple[float, float]:
    """The percentile interval of resampled values (nan without any)."""
    return statistics.percentile_interval(drawn) if len(drawn) else (float("nan"), float("nan"))


def interval_keys(key: str, value: float, drawn: np.ndarray) -> dict:
    lo, hi = interval_of(drawn)
    return {key: float(value), f"{key}_lo": lo, f"{key}_hi": hi}


def left_out_tags(parts: list[dict]) -> str:
    """The tags no macro mean of `parts` covers (`scored_tags`), prefixed by their dataset when there are several."""
    return " ".join(f"{p['dataset']}:{c}" if len(parts) > 1 else c for p in parts
                    for c, scored in zip(p["classes"], scored_tags(p["labels"])) if not scored)


def pooled_tags(members: list[dict], bootstrap: dict) -> dict:
    """Macro ROC-AUC and PR-AUC of all runs' test tracks together (folds pooled: the cross-validated scores;
    over several datasets, the mean of the datasets'), with bootstrap intervals drawing each track with all
    its rows, and the tags left out of the macro means."""
    parts = tag_parts(tag_rows(members))
    if not parts:
        return {}
    (auc, ap), drawn = statistics.over_tracks(parts, macro_aucs, bootstrap)
    return {"pooled_runs": sum(bool(r["predictions"]) for r in members),
            "pooled_tracks": len({t for p in parts for t in p["tracks"]}),
            "pooled_predictions": sum(len(p["tracks"]) for p in parts), **interval_keys("pooled_track_auc", auc, drawn[:, 0]),
            **interval_keys("pooled_track_ap", ap, drawn[:, 1]), "tags_left_out": left_out_tags(parts)}


def pooled_tags_over_datasets(members: list[dict], bootstrap: dict) -> dict:
    """One multi-label system over its datasets: each dataset's pooled macro ROC-AUC, and their mean (each
    dataset weighs the same) with an interval drawing (dataset, track) units. No ROC-AUC over every track of
    every dataset: two tasks' tags in one macro mean would mean nothing."""
    from torchmetrics.functional.classification import multilabel_auroc

    overall = pooled_tags(members, bootstrap)
    if not overall:
        return {}
    parts = tag_parts(tag_rows(members))
    return {"datasets": len(parts), "runs": len(members), "pooled_tracks": overall["pooled_tracks"],
            "pooled_predictions": overall["pooled_predictions"],
            "per_dataset": {p["dataset"]: macro_score(multilabel_auroc, p["labels"], p["scores"][0]) for p in parts},
            **{k.replace("pooled_track_auc", "mean_over_datasets"): v for k, v in overall.items()
               if k.startswith("pooled_track_auc")}}


def paired_tags(a: str, b: str, paired_rows: list[tuple], bootstrap: dict) -> dict:
    """a's macro ROC-AUC minus b's on the test tracks both tested (`paired_rows`: (a's run, track path, a's
    predictions, b's) of runs matched by dataset and replicate; over several datasets, the mean of the
    per-dataset differences), its paired bootstrap interval (tracks drawn jointly for both, each with all its
    predictions) and two-sided bootstrap p-value."""
    rows = []
    for run, path, x, y in paired_rows:
        (labels, a_scores), (b_labels, b_scores) = x["rows"][path], y["rows"][path]
        if x["classes"] != y["classes"] or (labels != b_labels).any():
            raise MGRError(f"{path} is labelled {tag_names(x['classes'], labels)} in {run['run']} but "
                           f"{tag_names(y['classes'], b_labels)} in the run it is paired with; they test different data.")
        rows.append((run["dataset"], tuple(x["classes"]), path, labels, [a_scores, b_scores]))
    parts = tag_parts(rows)
    (difference,), drawn = statistics.over_tracks(parts, auc_difference, bootstrap)
    lo, hi = interval_of(drawn[:, 0])
    return {"a": a, "b": b, "tracks": len(rows), "tags": int(sum(scored_tags(p["labels"]).sum() for p in parts)),
            "difference": float(difference), "lo": lo, "hi": hi, "p": statistics.bootstrap_p_value(drawn[:, 0])}


def tag_names(classes: list[str], labels: np.ndarray) -> str:
    return ";".join(c for c, yes in zip(classes, labels) if yes) or "nothing"
