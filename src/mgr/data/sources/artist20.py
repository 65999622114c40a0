"""artist20 (Ellis 2007): 20 artists x 6 albums, 1413 tracks, for artist identification.

Layout: `<root>/mp3s-32k/<artist>/<album>/<track>.mp3` (root may also be the
`artist20/` folder's parent or `mp3s-32k/` itself). The two splits of seed report 004
(Nasrullah & Zhao, "Musical artist classification with convolutional
recurrent neural networks", IJCNN 2019):

- `song`: tracks stratified per artist, 10% test, then 10% of the rest for
  validation (what the report calls splitting "by artists": every artist on
  both sides, albums across the split);
- `album`: per artist one whole album for validation, one for test, the rest for training.

The distribution's own protocols (Ellis's artist20 page), read from its list files in
`artist20/lists/` (`data.source_options.lists` points elsewhere), one entry a line relative to
`mp3s-32k/`, no extension:

- `canonical`: 3 albums per artist train, 1 validation, 2 test, from `a20-trn-albums.list`,
  `a20-val-albums.list`, `a20-tst-albums.list` (`artist/album`), or, where an album list is
  absent, the same side's `a20-trn-tracks.list`, `a20-val-tracks.list`, `a20-tst-tracks.list`
  (`artist/album/track`);
- `jackknife` with `data.fold=K`: the 6-fold album jackknife, testing each artist's (K+1)-th
  album in the order of `a20-all-tracks.list`; validation is one of the other five albums per
  artist (drawn with data.split_seed), the four left train (the jackknife trains on five, but a
  run needs a validation part to choose its checkpoint).

`random`, fractions and data.folds (with `album`: whole albums, stratified per artist; with
`song`: songs) are mgr's own. There is no split that holds out artists: its test classes would
be unseen in training.
"""

from __future__ import annotations

from pathlib import Path

from mgr import MGRError
from mgr.data.audio import is_audio_file
from mgr.data.sources.base import Source, TrackList
from mgr.data.splits import assign_from_lists, assigned_split, fold_split, holdout_groups_per_label, stratified_split

SONG_FRACTIONS = {"train": 0.81, "val": 0.09, "test": 0.1}
# The canonical split's list files, per side: the album list, else the track list.
CANONICAL_LISTS = {side: (f"a20-{short}-albums.list", f"a20-{short}-tracks.list")
                   for side, short in (("train", "trn"), ("val", "val"), ("test", "tst"))}
ALL_TRACKS = "a20-all-tracks.list"


def is_artist_folder(folder: Path) -> bool:
    return folder.name == "mp3s-32k" and folder.is_dir() and any(d.is_dir() for d in folder.iterdir())


def read_list(path: Path) -> list[tuple[int, str]]:
    """(line number, entry) of a list file's non-empty lines."""
    return [(n, line.strip()) for n, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]


class Artist20Source(Source):
    name = "artist20"
    named_splits = ("song", "album", "canonical", "jackknife")
    group_noun = "albums"

    title = "artist20"
    layout = "<root>/artist20/mp3s-32k/<artist>/<album>/<track>.mp3"
    how_to_get = "request it from LabROSA (https://labrosa.ee.columbia.edu/projects/artistid/) and unpack it"

    def __init__(self, root: str | None, lists: str | None = None):
        super().__init__(root)
        self.lists = Path(lists).expanduser() if lists else None

    def folder(self) -> Path:
        return self.find("artist20/mp3s-32k", "mp3s-32k", ".", accept=is_artist_folder)

    def lists_folder(self) -> Path:
        return self.lists or self.folder().parent / "lists"

    def list_file(self, name: str) -> Path:
        path = self.lists_folder() / name
        if not path.is_file():
            raise MGRError(f"{path} is missing; the artist20 distribution ships it in artist20/lists/ "
                           "(data.source_options.lists=PATH points elsewhere).")
        return path

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

    def split(self, tracks: TrackList, split, seed: int, folds: int | None = None,
              fold: int | None = None) -> dict[str, list[int]]:
        if split == "jackknife":
            return self._jackknife(tracks, seed, folds, fold)
        if split == "canonical":
            if (folds, fold) != (None, None):
                raise MGRError("data.split=canonical is one split; for folds use data.split=jackknife data.fold=K.")
            return self._canonical(tracks)
        if folds is not None or fold is not None:
            return super().split(tracks, split, seed, folds, fold)  # mgr's own folds
        if split in (None, "song"):
            return stratified_split(tracks.labels, SONG_FRACTIONS, seed)
        if split == "album":
            return holdout_groups_per_label(tracks.labels, tracks.groups, seed)
        return super().split(tracks, split, seed)  # random and fractions: whole albums

    def leak_groups(self, tracks: TrackList, split, folds: int | None = None) -> list[str] | None:
        return None if split in (None, "song") else tracks.groups  # a song split spreads albums by design

    def _keys(self, tracks: TrackList) -> list[str]:
        """Each track as the lists name it: artist/album/track, relative to mp3s-32k/, no extension."""
        folder = self.folder().resolve()
        return [Path(f).relative_to(folder).with_suffix("").as_posix() for f in tracks.files]

    def _read_tracks(self, path: Path, keys: list[str], side: str | None) -> list[tuple]:
        """`(track, side, path, line)` of a track list; a track not on disk is an error."""
        on_disk = set(keys)
        for n, entry in read_list(path):
            if entry not in on_disk:
                raise MGRError(f"Line {n} of {path} names {entry}, which is not under {self.folder()}; "
                               "is the copy of artist20 complete?")
        return [(entry, side, path, n) for n, entry in read_list(path)]

    def _canonical(self, tracks: TrackList) -> dict[str, list[int]]:
        keys, entries = self._keys(tracks), []
        for side, (albums, track_list) in CANONICAL_LISTS.items():
            path = self.lists_folder() / albums
            if not path.is_file() and (self.lists_folder() / track_list).is_file():
                entries += self._read_tracks(self.lists_folder() / track_list, keys, side)
                continue
            if not path.is_file():
                raise MGRError(f"{path} is missing (and so is {track_list}); data.split=canonical reads the {side} "
                               "albums from it, one artist/album a line, as the artist20 distribution ships it in "
                               "artist20/lists/.")
            for n, album in read_list(path):
                mine = [k for k, g in zip(keys, tracks.groups) if g == album]
                if not mine:
                    raise MGRError(f"Line {n} of {path} names the album {album}, which is not under "
                                   f"{self.folder()}; is the copy of artist20 complete?")
                entries += [(k, side, path, n) for k in mine]
        where = assign_from_lists(entries, "Track")
        return assigned_split([where.get(k) for k in keys])

    def _jackknife(self, tracks: TrackList, seed: int, folds, fold) -> dict[str, list[int]]:
        """Fold `fold` of the album jackknife: each artist's (fold+1)-th album of a20-all-tracks.list tests."""
        keys = self._keys(tracks)
        listed = self._read_tracks(self.list_file(ALL_TRACKS), keys, None)
        albums: dict[str, list[str]] = {}  # per artist, its albums in the list's order
        for track, *_ in listed:
            artist, album = track.split("/")[:2]
            if f"{artist}/{album}" not in albums.setdefault(artist, []):
                albums[artist].append(f"{artist}/{album}")
        counts = {len(a) for a in albums.values()}
        if len(counts) != 1:
            raise MGRError(f"{self.list_file(ALL_TRACKS)} lists {min(counts)} to {max(counts)} albums per artist; "
                           "the jackknife needs the same number for every artist (6 in artist20).")
        n = counts.pop()
        if folds not in (None, n) or fold is None or not isinstance(fold, int) or not 0 <= fold < n:
            raise MGRError(f"data.split=jackknife has {n} folds, one per album of each artist: give data.fold=K "
                           f"with K in 0..{n - 1} (and data.folds={n} or none).")
        test_albums = {a[fold] for a in albums.values()}
        in_list = assign_from_lists(listed, "Track")  # a track listed twice is an error
        members = [i for i, k in enumerate(keys) if k in in_list]
        test = [j for j, i in enumerate(members) if tracks.groups[i] in test_albums]
        splits = fold_split([tracks.labels[i] for i in members], [tracks.groups[i] for i in members], test, seed)
        return {k: [members[j] for j in v] for k, v in splits.items()}
