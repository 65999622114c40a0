"""MTG-Jamendo, the auto-tagging dataset of Jamendo's Creative Commons music (Bogdanov et al., ICML 2019
workshop ML4MD): full tracks with several tags each, so a multi-label source.

Under data.root: the dataset repository's `data/` folder (https://github.com/MTG/mtg-jamendo-dataset)
and the audio, `audio/<PATH>` with PATH as the TSVs give it (`14/214.mp3`; the low-quality audio's
files are `14/214.low.mp3`); `python -m mgr.download dataset=mtg_jamendo` (mtg_jamendo_low: the
low-quality audio; mtg_jamendo_metadata: the data/ files alone) lays them out so. The five official
splits (split-0..split-4, by artist) are TSV files
`data/splits/split-<n>/autotagging_<subset>-{train,validation,test}.tsv` with the columns TRACK_ID,
ARTIST_ID, ALBUM_ID, PATH, DURATION and then the track's tags, one a column (`genre---rock`). The
labels are read from the split files rather than from `data/autotagging_<subset>.tsv`: the splits
drop the few tags that are not in all five of them, and every split of a subset lists the same tracks
with the same tags (checked on the published files), so split-0 gives the tracks and each split only
where they go. ARTIST_ID is the group.
"""

from __future__ import annotations

import csv
from pathlib import Path

from mgr import MGRError
from mgr.data.sources.base import Source, TrackList, multi_hot
from mgr.data.splits import SPLIT_ALIASES, assign_from_lists, assigned_split

# data.source_options.subset: the tag set, the suffix of its files (`all`: every tag, autotagging.tsv).
SUBSETS = {"genre": "_genre", "moodtheme": "_moodtheme", "instrument": "_instrument", "top50tags": "_top50tags",
           "all": ""}
# The subsets of one tag category, whose class names drop the category's `genre---` prefix.
ONE_CATEGORY = ("genre", "moodtheme", "instrument")
SPLITS = tuple(f"split-{n}" for n in range(5))
SIDES = ("train", "validation", "test")
REPOSITORY = "https://github.com/MTG/mtg-jamendo-dataset"


def read_split_file(path: Path) -> list[dict]:
    """The rows of a split (or metadata) TSV: track id, artist, path, tags, and the line of each."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, [])
        if header[:4] != ["TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH"]:
            raise MGRError(f"{path} does not start with the header TRACK_ID, ARTIST_ID, ALBUM_ID, PATH, DURATION, "
                           f"TAGS; is it a TSV of the MTG-Jamendo dataset ({REPOSITORY})?")
        return [{"track": row[0], "artist": row[1], "path": row[3], "tags": [t for t in row[5:] if t],
                 "line": reader.line_num} for row in reader if row]


class MTGJamendoSource(Source):
    name = "mtg_jamendo"  # the instance's name, mtg_jamendo_<subset>, names its cache
    shipped_split = "split-0"
    named_splits = SPLITS[1:]
    title = "MTG-Jamendo"
    group_noun = "artists"
    # By hand instead of mgr.download (advice() names the download while `download` is set):
    how_to_get = (f"clone {REPOSITORY} for its data/ folder and get the audio with its "
                  "scripts/download/download.py --unpack <root>/audio")

    def __init__(self, root: str | None, subset: str = "genre", low_quality: bool = False):
        if subset not in SUBSETS:
            raise MGRError(f"data.source_options.subset={subset!r}; choose one of {', '.join(SUBSETS)}.")
        super().__init__(root)
        self.subset = subset
        self.low_quality = bool(low_quality)
        self.name = f"mtg_jamendo_{subset}" + ("_low" if low_quality else "")
        self.download = "mtg_jamendo_low" if self.low_quality else "mtg_jamendo"  # the metadata comes with either
        mp3 = "14/214.low.mp3" if low_quality else "14/214.mp3"
        self.layout = (f"<root>/data/splits/split-<n>/autotagging{SUBSETS[subset]}-{{train,validation,test}}.tsv "
                       f"and <root>/audio/<PATH> (e.g. audio/{mp3})")

    def split_file(self, split: str, side: str) -> Path:
        folder = self.find(f"data/splits/{split}", accept=Path.is_dir, what=f"MTG-Jamendo's {split} folder")
        path = folder / f"autotagging{SUBSETS[self.subset]}-{side}.tsv"
        if not path.is_file():
            raise MGRError(f"{path} is missing; {self.advice()}.")
        return path

    def read_split(self, split: str) -> tuple[list[dict], dict[str, str]]:
        """The rows of `split`'s three files, and the side (train/val/test) of each track."""
        rows, entries = [], []
        for side in SIDES:
            path = self.split_file(split, side)
            for row in read_split_file(path):
                rows.append(row)
                entries.append((row["track"], SPLIT_ALIASES[side], path, row["line"]))
        return rows, assign_from_lists(entries, "Track")

    def audio_path(self, audio: Path, path: str) -> Path:
        return audio / (path[:-len(".mp3")] + ".low.mp3" if self.low_quality else path)

    def class_name(self, tag: str) -> str:
        return tag.partition("---")[2] or tag if self.subset in ONE_CATEGORY else tag

    def list(self) -> TrackList:
        rows, where = self.read_split(self.shipped_split)
        audio = self.find("audio", accept=Path.is_dir, what="MTG-Jamendo audio (the audio/ folder)")
        track_tags = [[self.class_name(t) for t in r["tags"]] for r in rows]
        names = sorted({t for tags in track_tags for t in tags})
        files, known_bad = [], {}
        for r in rows:
            path = self.audio_path(audio, r["path"])
            files.append(str(path.resolve()))
            if not path.exists():
                known_bad[files[-1]] = f"missing: listed in the {self.shipped_split} files but not under {audio}"
        return TrackList(files, multi_hot(track_tags, names), names, groups=[r["artist"] for r in rows],
                         given_splits=[where[r["track"]] for r in rows], known_bad=known_bad)

    def split(self, tracks: TrackList, split, seed: int, folds: int | None = None,
              fold: int | None = None) -> dict[str, list[int]]:
        """split-1..split-4 put the tracks of split-0 (the same in every split) where their files say."""
        if split not in self.named_splits or folds is not None or fold is not None:
            return super().split(tracks, split, seed, folds, fold)
        _, where = self.read_split(split)
        ids = [track_id(f) for f in tracks.files]
        unknown = sorted(set(where) - set(ids))
        if unknown:
            raise MGRError(f"The {split} files list {len(unknown)} tracks that split-0's do not (first: {unknown[0]}); "
                           f"every split of the dataset lists the same tracks: get the data/ folder again from "
                           f"{REPOSITORY}.")
        return assigned_split([where.get(i) for i in ids])


def track_id(file: str) -> str:
    """The TRACK_ID of an audio file: `.../14/214.mp3` (or 214.low.mp3) is track_0000214."""
    return f"track_{int(Path(file).name.split('.')[0]):07d}"
