"""mgr.statistics against published values, definitions and simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_f1_score

from mgr import statistics


def test_mcnemar_exact_on_a_published_table():
    # Armitage & Berry, "Statistical Methods in Medical Research", 3rd ed. 1994, p. 127: two media
    # culturing 50 sputum specimens, growth on A only 12, on B only 2; the exact (Liddell 1983)
    # two-sided P = 0.0129 (as StatsDirect's manual reproduces it).
    a = [1] * 20 + [1] * 12 + [0] * 2 + [0] * 16
    b = [1] * 20 + [0] * 12 + [1] * 2 + [0] * 16
    result = statistics.mcnemar_exact(a, b)
    assert (result["only_a"], result["only_b"]) == (12, 2)
    assert round(result["p"], 4) == 0.0129
    assert result["p"] == pytest.approx(2 * (1 + 14 + 91) / 2 ** 14)  # 2 P(X <= 2), X ~ Bin(14, 1/2)
    assert statistics.mcnemar_exact([1, 0], [1, 0])["p"] == 1.0  # no discordant pair: no evidence


def test_scores_equal_torchmetrics_also_with_a_class_absent():
    labels = torch.tensor([0, 0, 1, 1, 1, 3, 3])
    predictions = torch.tensor([0, 1, 1, 1, 0, 3, 1])  # class 2 neither present nor predicted
    confusion = statistics.unit_confusions(labels, predictions, np.arange(7), 4).sum(0)
    accuracy, macro_f1 = statistics.scores(confusion)
    assert accuracy == pytest.approx(4 / 7)
    assert macro_f1 == pytest.approx(float(multiclass_f1_score(predictions, labels, 4, average="macro")))


def test_bootstrap_interval_covers_the_true_accuracy_at_the_nominal_rate():
    # 300 simulated test sets of 150 tracks, each track right with probability 0.8. The share of
    # 95 % intervals that hold 0.8 must be 0.95 within 3 Monte-Carlo standard errors (0.038).
    rng = np.random.default_rng(0)
    trials, n, truth = 300, 150, 0.8
    covered = 0
    for t in range(trials):
        labels = rng.integers(0, 2, n)
        right = rng.random(n) < truth
        confusions = statistics.unit_confusions(labels, np.where(right, labels, 1 - labels), np.arange(n), 2)
        lo, hi = statistics.bootstrap_scores(confusions, 400, seed=t)["accuracy"]
        covered += lo <= truth <= hi
    assert abs(covered / trials - 0.95) < 3 * math.sqrt(0.95 * 0.05 / trials)


def test_cluster_bootstrap_is_wider_when_a_tracks_chunks_agree():
    # 40 tracks of 10 chunks, all chunks of a track right or all wrong: the chunks are 40
    # observations, not 400, and the cluster interval says so; resampling chunks would be ~3x narrower.
    rng = np.random.default_rng(1)
    right = np.repeat(rng.random(40) < 0.7, 10)
    labels = np.zeros(400, dtype=int)
    tracks = np.repeat(np.arange(40), 10)
    clustered = statistics.bootstrap_scores(statistics.unit_confusions(labels, 1 - right, tracks, 2), 500, 0)["accuracy"]
    chunks = statistics.bootstrap_scores(statistics.unit_confusions(labels, 1 - right, np.arange(400), 2), 500, 0)["accuracy"]
    assert (clustered[1] - clustered[0]) > 2.5 * (chunks[1] - chunks[0])
    assert statistics.bootstrap_scores(statistics.unit_confusions(labels, 1 - right, tracks, 2), 500, 0)["accuracy"] == clustered


def test_paired_bootstrap_difference_and_its_clusters():
    a = np.array([1, 1, 1, 1, 0, 1, 1, 0] * 10)
    b = np.array([1, 0, 1, 0, 0, 1, 0, 0] * 10)
    result = statistics.paired_bootstrap_difference(a, b, np.arange(80), 1000, seed=0)
    assert result["difference"] == pytest.approx(0.375)
    lo, hi = result["interval"]
    assert 0.2 < lo < 0.375 < hi < 0.55
    # The same 80 pairs as 2 seeds x 40 tracks: clustering by track draws each track with both seeds.
    tracks = np.tile(np.arange(40), 2)
    clustered = statistics.paired_bootstrap_difference(a, b, tracks, 1000, seed=0)
    assert clustered["difference"] == result["difference"] and clustered["interval"] != result["interval"]


def test_friedman_equals_its_definition_and_scipy():
    # 4 blocks, configuration 2 always best, 0 always worst: rank sums 12, 8, 4;
    # chi2 = 12 / (n k (k+1)) * sum R^2 - 3 n (k+1) = 8, with 2 degrees of freedom p = exp(-4).
    x = np.array([[0.5, 0.6, 0.7], [0.4, 0.5, 0.9], [0.6, 0.65, 0.8], [0.1, 0.2, 0.3]])
    result = statistics.friedman(x)
    assert result["average_ranks"] == [3.0, 2.0, 1.0]
    assert result["statistic"] == pytest.approx(8.0) and result["p"] == pytest.approx(math.exp(-4))
    assert statistics.friedman([[1, 1, 0], [0, 1, 1], [1, 0, 1]])["average_ranks"] == [2.0, 2.0, 2.0]  # ties share


def test_holm_step_down():
    # Holm 1979: the i-th smallest of m p-values times (m - i + 1), made monotone, capped at 1.
    assert statistics.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert statistics.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert statistics.holm([0.02]) == [0.02]


def test_friedman_of_configurations_tied_in_every_block_finds_no_difference():
    # scipy's statistic is 0/0 here (nan); mgr.report would print p=nan and hand Holm a nan
    result = statistics.friedman(np.full((4, 3), 0.5))
    assert (result["statistic"], result["p"], result["average_ranks"]) == (0.0, 1.0, [2.0, 2.0, 2.0])


def direct_ece(confidence, correct, bins):
    """ECE written out bin by bin, as Guo et al. 2017 define it: bins ((b-1)/M, b/M]."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    total = 0.0
    for b in range(bins):
        lower, upper = b / bins, (b + 1) / bins
        inside = (confidence > lower) & (confidence <= upper) if b else (confidence <= upper)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return total


def test_expected_calibration_error_equals_a_direct_computation():
    # Hand-made: three bins used of 15, one confidence exactly on a boundary (0.6 = 9/15: in (8/15, 9/15]).
    confidence = [0.9, 0.92, 0.91, 0.7, 0.72, 0.6]
    correct = [True, True, False, True, False, True]
    expected = 3 / 6 * abs(2 / 3 - 0.91) + 2 / 6 * abs(0.5 - 0.71) + 1 / 6 * abs(1 - 0.6)
    assert statistics.expected_calibration_error(confidence, correct, 15) == pytest.approx(expected)
    assert direct_ece(confidence, correct, 15) == pytest.approx(expected)
    rng = np.random.default_rng(0)
    confidence, correct = rng.uniform(0.2, 1.0, 1000), rng.random(1000) < 0.7
    assert statistics.expected_calibration_error(confidence, correct) == pytest.approx(direct_ece(confidence, correct, 15))


def direct_multilabel_ece(probabilities, labels, bins):
    """Multi-label ECE written out: every (item, tag) probability a forecast of the tag, pooled over tags;
    per bin ((b-1)/M, b/M] of the probabilities, |mean probability - fraction present| times the bin's share."""
    p, y = np.asarray(probabilities, float).ravel(), np.asarray(labels, float).ravel()
    total = 0.0
    for b in range(bins):
        inside = (p > b / bins) & (p <= (b + 1) / bins) if b else p <= 1 / bins
        if inside.any():
            total += inside.sum() / len(p) * abs(y[inside].mean() - p[inside].mean())
    return total


def test_multilabel_expected_calibration_error_equals_a_direct_computation():
    # Hand-made, 2 items x 3 tags: the probabilities fall in 3 bins of 15 (0 in the first).
    probabilities = [[0.95, 0.0, 0.5], [0.97, 0.02, 0.52]]
    labels = [[1, 0, 1], [0, 0, 0]]
    expected = 2 / 6 * abs(0.5 - 0.96) + 2 / 6 * abs(0 - 0.01) + 2 / 6 * abs(0.5 - 0.51)
    forecasts = statistics.tag_forecasts(probabilities, labels)
    assert forecasts[0].tolist() == [0.95, 0.0, 0.5, 0.97, 0.02, 0.52]
    assert forecasts[1].tolist() == [True, False, True, False, False, False]
    assert statistics.expected_calibration_error(*forecasts) == pytest.approx(expected)
    assert direct_multilabel_ece(probabilities, labels, 15) == pytest.approx(expected)
    rng = np.random.default_rng(2)
    probabilities = rng.random((300, 7)) ** 2  # most near 0, as a tagger's are
    labels = (rng.random((300, 7)) < 0.8 * probabilities).astype(int)
    assert statistics.expected_calibration_error(*statistics.tag_forecasts(probabilities, labels)) == pytest.approx(
        direct_multilabel_ece(probabilities, labels, 15))


def test_expected_calibration_error_of_a_calibrated_and_an_over_confident_model():
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.3, 1.0, 200_000)
    assert statistics.expected_calibration_error(confidence, rng.random(len(confidence)) < confidence) < 0.01
    assert statistics.expected_calibration_error(np.ones(10), np.zeros(10, bool)) == 1.0


def test_expected_calibration_error_equals_torchmetrics_l1_with_15_bins():
    from torchmetrics.functional.classification import multiclass_calibration_error

    logits = 3 * torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 4, (500,), generator=torch.Generator().manual_seed(1))
    confidence, predicted = torch.softmax(logits, 1).max(1)
    ours = statistics.expected_calibration_error(confidence.numpy(), (predicted == target).numpy())
    theirs = multiclass_calibration_error(torch.softmax(logits, 1), target, 4, n_bins=15, norm="l1").item()
    assert ours == pytest.approx(theirs, abs=1e-5)


def test_risk_coverage_answers_the_most_confident_first():
    confidence = [0.9, 0.3, 0.8, 0.5]
    correct = [True, False, True, False]
    coverage, accuracy, threshold = statistics.risk_coverage(confidence, correct)
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert accuracy.tolist() == [1.0, 1.0, pytest.approx(2 / 3), 0.5]
    assert threshold.tolist() == [0.9, 0.8, 0.5, 0.3]
    table = statistics.risk_coverage_table(confidence, {"accuracy": correct}, points=2)
    assert table == [{"coverage": 0.5, "accuracy": 1.0, "min_confidence": 0.8},
                     {"coverage": 1.0, "accuracy": 0.5, "min_confidence": 0.3}]


# Five tracks, tags A B C at thresholds 0.5 0.3 0.6: (probabilities, labels), worked out by hand below.
TAGGED = [([0.9, 0.4, 0.2], [1, 0, 0]),    # answers A B: top A 0.9 right; F1 2*1/(2+1) = 2/3
          ([0.2, 0.35, 0.7], [0, 1, 0]),   # answers B C: top C 0.7 wrong; F1 2*1/(2+1) = 2/3
          ([0.4, 0.2, 0.5], [1, 0, 0]),    # no tag at its threshold: never answered
          ([0.6, 0.1, 0.1], [1, 0, 0]),    # answers A: top A 0.6 right; F1 1
          ([0.55, 0.8, 0.65], [0, 1, 1])]  # answers A B C: top B 0.8 right; F1 2*2/(3+2) = 0.8
TAG_THRESHOLDS = [0.5, 0.3, 0.6]


def test_tag_answers_are_what_min_confidence_decides_on():
    probabilities, labels = (np.array(column) for column in zip(*TAGGED))
    confidence, top_tag_right, f1 = statistics.tag_answers(probabilities, probabilities >= TAG_THRESHOLDS, labels)
    assert confidence[[0, 1, 3, 4]].tolist() == [0.9, 0.7, 0.6, 0.8] and np.isnan(confidence[2])
    assert top_tag_right.tolist() == [True, False, False, True, True]
    assert f1.tolist() == pytest.approx([2 / 3, 2 / 3, 0, 1, 0.8])


def test_a_multilabel_risk_coverage_never_answers_a_track_without_an_answered_tag():
    """Answered from the most confident down (0.9, 0.8, 0.7, 0.6); the track with no tag at its threshold
    counts in the coverage's denominator and is never answered, so the curve ends at 4/5."""
    probabilities, labels = (np.array(column) for column in zip(*TAGGED))
    confidence, top_tag_right, f1 = statistics.tag_answers(probabilities, probabilities >= TAG_THRESHOLDS, labels)
    coverage, precision, threshold = statistics.risk_coverage(confidence, top_tag_right)
    assert coverage.tolist() == [0.2, 0.4, 0.6, 0.8]
    assert precision.tolist() == pytest.approx([1, 1, 2 / 3, 3 / 4])
    assert threshold.tolist() == [0.9, 0.8, 0.7, 0.6]
    table = statistics.risk_coverage_table(confidence, {"top_tag_precision": top_tag_right, "sample_f1": f1},
                                           points=2)
    assert table == [  # 0.5 of the tracks is 3 of them; 1.0 is past the 4/5 ever answered: 4/5 ends it
        {"coverage": 0.6, "min_confidence": 0.7, "top_tag_precision": pytest.approx(2 / 3),
         "sample_f1": pytest.approx((2 / 3 + 0.8 + 2 / 3) / 3)},
        {"coverage": 0.8, "min_confidence": 0.6, "top_tag_precision": 0.75,
         "sample_f1": pytest.approx((2 / 3 + 0.8 + 2 / 3 + 1) / 4)}]
    assert [row["coverage"] for row in statistics.risk_coverage_table(confidence, {"f1": f1}, points=5)] == [
        0.2, 0.4, 0.6, 0.8]  # 4/5 reached by a target: not repeated


def test_a_risk_coverage_row_answers_every_prediction_as_confident_as_its_threshold():
    """min_confidence=0.9 answers the three predictions at 0.9, never one or two of them: the rows of
    coverage 0.2, 0.4 and 0.6 are one, at 3/5."""
    confidence, correct = [0.9, 0.9, 0.9, 0.5, 0.3], [1, 0, 1, 1, 0]
    table = statistics.risk_coverage_table(confidence, {"accuracy": correct}, points=5)
    assert [(row["coverage"], row["min_confidence"]) for row in table] == [(0.6, 0.9), (0.8, 0.5), (1.0, 0.3)]
    assert table[0]["accuracy"] == pytest.approx(2 / 3)
