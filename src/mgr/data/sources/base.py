"""What every source shares: the track list it gives, where its dataset lies under
data.root (and the one-sentence error when it is not there), and its splits."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mgr import MGRError
from mgr.data.splits import (DEFAULT_FRACTIONS, assigned_split, check_fold, fold_split, group_folds,
                              group_split, stratified_split)
from mgr.utils.strata import rarest_label


@dataclass
class TrackList:
    files: list[str]
    # One class index per track; for multi-label data (several labels per track, `multilabel`), a float32
    # array [tracks, classes] of 0/1, whose row `labels[t]` is track t's target (made by `multi_hot`).
    labels: list[int] | np.ndarray
    class_names: list[str]
    # Tracks of one group (artist, album) stay on one side of every split.
    groups: list[str] | None = None
    # The split the dataset gives each track ("train"/"val"/"test"; None: in no split).
    given_splits: list[str | None] | None = None
    # Files the published dataset is known to get wrong: reported, never decoded.
    known_bad: dict[str, str] = field(default_factory=dict)

    @property
    def multilabel(self) -> bool:
        return np.ndim(self.labels) == 2

    def strata(self) -> list[int]:
        """The class each track is stratified by in mgr's splits and folds: its label; a multi-label track's
        rarest label (mgr.utils.strata.rarest_label; a track without labels: len(class_names))."""
        return list(self.labels) if not self.multilabel else [int(s) for s in rarest_label(self.labels)]


def multi_hot(track_labels: Sequence[Sequence[str]], class_names: Sequence[str]) -> np.ndarray:
    """The float32 [tracks, classes] 0/1 array of multi-label tracks, from each track's label names."""
    index = {name: i for i, name in enumerate(class_names)}
    out = np.zeros((len(track_labels), len(class_names)), dtype=np.float32)
    for t, names in enumerate(track_labels):
        out[t, [index[n] for n in names]] = 1.0
    return out


class Source:
    """Base: `list()` the tracks; `split()` them by the dataset's own split or by fractions."""

    name = "source"
    # The data.split name of the split the dataset ships (TrackList.given_splits), e.g. GTZAN's "filtered".
    shipped_split: str | None = None
    # Other data.split values this source understands besides fractions and "random".
    named_splits: tuple[str, ...] = ()
    # What its groups are, for the error when a class has fewer than data.folds of them.
    group_noun = "groups"
    # For the error when the dataset is not found: what it is, the layout under <root>, and
    # either the mgr.download dataset that fetches it or how else to get it.
    title = "The dataset"
    layout = "<root>/..."
    download: str | None = None
    how_to_get = "put it there"
    # Whether data.root may name a file rather than a folder (the folder source's CSV manifest).
    root_may_be_file = False
    # data.allow_outside_root (build_source sets it on every source): whether a manifest's paths may
    # lead out of its folder; off, a manifest from someone else cannot make mgr read other files.
    allow_outside_root = False

    def __init__(self, root: str | None):
        self.root = Path(root).expanduser() if root else None

    def list(self) -> TrackList:
        raise NotImplementedError

    def require_root(self) -> Path:
        if self.root is None:
            raise MGRError(f"data.source={type(self).name} needs data.root=PATH; {self.advice()}.")
        manifest = self.root_may_be_file and self.root.is_file()
        # lexists: a broken link or a symlink loop is there, but no folder either.
        if os.path.lexists(self.root) and not self.root.is_dir() and not manifest:
            wanted = "a folder or a CSV manifest" if self.root_may_be_file else "a folder"
            raise MGRError(f"data.root={self.root} is not {wanted}; {self.advice()}.")
        return self.root

    def find(self, *candidates: str, accept: Callable[[Path], bool] = Path.exists, what: str | None = None,
             download: str | None = None) -> Path:
        """The first `root/<candidate>` (no candidates: root itself) that `accept` takes; else the
        error that says where mgr looked and how to get the dataset (`what`, `download`: of a part)."""
        root = self.require_root()
        for candidate in candidates or (".",):
            if accept(root / candidate):
                return root / candidate
        missing = "" if root.exists() else " (which does not exist)"
        raise MGRError(f"{what or self.title} not found under data.root={root}{missing}; {self.advice(download)}.")

    def advice(self, download: str | None = None) -> str:
        download = download or self.download
        if download:
            return (f"fetch it with `python -m mgr.download dataset={download} root={self.root or 'PATH'}`, "
                    f"which gives {self.layout}")
        return f"{self.how_to_get}, laid out as {self.layout}"

    def split(self, tracks: TrackList, split, seed: int, folds: int | None = None,
              fold: int | None = None) -> dict[str, list[int]]:
        """The shipped split (data.split null or its name), else fractions ("random": 80/10/10)
        stratified by label; where tracks have groups (artists, albums), whole groups. With
        data.folds/data.fold: fold `fold` of mgr's cross-validation (see `cross_validation`)."""
        if folds is not None or fold is not None:
            return self.cross_validation(tracks, split, seed, folds, fold)
        if tracks.given_splits is not None and split in (None, self.shipped_split):
            return assigned_split(tracks.given_splits)
        if split is None or split == "random":
            split = DEFAULT_FRACTIONS
        if isinstance(split, dict):
            if tracks.groups is not None:
                return group_split(tracks.strata(), tracks.groups, split, seed)
            return stratified_split(tracks.strata(), split, seed)
        raise MGRError(f"data.split={split!r} is not a split of data.source={type(self).name}; use one of "
                       f"{self.split_choices()} or fractions like '{{train: 0.8, val: 0.1, test: 0.1}}'.")

    def split_choices(self) -> str:
        return ", ".join([*filter(None, [self.shipped_split]), *self.named_splits, "random"])

    def cross_validation(self, tracks: TrackList, split, seed: int, folds, fold) -> dict[str, list[int]]:
        """Stratified `folds`-fold cross-validation, fold `fold` the test part, over the tracks that
        data.split draws from (the shipped split's tracks, or all of them with "random"), keeping
        whole the groups that split keeps whole (`leak_groups`)."""
        check_fold(folds, fold)
        if isinstance(split, dict):
            raise MGRError("data.folds makes its own train/val/test parts; remove the data.split fractions "
                           "(data.split=null or random).")
        if split not in (None, "random", self.shipped_split, *self.named_splits):
            raise MGRError(f"data.split={split!r} is not a split of data.source={type(self).name}; "
                           f"use one of {self.split_choices()}.")
        members = list(range(len(tracks.files)))
        if tracks.given_splits is not None and split in (None, self.shipped_split):
            members = [i for i in members if tracks.given_splits[i] is not None]
        groups = self.leak_groups(tracks, split, folds)
        strata = tracks.strata()
        labels = [strata[i] for i in members]
        sub_groups = [groups[i] for i in members] if groups is not None else None
        parts = group_folds(labels, sub_groups, folds, seed, [*tracks.class_names, "(no label)"],
                            self.group_noun if groups is not None else "tracks")
        splits = fold_split(labels, sub_groups, parts[fold], seed)
        return {k: [members[i] for i in v] for k, v in splits.items()}

    def leak_groups(self, tracks: TrackList, split, folds: int | None = None) -> list[str] | None:
        """The groups that must not cross splits under `split` (checked after splitting)."""
        return tracks.groups

    def class_parents(self, class_names: list[str]) -> dict[str, str | None] | None:
        """Each class's parent class where the data has a genre tree over its classes (FMA's, with
        labels=genres_all), for the model to roll its answers up; None for data without one."""
        return None
