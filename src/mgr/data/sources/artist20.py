"""artist20 (Ellis 2007): 20 artists x 6 albums, 1413 tracks, for artist identification.

Layout: `<root>/mp3s-32k/<artist>/<album>/<track>.mp3` (root may also be the
`artist20/` folder's parent or `mp3s-32k/` itself). The two splits of seed report 004
(Nasrullah & Zhao, "Musical artist classification with convolutional
recurrent neural networks", IJCNN 2019):

- `song`: tracks stratified per artist, 10% test, then 10% of the rest for
  validation (what the report calls splitting "by artists": every artist on
  both sides, albums across the split);
- `album`: per artist one whole album for validation, one for test, the rest for training.

`random` and fractions are mgr's own: whole albums, stratified per artist. There
is no split that holds out artists: its test classes would be unseen in training.
"""

from __future__ import annotations

from pathlib import Path

from mgr import MGRError
from mgr.data.audio import is_audio_file
from mgr.data.sources.base import Source, TrackList
from mgr.data.splits import holdout_groups_per_label, stratified_split

SONG_FRACTIONS = {"train": 0.81, "val": 0.09, "test": 0.1}


def is_artist_folder(folder: Path) -> bool:
    return folder.name == "mp3s-32k" and folder.is_dir() and any(d.is_dir() for d in folder.iterdir())


class Artist20Source(Source):
    name = "artist20"
    named_splits = ("song", "album")

    title = "artist20"
    layout = "<root>/artist20/mp3s-32k/<artist>/<album>/<track>.mp3"
    how_to_get = "request it from LabROSA (https://labrosa.ee.columbia.edu/projects/artistid/) and unpack it"

    def folder(self) -> Path:
        return self.find("artist20/mp3s-32k", "mp3s-32k", ".", accept=is_artist_folder)

    def list(self) -> TrackList:
        folder = self.folder()
        files, labels, groups = [], [], []
        artists = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
        for label, artist in enumerate(artists):
            for album in sorted(d for d in (folder / artist).iterdir() if d.is_dir()):
                for path in sorted(p for p in album.rglob("*") if is_audio_file(p)):
                    files.append(str(path.resolve()))
                    labels.append(label)
                    groups.append(f"{artist}/{album.name}")
        if len(artists) < 2 or not files:
            raise MGRError(f"{folder} holds {len(artists)} artist folder(s) and {len(files)} tracks; is artist20 complete?")
        return TrackList(files, labels, artists, groups=groups)

    def split(self, tracks: TrackList, split, seed: int) -> dict[str, list[int]]:
        if split in (None, "song"):
            return stratified_split(tracks.labels, SONG_FRACTIONS, seed)
        if split == "album":
            return holdout_groups_per_label(tracks.labels, tracks.groups, seed)
        return super().split(tracks, split, seed)  # random and fractions: whole albums

    def leak_groups(self, tracks: TrackList, split) -> list[str] | None:
        return None if split in (None, "song") else tracks.groups  # a song split spreads albums by design
