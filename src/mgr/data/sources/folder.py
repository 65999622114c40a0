"""A user's own music: genre folders, split folders, or a CSV manifest."""

from __future__ import annotations

import csv
from pathlib import Path

from mgr import MGRError
from mgr.data.audio import AUDIO_EXTENSIONS, is_audio_file
from mgr.data.sources.base import Source, TrackList
from mgr.data.splits import SPLIT_ALIASES, assign_from_lists


class FolderSource(Source):
    """A user's own music, in one of three layouts:

    - `root/<genre>/<file>` (any depth below the genre): stratified split by file;
    - `root/{train,val,test}/<genre>/<file>`: the split the folders give;
    - `root` a CSV manifest with columns `path,label[,split][,group]` (paths relative
      to the CSV): its split column, else a split that keeps each group on one side.
    """

    name = "folder"
    title = "Music"
    layout = "<root>/<genre>/<file>, <root>/{train,val,test}/<genre>/<file>, or a CSV manifest path,label[,split][,group]"
    how_to_get = "point it at your music"

    def folder(self) -> Path:
        return self.find()

    group_noun = "groups (the manifest's group column)"

    def split(self, tracks: TrackList, split, seed: int, folds: int | None = None,
              fold: int | None = None) -> dict[str, list[int]]:
        if tracks.given_splits is not None and (split, folds, fold) != (None, None, None):
            remove = "data.split" if split is not None else "data.folds and data.fold"
            raise MGRError(f"{self.root} already defines its split (folders or a split column); remove {remove}.")
        return super().split(tracks, split, seed, folds, fold)

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
        return TrackList(list(where), [names.index(g) for g in genres], names, given_splits=list(where.values()))


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
                     given_splits=list(where.values()) if "split" in columns else None)
