"""GTZAN (Tzanetakis & Cook 2002): 10 genres x 100 clips of 30 s.

Default split: the fault-filtered split of Kereliuk, Sturm & Larsen, "Deep
learning and music adversaries" (IEEE TMM 2015), which removes repeated clips,
distorted clips and artists shared between splits: 443 train / 197 valid /
290 test tracks. The lists ship in `gtzan_splits/` (from coreyker/dnn-mgr, as
mirrored in minzwon/sota-music-tagging-models under split/gtzan/).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from mgr import MGRError
from mgr.data.sources import Source, TrackList

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
LIST_FILES = {"train": "train_filtered.txt", "val": "valid_filtered.txt", "test": "test_filtered.txt"}
CLIP = re.compile(r"^(?P<genre>[a-z]+)\.(?P<number>\d{5})\.(wav|au)$")
# The copy circulated on Kaggle (genres_original/) has an undecodable jazz.00054.wav.
KNOWN_BAD = {"jazz.00054.wav": "known bad file: unreadable in the widely circulated GTZAN copy (genres_original/)"}


def packaged_lists() -> Path:
    return Path(str(resources.files("mgr.data") / "gtzan_splits"))


class GTZANSource(Source):
    name = "gtzan"
    named_splits = ("filtered",)

    def __init__(self, root: str | None, split_lists: str | None = None):
        self.root = Path(root).expanduser() if root else None
        self.split_lists = Path(split_lists).expanduser() if split_lists else packaged_lists()

    def folder(self) -> Path:
        """The folder holding the genre folders: genres/ (original tarball), genres_original/ (Kaggle) or root."""
        if self.root is not None:
            for candidate in (self.root / "genres", self.root / "genres_original",
                              self.root / "Data" / "genres_original", self.root):
                if all((candidate / g).is_dir() for g in GENRES):
                    return candidate
        raise MGRError(
            f"GTZAN was not found under data.root={self.root}; fetch it with `python -m mgr.data.download gtzan "
            f"root={self.root}`, which gives the layout <root>/genres/<genre>/<genre>.000NN.au "
            "(genres_original/<genre>/<genre>.000NN.wav works too)."
        )

    def list(self) -> TrackList:
        folder = self.folder()
        files, labels, keys = [], [], []
        for label, genre in enumerate(GENRES):
            for path in sorted((folder / genre).iterdir()):
                m = CLIP.match(path.name)
                if m and m["genre"] == genre:
                    files.append(str(path.resolve()))
                    labels.append(label)
                    keys.append(f"{genre}/{path.stem}")  # the lists name .wav; the tarball has .au
        known_bad = {f: KNOWN_BAD[Path(f).name] for f in files if Path(f).name in KNOWN_BAD}
        return TrackList(files, labels, list(GENRES), assigned=self._assign(keys, folder), known_bad=known_bad)

    def _assign(self, keys: list[str], folder: Path) -> list[str | None]:
        where: dict[str, str] = {}
        for split, name in LIST_FILES.items():
            for line in (self.split_lists / name).read_text().split():
                where[line.rsplit(".", 1)[0]] = split
        missing = sorted(set(where) - set(keys))
        if missing:
            raise MGRError(f"{len(missing)} clip(s) of the fault-filtered split are missing under {folder}, "
                           f"e.g. {missing[0]}; re-download GTZAN or use data.split=random.")
        return [where.get(k) for k in keys]

    def split(self, tracks: TrackList, split, seed: int) -> dict[str, list[int]]:
        if split in (None, "filtered"):
            return super().split(tracks, None, seed)
        return super().split(TrackList(tracks.files, tracks.labels, tracks.class_names), split, seed)
