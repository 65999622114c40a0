"""GTZAN (Tzanetakis & Cook 2002): 10 genres x 100 clips of 30 s.

Default split: the fault-filtered split of Kereliuk, Sturm & Larsen, "Deep
learning and music adversaries" (IEEE TMM 2015), which removes repeated clips,
distorted clips and artists shared between splits: 443 train / 197 valid /
290 test tracks. The lists ship in `gtzan_splits/` (from coreyker/dnn-mgr, as
mirrored in minzwon/sota-music-tagging-models under split/gtzan/).

data.folds/data.fold (e.g. the 10-fold cross-validation of HEAR) fold the 930 filtered clips.
GTZAN has no artist labels; what the filter gives is that no artist is on two of its sides, and
GTZAN numbers an artist's clips consecutively (mostly; Sturm 2013). So the folds keep whole every
run of consecutive clip numbers of one genre on one side, cut into even pieces of at most
ceil(clips of the genre / folds) clips so that the folds come out even: an artist can cross folds
only at such a cut or where its clips are not consecutive. data.split=random folds all 1000 clips.
"""

from __future__ import annotations

import math
import re
from importlib import resources
from pathlib import Path

import numpy as np

from mgr import MGRError
from mgr.data.sources.base import Source, TrackList
from mgr.data.splits import assign_from_lists

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
LIST_FILES = {"train": "train_filtered.txt", "val": "valid_filtered.txt", "test": "test_filtered.txt"}
CLIP = re.compile(r"^(?P<genre>[a-z]+)\.(?P<number>\d{5})\.(wav|au)$")
# The copy circulated on Kaggle (genres_original/) has an undecodable jazz.00054.wav.
KNOWN_BAD = {"jazz.00054.wav": "known bad file: unreadable in the widely circulated GTZAN copy (genres_original/)"}


def packaged_lists() -> Path:
    return Path(str(resources.files("mgr.data.sources") / "gtzan_splits"))


def has_genre_folders(folder: Path) -> bool:
    return all((folder / g).is_dir() for g in GENRES)


def consecutive_runs(tracks: TrackList, folds: int) -> list[str]:
    """Each clip's group for folding the filtered split: its run of consecutive clip numbers of one
    genre on one side of the split, cut into pieces of at most ceil(clips of the genre / folds)."""
    groups = [f"unlisted {f}" for f in tracks.files]
    for label, genre in enumerate(tracks.class_names):
        mine = [i for i in range(len(tracks.files)) if tracks.labels[i] == label and tracks.given_splits[i]]
        runs: list[list[int]] = []
        previous = None
        for i in mine:  # the files of a genre are listed in clip order
            number = int(CLIP.match(Path(tracks.files[i]).name)["number"])
            if previous == number - 1 and tracks.given_splits[i] == tracks.given_splits[runs[-1][-1]]:
                runs[-1].append(i)
            else:
                runs.append([i])
            previous = number
        most = math.ceil(len(mine) / folds)
        for r, run in enumerate(runs):
            for p, piece in enumerate(np.array_split(run, math.ceil(len(run) / most))):
                for i in piece:
                    groups[i] = f"{genre} run {r} piece {p}"
    return groups


class GTZANSource(Source):
    name = "gtzan"
    shipped_split = "filtered"
    title = "GTZAN"
    group_noun = "runs of consecutive clips"
    download = "gtzan"
    layout = "<root>/genres/<genre>/<genre>.000NN.au (genres_original/<genre>/<genre>.000NN.wav works too)"

    def __init__(self, root: str | None, split_lists: str | None = None):
        super().__init__(root)
        self.split_lists = Path(split_lists).expanduser() if split_lists else packaged_lists()

    def folder(self) -> Path:
        """The folder holding the genre folders: genres/ (original tarball), genres_original/ (Kaggle) or root."""
        return self.find("genres", "genres_original", "Data/genres_original", ".", accept=has_genre_folders)

    def list(self) -> TrackList:
        folder = self.folder()
        files, labels, keys = [], [], {}
        for label, genre in enumerate(GENRES):
            for path in sorted((folder / genre).iterdir()):
                m = CLIP.match(path.name)
                if m and m["genre"] == genre:
                    key = f"{genre}/{path.stem}"  # the lists name .wav; the tarball has .au
                    if key in keys:  # both copies would land in one split: a clip counted twice
                        raise MGRError(f"GTZAN clip {key} is there twice: {keys[key]} and {path.name} in "
                                       f"{folder / genre}; keep one of them.")
                    files.append(str(path.resolve()))
                    labels.append(label)
                    keys[key] = path.name
        known_bad = {f: KNOWN_BAD[Path(f).name] for f in files if Path(f).name in KNOWN_BAD}
        return TrackList(files, labels, list(GENRES), given_splits=self._given_splits(list(keys), folder),
                         known_bad=known_bad)

    def _given_splits(self, keys: list[str], folder: Path) -> list[str | None]:
        entries = []
        for split, name in LIST_FILES.items():
            path = self.split_lists / name
            if not path.is_file():
                raise MGRError(f"data.source_options.split_lists={self.split_lists} has no {name}; it needs "
                               f"{', '.join(LIST_FILES.values())}, one clip per line (blues/blues.00000.wav).")
            lines = path.read_text().splitlines()
            entries += [(line.strip().rsplit(".", 1)[0], split, path, n)
                        for n, line in enumerate(lines, start=1) if line.strip()]
        where = assign_from_lists(entries, "Clip")
        missing = sorted(set(where) - set(keys))
        if missing:
            raise MGRError(f"{len(missing)} clip(s) of the fault-filtered split are missing under {folder}, "
                           f"e.g. {missing[0]}; re-download GTZAN or use data.split=random.")
        return [where.get(k) for k in keys]

    def leak_groups(self, tracks: TrackList, split, folds: int | None = None) -> list[str] | None:
        if folds is None or split not in (None, self.shipped_split):
            return None  # the filtered split itself: its sides are artist-free of each other by construction
        return consecutive_runs(tracks, folds)
