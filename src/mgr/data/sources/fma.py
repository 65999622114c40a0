"""FMA, the Free Music Archive dataset (Defferrard et al., ISMIR 2017).

Audio: `<root>/fma_<size>/<tid[:3]>/<tid>.mp3` (30 s clips); metadata:
`<root>/fma_metadata/tracks.csv`, a CSV with two header rows. Labels are
('track', 'genre_top'); the split is the official artist-filtered
('set', 'split') column; a subset holds the tracks whose ('set', 'subset') is
at most its size (medium includes small). ('artist', 'id') is the group:
the leak check verifies that the official split keeps every artist on one
side, and a random or fraction split draws whole artists. data.folds/data.fold (mgr's own
cross-validation, not FMA's) fold the subset's tracks by whole artists.
"""

from __future__ import annotations

import csv
from pathlib import Path

from mgr import MGRError
from mgr.data.sources.base import Source, TrackList
from mgr.data.splits import SPLIT_ALIASES, assign_from_lists

SIZES = ("small", "medium", "large")
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


def read_tracks_csv(path: Path) -> list[dict[str, str]]:
    """The columns we need from tracks.csv: track_id, genre_top, split, subset, artist_id,
    and the line each row starts on.

    Row 1 names the top-level column (track, album, artist, set), row 2 the
    sub-column, row 3 holds the index name (track_id); fields may span lines.
    """
    wanted = {("track", "genre_top"): "genre_top", ("set", "split"): "split", ("set", "subset"): "subset",
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


def audio_path(root: Path, size: str, track_id: int) -> Path:
    tid = f"{track_id:06d}"
    return root / f"fma_{size}" / tid[:3] / f"{tid}.mp3"


class FMASource(Source):
    name = "fma"  # the instance's name, fma_<size>, names its cache
    shipped_split = "official"
    title = "FMA"
    group_noun = "artists"

    def __init__(self, root: str | None, size: str = "small"):
        if size not in SIZES:
            raise MGRError(f"data.source_options.size={size!r}; choose one of {', '.join(SIZES)}.")
        super().__init__(root)
        self.size = size
        self.name = f"fma_{size}"
        self.download = self.name  # the audio brings the metadata with it
        self.layout = f"<root>/fma_metadata/tracks.csv and <root>/fma_{size}/<tid[:3]>/<tid>.mp3"

    def list(self) -> TrackList:
        metadata = self.find("fma_metadata/tracks.csv", what="FMA metadata", download="fma_metadata")
        audio = self.find(f"fma_{self.size}", what=f"FMA {self.size} audio")
        limit = SIZES.index(self.size)
        rows = read_tracks_csv(metadata)
        where = assign_from_lists(((int(r["track_id"]), SPLIT_ALIASES.get(r["split"]), metadata, r["line"])
                                   for r in rows), "Track")
        rows = [r for r in rows if r["subset"] in SIZES and SIZES.index(r["subset"]) <= limit and r["genre_top"]]
        if not rows:
            raise MGRError(f"{metadata} lists no track of the {self.size} subset with a top genre.")
        names = sorted({r["genre_top"] for r in rows})
        files, labels, groups, given_splits, known_bad = [], [], [], [], {}
        for r in rows:
            tid = int(r["track_id"])
            path = audio_path(self.root, self.size, tid)
            files.append(str(path.resolve()))
            labels.append(names.index(r["genre_top"]))
            groups.append(f"artist {r['artist_id']}" if r["artist_id"] else f"track {tid}")
            given_splits.append(where[tid])
            if tid in KNOWN_BAD:
                known_bad[files[-1]] = KNOWN_BAD[tid]
            elif not path.exists():
                known_bad[files[-1]] = f"missing: listed in tracks.csv but not under {audio}"
        return TrackList(files, labels, names, groups=groups, given_splits=given_splits, known_bad=known_bad)
