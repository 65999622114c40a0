"""The statistics of an honest comparison: scores from confusion matrices, bootstrap intervals
(plain or clustered), McNemar's exact test, Friedman's test with average ranks, Holm's correction.

Plain numpy and scipy; every function takes arrays and returns plain numbers, so mgr.test_report
(one run) and mgr.report (a sweep) compute the same things the same way.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats as sps

LEVEL = 0.95  # every interval mgr reports is a 95 % interval


def scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and macro-F1 of confusion matrices [..., C, C] (rows: true class). The macro mean
    leaves out classes neither present nor predicted, as torchmetrics does, so the value of a
    run's confusion equals its test/track_f1."""
    m = np.asarray(confusion, dtype=float)
    tp = np.diagonal(m, axis1=-2, axis2=-1)
    actual, predicted, total = m.sum(-1), m.sum(-2), m.sum((-2, -1))
    accuracy = np.divide(tp.sum(-1), total, out=np.zeros_like(total), where=total > 0)
    denominator = actual + predicted  # 2 tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    counted = (denominator > 0).sum(-1)
    macro_f1 = np.divide(f1.sum(-1), counted, out=np.zeros_like(total), where=counted > 0)
    return accuracy, macro_f1


def unit_confusions(labels, predictions, units, num_classes: int) -> np.ndarray:
    """[n_units, C, C]: each unit's (track's) confusion counts, from items (chunks) with their
    true label, predicted class and unit index (0 .. n_units-1). A track is its own unit with one item."""
    labels, predictions, units = (np.asarray(a, dtype=np.int64) for a in (labels, predictions, units))
    n_units = int(units.max()) + 1 if len(units) else 0
    flat = np.bincount((units * num_classes + labels) * num_classes + predictions,
                       minlength=n_units * num_classes * num_classes)
    return flat.reshape(n_units, num_classes, num_classes)


def resample_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n]: how often each of n units is drawn in each bootstrap resample (n draws with replacement)."""
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples)


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_scores(confusions: np.ndarray, resamples: int, seed: int, level: float = LEVEL) -> dict:
    """Percentile bootstrap intervals of accuracy and macro-F1 from per-unit confusions [n, C, C]:
    units (tracks) are drawn with replacement, each with all its items (chunks): a cluster bootstrap,
    which for one item per unit is the plain bootstrap. The same seed draws the same resamples."""
    confusions = np.asarray(confusions, dtype=float)
    n, c = confusions.shape[0], confusions.shape[-1]
    drawn = (resample_weights(n, resamples, seed) @ confusions.reshape(n, c * c)).reshape(resamples, c, c)
    accuracy, macro_f1 = scores(drawn)
    return {"accuracy": percentile_interval(accuracy, level), "macro_f1": percentile_interval(macro_f1, level)}


def mcnemar_exact(a_correct, b_correct) -> dict:
    """McNemar's exact (conditional) test of two classifiers on the same items: under equal accuracy
    the items only one gets right split as a fair coin (scipy's two-sided binomial test)."""
    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = sps.binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"only_a": only_a, "only_b": only_b, "p": float(p)}


def paired_bootstrap_difference(a_correct, b_correct, clusters, resamples: int, seed: int,
                                level: float = LEVEL) -> dict:
    """Accuracy of a minus accuracy of b on paired items, and its percentile bootstrap interval.
    Items of one cluster (a track tested in several runs) are drawn together, so a track seen by
    several seeds counts as one observation, not several."""
    a, b = np.asarray(a_correct, dtype=float), np.asarray(b_correct, dtype=float)
    _, cluster = np.unique(np.asarray(clusters), return_inverse=True)
    n = int(cluster.max()) + 1
    per_cluster = np.stack([np.bincount(cluster, a - b, n), np.bincount(cluster, minlength=n)], axis=1)
    drawn = resample_weights(n, resamples, seed) @ per_cluster
    differences = drawn[:, 0] / drawn[:, 1]
    return {"difference": float((a - b).mean()), "interval": percentile_interval(differences, level)}


def friedman(scores_by_block: np.ndarray) -> dict:
    """Friedman's test of k >= 3 configurations over blocks (folds, seeds): scores [blocks, k],
    higher is better. Average ranks: 1 is best, ties share their mean rank."""
    x = np.asarray(scores_by_block, dtype=float)
    ranks = sps.rankdata(-x, axis=1).mean(axis=0)
    if (x == x[:, :1]).all():  # every block a tie: scipy's statistic is 0/0, yet there is no evidence of a difference
        return {"statistic": 0.0, "p": 1.0, "average_ranks": ranks.tolist()}
    statistic, p = sps.friedmanchisquare(*x.T)
    return {"statistic": float(statistic), "p": float(p), "average_ranks": ranks.tolist()}


def holm(p_values) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the order given."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted.tolist()


# --- calibration ---------------------------------------------------------------
CALIBRATION_BINS = 15  # equal-width confidence bins of the ECE (Guo et al. 2017), as torchmetrics' default


def expected_calibration_error(confidence, correct, bins: int = CALIBRATION_BINS) -> float:
    """ECE: sum over equal-width bins of the top probability (bin b holds (b-1)/bins < c <= b/bins, a
    confidence of 0 in the first) of |accuracy - mean confidence| weighted by the bin's share of the
    predictions (the L1 norm). `confidence`: each prediction's top probability; `correct`: whether it was
    right. A multi-label model's: of its `tag_forecasts` (each (item, tag) probability, and whether the tag
    is present), so "accuracy" is the fraction of the bin's forecasts whose tag is present."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    if not len(confidence):
        return float("nan")
    totals, accuracy, mean_confidence = reliability_bins(confidence, correct, bins)
    return float(np.sum(totals / totals.sum() * np.abs(accuracy - mean_confidence)))


def tag_forecasts(probabilities, labels) -> tuple[np.ndarray, np.ndarray]:
    """A multi-label model's probabilities [items, tags] as binary forecasts, the way multi-label calibration
    is measured: every (item, tag) probability is a forecast that the item has the tag, and it came true
    when it has. Returns the probabilities and the outcomes (0/1), flattened: the ECE of these is pooled
    over tags, each bin's |mean probability - fraction present| weighted by its share of all (item, tag)
    pairs."""
    probabilities = np.asarray(probabilities, dtype=float)
    return probabilities.reshape(-1), (np.asarray(labels).reshape(probabilities.shape) > 0).reshape(-1)


def reliability_bins(confidence, correct, bins: int = CALIBRATION_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin: the number of predictions, their accuracy and mean confidence
    (0 for an empty bin): what the ECE sums and the reliability diagram draws."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    totals = np.bincount(which, minlength=bins).astype(float)
    safe = np.maximum(totals, 1)
    return totals, np.bincount(which, correct, bins) / safe, np.bincount(which, confidence, bins) / safe


def risk_coverage(confidence, correct) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Selective prediction: predictions answered from the most confident down. Returns, after each
    answered prediction, the coverage (share answered), the mean `correct` of those answered (their
    accuracy, where `correct` is 1 or 0) and the confidence of the last one answered (the lowest confidence
    among them; equal confidences in the order given). A prediction of confidence nan is never answered,
    whatever the threshold (a multi-label track with no tag above its threshold: `tag_answers`), but counts
    among those that could have been: the coverage then ends below 1."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    answerable = ~np.isnan(confidence)
    confidence, correct = confidence[answerable], correct[answerable]
    order = np.argsort(-confidence, kind="stable")
    answered = np.arange(1, len(order) + 1)
    return answered / len(answerable), np.cumsum(correct[order]) / answered, confidence[order]


def risk_coverage_table(confidence, scores: dict[str, np.ndarray], points: int = 10) -> list[dict]:
    """The risk-coverage curve at coverages 1/points, 2/points, ... up to the share ever answered (1 unless
    some confidences are nan: `risk_coverage`), that share the last row: per row the coverage, the threshold
    (`min_confidence`: the lowest confidence answered) and the mean of each of `scores` (name -> each
    prediction's score: 1/0 for right/wrong, or an F1) over the answered; compact enough for metrics.json.
    Each row is what its min_confidence answers: all the predictions as confident as the last answered, so
    a coverage that would split equal confidences moves past them (and a row is not repeated)."""
    curves = {name: risk_coverage(confidence, values) for name, values in scores.items()}
    coverage, _, threshold = next(iter(curves.values()))
    if not len(coverage):
        return []
    total = len(np.asarray(confidence))  # every prediction, the never answered too
    counts = [int(np.ceil(t * total - 1e-9)) for t in np.arange(1, points + 1) / points if t <= coverage[-1] + 1e-9]
    lowest = threshold[np.asarray([*counts, len(coverage)]) - 1]
    answered = np.searchsorted(-threshold, -lowest, side="right")  # how many are at or above each row's threshold
    return [{"coverage": float(coverage[k]), "min_confidence": float(threshold[k]),
             **{name: float(curve[1][k]) for name, curve in curves.items()}} for k in sorted(set(answered - 1))]


def tag_answers(probabilities, answered, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What decides whether `mgr.predict min_confidence=...` answers a multi-label item, and how well: per
    item (rows of `probabilities` [items, tags], `answered` [items, tags]: its tags at their thresholds,
    `labels`: its tags of 0/1), the probability of its most probable answered tag (the confidence min_confidence
    is compared with; nan where no tag is answered: never answered), whether that tag is one of its labels
    (the precision of the first answer) and the F1 of its answered tags against its labels (sample-wise F1;
    0 for an item with no answer)."""
    probabilities, answered = np.asarray(probabilities, dtype=float), np.asarray(answered, dtype=bool)
    truth = np.asarray(labels).reshape(probabilities.shape) > 0
    rows = np.arange(len(probabilities))
    top = np.where(answered, probabilities, -np.inf).argmax(axis=1)  # the first of equals, as mgr.predict ranks
    some = answered.any(axis=1)
    confidence = np.where(some, probabilities[rows, top], np.nan)
    hits, sizes = (answered & truth).sum(axis=1), answered.sum(axis=1) + truth.sum(axis=1)
    f1 = np.divide(2 * hits, sizes, out=np.zeros(len(rows)), where=sizes > 0)
    return confidence, some & truth[rows, top], f1


def over_tracks(parts: list[dict], statistic: Callable, bootstrap: dict) -> tuple[np.ndarray, np.ndarray]:
    """`statistic(parts, rows)` (rows: each part's row indices) on every row, and on each bootstrap resample:
    the tracks of all parts drawn with replacement by resample_weights, each with all its rows
    (a track tested by several runs), as bootstrap_scores draws them. Resamples on which the
    statistic is undefined (nan: no tag with a positive and a negative drawn) are dropped."""
    _, units = np.unique([t for p in parts for t in p["tracks"]], return_inverse=True)
    every = [np.arange(len(p["tracks"])) for p in parts]
    ends = np.cumsum([len(rows) for rows in every])[:-1]
    draws = resample_weights(int(units.max()) + 1, int(bootstrap["resamples"]), int(bootstrap["seed"]))
    drawn = np.array([statistic(parts, [np.repeat(rows, counts) for rows, counts in zip(every, np.split(draw[units], ends))])
                      for draw in draws])
    return np.asarray(statistic(parts, every)), drawn[~np.isnan(drawn).any(axis=1)]


def bootstrap_p_value(differences: np.ndarray) -> float:
    """The two-sided p-value of "no difference" from a paired bootstrap's resampled differences: twice the
    smaller share of them on either side of zero (zero counts on both sides), one added to each count
    (the hypothesis as one more resample: never a p of 0 from finitely many resamples), at most 1. So it
    falls below alpha about when the (1 - alpha) percentile interval leaves zero out; identical systems get 1."""
    d = np.asarray(differences)
    return float(min(1.0, 2 * (min((d <= 0).sum(), (d >= 0).sum()) + 1) / (len(d) + 1)))
