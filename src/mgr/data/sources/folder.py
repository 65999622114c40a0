"""A user's own music: genre folders, split folders, or a CSV manifest."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from mgr import MGRError
from mgr.data.audio import AUDIO_EXTENSIONS, file_problem, is_audio_file
from mgr.data.sources.base import Source, TrackList, multi_hot
from mgr.data.splits import SPLIT_ALIASES, assign_from_lists


class FolderSource(Source):
    """A user's own music, in one of three layouts:

    - `root/<genre>/<file>` (any depth below the genre): stratified split by file;
    - `root/{train,val,test}/<genre>/<file>`: the split the folders give;
    - `root` a CSV manifest with columns `path,label[,split][,group]` (paths relative
      to the CSV): its split column, else a split that keeps each group on one side. A `labels`
      column instead of `label` (several labels separated by `;`) makes the data multi-label.
    """

    name = "folder"
    root_may_be_file = True  # a manifest
    title = "Music"
    layout = ("<root>/<genre>/<file>, <root>/{train,val,test}/<genre>/<file>, or a CSV manifest "
              "path,label[,split][,group] (or path,labels with labels separated by ;)")
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
            return read_manifest(root, self.allow_outside_root)
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


# A manifest's label column: one label per file, or several separated by LABEL_SEPARATOR (multi-label data).
LABEL_COLUMNS = ("label", "labels")
LABEL_SEPARATOR = ";"


def read_manifest(path: Path, allow_outside_root: bool = False) -> TrackList:
    """A CSV with a header `path,label[,split][,group]` (or `labels`: several labels separated by `;`,
    which makes the tracks multi-label); relative paths are relative to the CSV.
    Every path must lead into the CSV's folder (after `..` and symlinks) unless `allow_outside_root`
    (data.allow_outside_root): a manifest from someone else must not make mgr read, decode and
    cache whatever else the user may read."""
    columns, rows = manifest_rows(path)
    column = "labels" if "labels" in columns else "label"
    entries, labels, groups = [], [], []
    for n, row in rows:
        file = manifest_file(path, n, row["path"], allow_outside_root)
        labels.append(row_labels(path, n, row[column], several=column == "labels"))
        groups.append((row.get("group") or "").strip() or file)  # no group: the track is its own group
        split = None
        if "split" in columns:
            split = SPLIT_ALIASES.get(row["split"].strip().lower())
            if split is None:
                raise MGRError(f"Line {n} of {path} has split {row['split']!r}; use train, val or test.")
        entries.append((file, split, path, n))
    where = assign_from_lists(entries, "File")  # a path listed twice is an error, split column or not
    names = sorted({name for names in labels for name in names})
    if len(names) < 2:
        raise MGRError(f"The manifest {path} has {len(names)} label(s); need at least 2.")
    targets = multi_hot(labels, names) if column == "labels" else [names.index(name) for name, in labels]
    return TrackList(list(where), targets, names,
                     groups=groups if "group" in columns else None,
                     given_splits=list(where.values()) if "split" in columns else None)


def row_labels(manifest: Path, line: int, value: str, several: bool) -> tuple[str, ...]:
    """The labels of a manifest line: its one label, or with `several` (the `labels` column) each name
    between `;` once; none is one sentence naming the line."""
    names = [v.strip() for v in value.split(LABEL_SEPARATOR)] if several else [value.strip()]
    names = tuple(dict.fromkeys(n for n in names if n))
    if not names:
        column, what = ("labels", "genres") if several else ("label", "genre")
        raise MGRError(f"Line {line} of {manifest} has an empty {column}; give the file its {what} or drop the line.")
    return names


def manifest_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header's columns, and each row that is not blank with the line it starts on; a header
    without path and label, a row short of the header's columns, or text that is not UTF-8 CSV stops
    with one sentence. utf-8-sig: the byte-order mark spreadsheets write is not part of the first name."""
    rows = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            columns = [c.strip() for c in next(reader, [])]
            if "path" not in columns or len(set(LABEL_COLUMNS) & set(columns)) != 1:
                raise MGRError(f"The manifest {path} needs a header with the columns path,label[,split][,group], or "
                               "path,labels[,split][,group] for several labels per file (separated by ;), not both "
                               "label and labels.")
            start = reader.line_num + 1
            for values in reader:
                line, start = start, reader.line_num + 1  # a quoted field may span lines
                if not any(v.strip() for v in values):
                    continue
                if len(values) < len(columns):
                    raise MGRError(f"Line {line} of {path} has {len(values)} field(s) but the header has "
                                   f"{len(columns)} ({','.join(columns)}); fill in the missing ones.")
                rows.append((line, dict(zip(columns, values))))
    except UnicodeDecodeError as e:
        raise MGRError(f"The manifest {path} is not UTF-8 text ({e.reason}); save it as UTF-8 CSV.") from None
    except csv.Error as e:
        raise MGRError(f"Line {reader.line_num} of {path} is not CSV ({e}); fix it or drop the line.") from None
    return columns, rows


def manifest_file(manifest: Path, line: int, entry: str, allow_outside_root: bool) -> str:
    """The real path of the file a manifest line names, a regular file inside the manifest's folder
    (anywhere with `allow_outside_root`); else one sentence naming the line."""
    if not entry.strip():
        raise MGRError(f"Line {line} of {manifest} has an empty path; name the file or drop the line.")
    folder = os.path.realpath(manifest.parent)
    file = os.path.realpath(manifest.parent / entry.strip())  # Path.resolve raises on a symlink loop
    if not allow_outside_root and os.path.commonpath([folder, file]) != folder:
        raise MGRError(f"Line {line} of {manifest} names {file}, outside the manifest's folder {folder}; move "
                       "the file under that folder, or set data.allow_outside_root=true if you trust the manifest.")
    problem = file_problem(file)
    if problem:
        raise MGRError(f"Line {line} of {manifest} names {file}: {problem}; fix the path or drop the line.")
    return file
