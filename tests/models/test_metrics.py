"""mgr.models.metrics: track metrics score the tracks as the aggregation rule combines them."""

from __future__ import annotations

import pytest
import torch

from conftest import CHUNK_LOGITS, CHUNK_TRACKS
from mgr.models.aggregation import TrackAggregation
from mgr.models.metrics import TrackMetrics


@pytest.mark.parametrize("name", ["mean_logits", "mean_probs", "majority_vote"])
def test_track_metrics_score_the_aggregated_tracks(name):
    labels = torch.tensor([1, 1, 2, 0, 2])
    aggregation = TrackAggregation(name)
    expected = aggregation.scores(CHUNK_LOGITS, CHUNK_TRACKS, 5).argmax(1)
    metric = TrackMetrics(3, aggregation)
    # Track ids as a DDP rank sees them (any order, gaps), chunks of a track in two batches,
    # and an empty update: a rank whose only chunk was padding.
    ids = torch.tensor([7, 3, 11, 5, 20])[CHUNK_TRACKS]
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(1))
    for part in (order[:7], order[7:]):
        metric.update(CHUNK_LOGITS[part], labels[CHUNK_TRACKS[part]], ids[part])
    metric.update(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    result = metric.compute()
    confusion = torch.zeros(3, 3, dtype=torch.long)
    for k in range(5):
        confusion[labels[k], expected[k]] += 1
    assert torch.equal(result["track_confusion"], confusion)
    assert result["track_acc"] == pytest.approx(float((expected == labels).float().mean()))
