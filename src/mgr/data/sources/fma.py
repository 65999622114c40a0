"""FMA, the Free Music Archive dataset (Defferrard et al., ISMIR 2017).

Audio: `<root>/fma_<size>/<tid[:3]>/<tid>.mp3` (30 s clips); metadata:
`<root>/fma_metadata/tracks.csv`, a CSV with two header rows. The labels
(data.source_options.labels): `top` (the default), one per track, its
('track', 'genre_top'), and only the tracks that have one; `genres`, several per
track, its ('track', 'genres'), the genres given to the track itself; `genres_all`,
its ('track', 'genres_all'), those and all their ancestors in FMA's genre tree. The
last two are Python lists of genre ids ("[21, 811]"), named by their titles in
`<root>/fma_metadata/genres.csv` (mgr.data.genre_tree), and take every track of the
subset with at least one genre; with `genres_all`, `class_parents` gives the model the tree
over its classes, to roll its answers up (not with `genres`: see there). The split is the official artist-filtered
('set', 'split') column; a subset holds the tracks whose ('set', 'subset') is
at most its size (medium includes small). ('artist', 'id') is the group:
the leak check verifies that the official split keeps every artist on one
side, and a random or fraction split draws whole artists. data.folds/data.fold (mgr's own
cross-validation, not FMA's) fold the subset's tracks by whole artists.
"""

from __future__ import annotations

import ast
import csv
from pathlib import Path

from mgr import MGRError
from mgr.data.genre_tree import GenreTree
from mgr.data.sources.base import Source, TrackList, multi_hot
from mgr.data.splits import SPLIT_ALIASES, assign_from_lists

SIZES = ("small", "medium", "large")
# data.source_options.labels: the ('track', ...) column each reads.
LABEL_COLUMNS = {"top": "genre_top", "genres": "genres", "genres_all": "genres_all"}
# The clips that FMA's creation cut at the wrong place (the API gave a wrong duration), as
# listed by the dataset's author in https://github.com/mdeff/fma/issues/8: 6 of fma_small
# (hence of every size) and 15 more of fma_medium (hence of fma_large). Not every fault of
# the dataset: more are reported for fma_large (mdeff/fma issues #44, #49); decoding and
# data.min_seconds catch those that are unreadable or short.
MISTRIMMED_MEDIUM = "known bad file: mis-trimmed (cut at the wrong place), shorter than 30 s or empty"
KNOWN_BAD = {
    98565: "known bad file: far shorter than 30 s",
    98567: "known bad file: far shorter than 30 s",
    98569: "known bad file: far shorter than 30 s",
    99134: "known bad file: contains no audio",
    108925: "known bad file: contains no audio",
    133297: "known bad file: contains no audio",
    **dict.fromkeys((1486, 5574, 65753, 80391, 98558, 98559, 98560, 98566, 98568, 98571, 105247, 108924, 126981,
                     127336, 143992), MISTRIMMED_MEDIUM),
}


def read_tracks_csv(path: Path, labels: str = "top") -> list[dict[str, str]]:
    """The columns we need from tracks.csv: track_id, the labels' column (LABEL_COLUMNS[labels]:
    genre_top, genres or genres_all), split, subset, artist_id, and the line each row starts on.

    Row 1 names the top-level column (track, album, artist, set), row 2 the
    sub-column, row 3 holds the index name (track_id); fields may span lines.
    """
    label_column = LABEL_COLUMNS[labels]
    wanted = {("track", label_column): label_column, ("set", "split"): "split", ("set", "subset"): "subset",
              ("artist", "id"): "artist_id"}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        top, sub = next(reader), next(reader)
        columns = {wanted[(t, s)]: i for i, (t, s) in enumerate(zip(top, sub)) if (t, s) in wanted}
        if len(columns) != len(wanted):
            raise MGRError(f"{path} lacks the columns {sorted(wanted)}; is it FMA's fma_metadata/tracks.csv?")
        rows, line = [], reader.line_num
        for row in reader:
            start, line = line + 1, reader.line_num
            if not row or not row[0].strip().isdigit():  # the "track_id" row
                continue
            fields = {k: row[i].strip() if i < len(row) else "" for k, i in columns.items()}
            rows.append({"track_id": row[0].strip(), **fields, "line": start})
    return rows


def genre_ids(row: dict, column: str, path: Path) -> list[int]:
    """A genres or genres_all field, a Python list of genre ids ("[21, 811]"; "" or "[]": none)."""
    text = row[column] or "[]"
    try:
        ids = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        ids = None
    if not isinstance(ids, list) or not all(isinstance(g, int) for g in ids):
        raise MGRError(f"Line {row['line']} of {path} has ('track', '{column}') {text!r}, not a list of genre "
                       "ids like [21, 811]; restore FMA's fma_metadata/tracks.csv.")
    return ids


def audio_path(root: Path, size: str, track_id: int) -> Path:
    tid = f"{track_id:06d}"
    return root / f"fma_{size}" / tid[:3] / f"{tid}.mp3"


class FMASource(Source):
    name = "fma"  # the instance's name, fma_<size>, names its cache
    shipped_split = "official"
    title = "FMA"
    group_noun = "artists"

    def __init__(self, root: str | None, size: str = "small", labels: str = "top"):
        if size not in SIZES:
            raise MGRError(f"data.source_options.size={size!r}; choose one of {', '.join(SIZES)}.")
        if labels not in LABEL_COLUMNS:
            raise MGRError(f"data.source_options.labels={labels!r}; choose one of {', '.join(LABEL_COLUMNS)}.")
        super().__init__(root)
        self.size = size
        self.labels = labels
        self.name = f"fma_{size}"
        self.download = self.name  # the audio brings the metadata with it
        self.layout = f"<root>/fma_metadata/tracks.csv and <root>/fma_{size}/<tid[:3]>/<tid>.mp3"

    def list(self) -> TrackList:
        metadata = self.find("fma_metadata/tracks.csv", what="FMA metadata", download="fma_metadata")
        audio = self.find(f"fma_{self.size}", what=f"FMA {self.size} audio")
        limit = SIZES.index(self.size)
        rows = read_tracks_csv(metadata, self.labels)
        where = assign_from_lists(((int(r["track_id"]), SPLIT_ALIASES.get(r["split"]), metadata, r["line"])
                                   for r in rows), "Track")
        rows = [r for r in rows if r["subset"] in SIZES and SIZES.index(r["subset"]) <= limit]
        track_genres = self.genres_of(rows, metadata)
        rows, track_genres = [r for r, g in zip(rows, track_genres) if g], [g for g in track_genres if g]
        if not rows:
            which = "a top genre" if self.labels == "top" else f"a genre in ('track', '{self.labels}')"
            raise MGRError(f"{metadata} lists no track of the {self.size} subset with {which}.")
        names = sorted({n for genres in track_genres for n in genres})
        files, groups, given_splits, known_bad = [], [], [], {}
        for r in rows:
            tid = int(r["track_id"])
            path = audio_path(self.root, self.size, tid)
            files.append(str(path.resolve()))
            groups.append(f"artist {r['artist_id']}" if r["artist_id"] else f"track {tid}")
            given_splits.append(where[tid])
            if tid in KNOWN_BAD:
                known_bad[files[-1]] = KNOWN_BAD[tid]
            elif not path.exists():
                known_bad[files[-1]] = f"missing: listed in tracks.csv but not under {audio}"
        labels = [names.index(g[0]) for g in track_genres] if self.labels == "top" else multi_hot(track_genres, names)
        return TrackList(files, labels, names, groups=groups, given_splits=given_splits, known_bad=known_bad)

    def genres_of(self, rows: list[dict], metadata: Path) -> list[list[str]]:
        """Each row's genre names ([] when it has none): its genre_top, or its genres' titles."""
        if self.labels == "top":
            return [[r["genre_top"]] if r["genre_top"] else [] for r in rows]
        tree = self.genre_tree()
        column = LABEL_COLUMNS[self.labels]
        out = []
        for r in rows:
            ids = genre_ids(r, column, metadata)
            if unknown := [g for g in ids if g not in tree.names]:
                raise MGRError(f"Line {r['line']} of {metadata} gives genre {unknown[0]}, which genres.csv does "
                               "not list; restore FMA's fma_metadata (both files from one download).")
            out.append([tree.name(g) for g in dict.fromkeys(ids)])
        return out

    def genre_tree(self) -> GenreTree:
        return GenreTree.read(self.find("fma_metadata/genres.csv", what="FMA genre list", download="fma_metadata"))

    def class_parents(self, class_names: list[str]) -> dict[str, str | None] | None:
        """Each class's parent class (GenreTree.class_parents), for the model to roll its answers up the tree,
        with labels=genres_all only: its targets hold every ancestor of a track's genres, as a rolled-up
        answer does. A `genres` target is the genres given to the track alone (a Techno track is not
        Electronic there), so rolled-up answers would be scored against targets that do not roll up: None,
        as with `top`, which has no tree."""
        return self.genre_tree().class_parents(class_names) if self.labels == "genres_all" else None
