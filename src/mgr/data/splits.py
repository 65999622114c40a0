"""Splits computed on tracks before any chunking, deterministic given a seed."""

from __future__ import annotations

import numpy as np

from mgr import MGRError

SPLITS = ("train", "val", "test")


def stratified_split(labels: list[int], fractions: dict[str, float], seed: int) -> dict[str, list[int]]:
    """Split track indices per class into train/val/test with the given fractions.

    Every class with at least three tracks gets at least one track in each split,
    so no split silently misses a class.
    """
    fractions = {k: float(fractions.get(k, 0.0)) for k in SPLITS}
    total = sum(fractions.values())
    if total <= 0 or any(v < 0 for v in fractions.values()):
        raise MGRError(f"data.split fractions must be non-negative and sum to > 0, got {fractions}.")
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    out: dict[str, list[int]] = {k: [] for k in SPLITS}
    for label in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == label)
        rng.shuffle(idx)
        n = len(idx)
        n_val = int(round(n * fractions["val"] / total))
        n_test = int(round(n * fractions["test"] / total))
        if n >= 3:
            n_val = max(n_val, 1) if fractions["val"] > 0 else 0
            n_test = max(n_test, 1) if fractions["test"] > 0 else 0
        n_train = n - n_val - n_test
        out["train"] += idx[:n_train].tolist()
        out["val"] += idx[n_train : n_train + n_val].tolist()
        out["test"] += idx[n_train + n_val :].tolist()
    out = {k: sorted(v) for k, v in out.items()}
    check_disjoint(out)
    return out


def check_disjoint(splits: dict[str, list[int]]) -> None:
    """Fail loudly if any track sits in two splits (a leak that inflates test metrics)."""
    seen: dict[int, str] = {}
    for name, idx in splits.items():
        for i in idx:
            if i in seen:
                raise MGRError(f"Track {i} is in both the {seen[i]} and the {name} split.")
            seen[i] = name
