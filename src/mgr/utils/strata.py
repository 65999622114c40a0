"""The stratum of a multi-label item, shared by mgr's splits and folds (mgr.data's TrackList.strata) and
the probe's inner folds (mgr.models.probe_selection), which may not import each other."""

from __future__ import annotations

import numpy as np


def rarest_label(rows: np.ndarray) -> np.ndarray:
    """Each multi-label item's stratum (`rows` [items, C] of 0/1): its rarest label (the one fewest items
    carry, the first listed of equals), so that the rare labels, which a random draw would most likely
    leave out of a split or fold, reach every one; an item without labels gets a stratum of its own (C)."""
    carried = np.asarray(rows) > 0.5
    rarity = np.where(carried, carried.sum(axis=0), np.inf)
    return np.where(carried.any(axis=1), np.argmin(rarity, axis=1), carried.shape[1])
