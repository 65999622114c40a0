"""Where the tracks come from: each source lists files, labels and class names,
and knows the splits its dataset defines.

Sources are chosen by `data.source`, with `data.root` and `data.source_options`.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

from mgr import MGRError
from mgr.data import synth
from mgr.data.audio import AUDIO_EXTENSIONS, is_audio_file
from mgr.data.splits import (DEFAULT_FRACTIONS, SPLIT_ALIASES, assign_from_lists, assigned_split, group_split,
                              stratified_split)

log = logging.getLogger(__name__)


@dataclass
class TrackList:
    files: list[str]
    labels: list[int]
    class_names: list[str]
    # Tracks of one group (artist, album) stay on one side of every split.
    groups: list[str] | None = None
    # A split the dataset defines ("train"/"val"/"test"; None: in no split).
    assigned: list[str | None] | None = None
    # Files the published dataset is known to get wrong: reported, never decoded.
    known_bad: dict[str, str] = field(default_factory=dict)


class Source:
    """Base: `list()` the tracks; `split()` them by the dataset's own split or by fractions."""

    name = "source"
    # The data.split name of the split the dataset ships (TrackList.assigned), e.g. GTZAN's "filtered".
    shipped_split: str | None = None
    # Other data.split values this source understands besides fractions and "random".
    named_splits: tuple[str, ...] = ()

    def list(self) -> TrackList:
        raise NotImplementedError

    def split(self, tracks: TrackList, split, seed: int) -> dict[str, list[int]]:
        """The shipped split (data.split null or its name), else fractions ("random": 80/10/10)
        stratified by label; where tracks have groups (artists, albums), whole groups."""
        if tracks.assigned is not None and split in (None, self.shipped_split):
            return assigned_split(tracks.assigned)
        if split is None or split == "random":
            split = DEFAULT_FRACTIONS
        if isinstance(split, dict):
            if tracks.groups is not None:
                return group_split(tracks.labels, tracks.groups, split, seed)
            return stratified_split(tracks.labels, split, seed)
        choices = ", ".join([*filter(None, [self.shipped_split]), *self.named_splits, "random"])
        raise MGRError(f"data.split={split!r} is not a split of data.source={self.name}; use one of {choices} "
                       "or fractions like '{train: 0.8, val: 0.1, test: 0.1}'.")

    def leak_groups(self, tracks: TrackList, split) -> list[str] | None:
        """The groups that must not cross splits under `split` (checked after splitting)."""
        return tracks.groups


class FolderSource(Source):
    """A user's own music, in one of three layouts:

    - `root/<genre>/<file>` (any depth below the genre): stratified split by file;
    - `root/{train,val,test}/<genre>/<file>`: the split the folders give;
    - `root` a CSV manifest with columns `path,label[,split][,group]` (paths relative
      to the CSV): its split column, else a split that keeps each group on one side.
    """

    name = "folder"
    LAYOUT = "<root>/<genre>/<file>, <root>/{train,val,test}/<genre>/<file>, or a CSV manifest path,label[,split][,group]"

    def __init__(self, root: str | None):
        self.root = Path(root).expanduser() if root else None

    def folder(self) -> Path:
        if self.root is None:
            raise MGRError(f"data=folder needs data.root=/path/to/music, laid out as {self.LAYOUT}.")
        if not self.root.exists():
            raise MGRError(f"data.root={self.root} does not exist; point it at your music, laid out as {self.LAYOUT}.")
        return self.root

    def split(self, tracks: TrackList, split, seed: int) -> dict[str, list[int]]:
        if tracks.assigned is not None and split is not None:
            raise MGRError(f"{self.root} already defines its split (folders or a split column); remove data.split.")
        return super().split(tracks, split, seed)

    def list(self) -> TrackList:
        root = self.folder()
        if root.is_file():
            return read_manifest(root)
        split_dirs = {d.name: d for d in root.iterdir() if d.is_dir() and d.name.lower() in SPLIT_ALIASES}
        if any(SPLIT_ALIASES[n.lower()] == "train" for n in split_dirs):
            return self._list_presplit(root, split_dirs)
        return self._list_genres(root)

    def _list_genres(self, root: Path) -> TrackList:
        files, names = self._genre_files(root)
        if len(names) < 2:
            raise MGRError(
                f"Found {len(names)} genre folder(s) with audio in {root}; need at least 2 folders "
                f"<root>/<genre>/ holding files with one of the extensions {', '.join(AUDIO_EXTENSIONS)}."
            )
        return TrackList([f for f, _ in files], [names.index(g) for _, g in files], names)

    @staticmethod
    def _genre_files(root: Path) -> tuple[list[tuple[str, str]], list[str]]:
        class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        files = []
        for d in class_dirs:
            files += [(str(p.resolve()), d.name) for p in sorted(d.rglob("*")) if is_audio_file(p)]
        return files, sorted({g for _, g in files})

    def _list_presplit(self, root: Path, split_dirs: dict[str, Path]) -> TrackList:
        entries, genres = [], []  # a file linked into two split folders resolves to one path: an error
        for dir_name, d in sorted(split_dirs.items()):
            found, _ = self._genre_files(d)
            entries += [(f, SPLIT_ALIASES[dir_name.lower()], d, None) for f, _ in found]
            genres += [g for _, g in found]
        where = assign_from_lists(entries, "File")
        names = sorted(set(genres))
        if len(names) < 2:
            raise MGRError(f"Found {len(names)} genre folder(s) with audio under {root}/train etc.; need at least 2.")
        return TrackList(list(where), [names.index(g) for g in genres], names, assigned=list(where.values()))


def read_manifest(path: Path) -> TrackList:
    """A CSV with a header `path,label[,split][,group]`; relative paths are relative to the CSV."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0]) if rows else set()
    if not {"path", "label"} <= columns:
        raise MGRError(f"The manifest {path} needs a header with the columns path,label[,split][,group].")
    entries, labels, groups = [], [], []
    for n, row in enumerate(rows, start=2):
        file = (path.parent / row["path"].strip()).resolve()
        if not file.is_file():
            raise MGRError(f"Line {n} of {path} names {file}, which does not exist; fix the path or drop the line.")
        labels.append(row["label"].strip())
        groups.append((row.get("group") or "").strip() or str(file))  # no group: the track is its own group
        split = None
        if "split" in columns:
            split = SPLIT_ALIASES.get((row["split"] or "").strip().lower())
            if split is None:
                raise MGRError(f"Line {n} of {path} has split {row['split']!r}; use train, val or test.")
        entries.append((str(file), split, path, n))
    where = assign_from_lists(entries, "File")  # a path listed twice is an error, split column or not
    names = sorted(set(labels))
    if len(names) < 2:
        raise MGRError(f"The manifest {path} has {len(names)} label(s); need at least 2.")
    return TrackList(list(where), [names.index(l) for l in labels], names,
                     groups=groups if "group" in columns else None,
                     assigned=list(where.values()) if "split" in columns else None)


class SynthSource(FolderSource):
    """The generated dataset (see mgr.data.synth), written under `root` on first use."""

    name = "synth"

    def __init__(self, root: str, tracks_per_class: int = 40, seconds=(6.0, 10.0), seed: int = 0):
        super().__init__(root)
        self.settings = (int(tracks_per_class), (float(seconds[0]), float(seconds[1])), int(seed))
        tracks, secs, seed = self.settings
        if tracks < 1 or not 0 < secs[0] <= secs[1]:
            raise MGRError("data.source_options needs tracks_per_class >= 1 and 0 < seconds[0] <= seconds[1].")

    def folder(self) -> Path:
        return synth.generate(self.root, *self.settings)  # instant once generated


def build_source(name: str, root: str | None, options: dict) -> Source:
    from mgr.data.artist20 import Artist20Source
    from mgr.data.fma import FMASource
    from mgr.data.gtzan import GTZANSource

    sources = {s.name: s for s in (FolderSource, SynthSource, GTZANSource, FMASource, Artist20Source)}
    if name not in sources:
        raise MGRError(f"Unknown data.source={name!r}; choose one of {sorted(sources)}.")
    try:
        return sources[name](root, **options)
    except TypeError as e:
        raise MGRError(f"Bad data.source_options for data.source={name}: {e}.") from None
