"""Splits computed on tracks (or groups of tracks) before any chunking,
deterministic given a seed, and checked for leaks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable

import numpy as np

from mgr import MGRError

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
# Names a dataset or a manifest may use for the three splits.
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


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


def _groups_of(groups: list[str]) -> tuple[list[str], dict[str, list[int]]]:
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    names = sorted(members)
    return names, members


def group_split(labels: list[int], groups: list[str], fractions: dict[str, float], seed: int) -> dict[str, list[int]]:
    """Whole groups (artists, albums) go to one split: the stratified split is drawn over
    groups, each labelled by its most common track label."""
    names, members = _groups_of(groups)
    group_labels = [int(np.bincount([labels[i] for i in members[g]]).argmax()) for g in names]
    by_group = stratified_split(group_labels, fractions, seed)
    return {k: sorted(i for g in v for i in members[names[g]]) for k, v in by_group.items()}


def holdout_groups_per_label(labels: list[int], groups: list[str], seed: int) -> dict[str, list[int]]:
    """Per label, one whole group for validation and one for test, the rest for training
    (the album split of Nasrullah & Zhao 2019: one album per artist each for val and test)."""
    names, members = _groups_of(groups)
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {k: [] for k in SPLITS}
    for label in sorted(set(labels)):
        mine = [g for g in names if labels[members[g][0]] == label]
        if len(mine) < 3:
            raise MGRError(f"Class {label} has {len(mine)} group(s); the album split needs at least 3 per class.")
        order = rng.permutation(len(mine))
        for rank, j in enumerate(order):
            split = "test" if rank == 0 else "val" if rank == 1 else "train"
            out[split] += members[mine[j]]
    return {k: sorted(v) for k, v in out.items()}


# A fold's validation part: of the tracks outside its test fold, the 1 in 9 that mgr's default
# 80/10/10 split gives validation (whole groups, stratified; at least one of each class with 3+).
VALIDATION_OF_REST = {"train": 8.0, "val": 1.0}


def check_fold(folds, fold) -> None:
    """data.folds=N with data.fold=K in 0..N-1, or neither: one sentence for every other case."""
    if fold is None:
        raise MGRError(f"data.folds={folds} needs data.fold=K, the test fold (0 to {folds - 1}); "
                       f"python -m mgr.train -m data.fold='range({folds})' runs them all.")
    if folds is None:
        raise MGRError(f"data.fold={fold} needs data.folds=N, the number of folds.")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise MGRError(f"data.folds must be a whole number >= 2, got {folds!r}.")
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise MGRError(f"data.fold={fold!r} is outside 0..{folds - 1}, the folds of data.folds={folds}.")


def group_folds(labels: list[int], groups: list[str] | None, folds: int, seed: int,
                class_names: list[str] | None = None, what: str = "groups") -> list[list[int]]:
    """The track indices of `folds` folds made of whole groups (None: every track its own group),
    stratified: per class, its groups in random order (given the seed), largest first, each go to the
    fold holding the fewest tracks of that class (then the fewest tracks), so folds differ by at most
    about one group per class. The folds do not depend on which fold is tested."""
    groups = groups if groups is not None else [str(i) for i in range(len(labels))]
    names, members = _groups_of(groups)
    group_labels = [int(np.bincount([labels[i] for i in members[g]]).argmax()) for g in names]
    rng = np.random.default_rng(seed)
    out: list[list[int]] = [[] for _ in range(folds)]
    for label in sorted(set(group_labels)):
        mine = [g for g, l in zip(names, group_labels) if l == label]
        if len(mine) < folds:
            name = class_names[label] if class_names else label
            raise MGRError(f"data.folds={folds} needs at least {folds} {what} of every class, but class {name} "
                           f"has {len(mine)}; use data.folds={max(len(mine), 2)} or fewer.")
        shuffled = [mine[j] for j in rng.permutation(len(mine))]
        in_class = [0] * folds
        for g in sorted(shuffled, key=lambda g: -len(members[g])):  # stable: ties keep the random order
            k = min(range(folds), key=lambda k: (in_class[k], len(out[k]), k))
            in_class[k] += len(members[g])
            out[k] += members[g]
    return [sorted(f) for f in out]


def fold_split(labels: list[int], groups: list[str] | None, test: list[int], seed: int) -> dict[str, list[int]]:
    """A fold's split: `test` (its test fold), validation drawn from the rest by VALIDATION_OF_REST
    (whole groups), the remainder for training."""
    in_test = set(test)
    rest = [i for i in range(len(labels)) if i not in in_test]
    rest_labels = [labels[i] for i in rest]
    if groups is None:
        part = stratified_split(rest_labels, VALIDATION_OF_REST, seed)
    else:
        part = group_split(rest_labels, [groups[i] for i in rest], VALIDATION_OF_REST, seed)
    out = {"train": [rest[i] for i in part["train"]], "val": [rest[i] for i in part["val"]], "test": sorted(test)}
    check_disjoint(out)
    return out


def assign_from_lists(entries: Iterable[tuple[Hashable, str | None, object, int | None]], what: str) -> dict:
    """The split of every key (clip, file, track) from `(key, split, list, line)` entries:
    split lists, a manifest's rows, tracks.csv, split folders (line None).

    A key listed twice, in two lists or in one, is an error that names both places:
    keeping either entry silently would move a track into another split, or count it twice.
    """
    seen: dict = {}
    for key, split, where, line in entries:
        if key in seen:
            where0, line0 = seen[key][1:]
            if where0 == where:
                places = f" in {where}" + (f" (lines {line0} and {line})" if line is not None else "")
            else:
                places = f": {_place(where0, line0)} and {_place(where, line)}"
            raise MGRError(f"{what} {key} is listed twice{places}; a {what.lower()} belongs to one split, "
                           "so remove one of the two.")
        seen[key] = (split, where, line)
    return {key: split for key, (split, _, _) in seen.items()}


def _place(where, line: int | None) -> str:
    return f"in {where}" if line is None else f"line {line} of {where}"


def assigned_split(assigned: list[str | None]) -> dict[str, list[int]]:
    """The split a dataset ships with; tracks assigned None are left out."""
    out: dict[str, list[int]] = {k: [] for k in SPLITS}
    for i, name in enumerate(assigned):
        if name is not None:
            out[name].append(i)
    return out


def check_disjoint(splits: dict[str, list], what: str = "Track") -> None:
    """Fail loudly if any track (file, group) sits in two splits: a leak that inflates test metrics."""
    seen: dict = {}
    for name, keys in splits.items():
        for key in keys:
            if key in seen and seen[key] != name:
                raise MGRError(f"{what} {key} is in both the {seen[key]} and the {name} split.")
            if key in seen:
                raise MGRError(f"{what} {key} is listed twice in the {name} split.")
            seen[key] = name


def check_split(splits: dict[str, list[int]], files: list[str], groups: list[str] | None = None) -> None:
    """No track, no file and no group (artist, album) on two sides of the split."""
    check_disjoint(splits)
    check_disjoint({k: [files[i] for i in v] for k, v in splits.items()}, "File")
    if groups is not None:
        check_disjoint({k: sorted({groups[i] for i in v}) for k, v in splits.items()}, "Group")
