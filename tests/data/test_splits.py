"""mgr.data.splits: stratified, deterministic, disjoint; a leak is one clear error."""

from __future__ import annotations

import numpy as np
import pytest

from mgr import MGRError
from mgr.data.splits import check_disjoint, stratified_split


def test_split_is_stratified_deterministic_and_disjoint():
    labels = [i % 4 for i in range(200)]
    a = stratified_split(labels, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    b = stratified_split(labels, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    c = stratified_split(labels, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=4)
    assert a == b and a != c
    assert sorted(sum(a.values(), [])) == list(range(200))
    assert [len(a[k]) for k in ("train", "val", "test")] == [160, 20, 20]
    for k in ("val", "test"):
        assert sorted(np.bincount([labels[i] for i in a[k]])) == [5, 5, 5, 5]
    s = stratified_split(labels, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=3)
    assert [len(s[k]) for k in ("train", "val", "test")] == [120, 40, 40]


def test_check_disjoint_catches_leaks():
    with pytest.raises(MGRError, match="both the train and the test"):
        check_disjoint({"train": [1, 2], "val": [3], "test": [2]})
