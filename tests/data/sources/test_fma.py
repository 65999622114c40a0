"""mgr.data.sources.fma, rebuilt in miniature: tracks.csv, the official split, known and found
bad files, artists kept on one side."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from conftest import mini_datamodule, split_sizes, write_tone
from mgr import MGRError
from mgr.data.sources.fma import FMASource, read_tracks_csv
from mgr.data.splits import check_split


# (track_id, genre_top, split, subset, artist_id), each artist on one side of the official split as in
# FMA; known bad ids 98565 (short), 99134 (no audio) of small and 1486 (mis-trimmed) of medium included.
FMA_TRACKS = [
    *[(2 + i, "Hip-Hop", s, "small", a)
      for i, (s, a) in enumerate(zip(["training"] * 6 + ["validation", "test"], [1, 1, 1, 2, 2, 2, 3, 4]))],
    *[(140 + i, "Rock", s, "small", a)
      for i, (s, a) in enumerate(zip(["training"] * 5 + ["validation", "test"], [5, 5, 5, 6, 6, 7, 8]))],
    (98565, "Rock", "training", "small", 6),
    (99134, "Hip-Hop", "test", "small", 4),
    *[(3000 + i, "Jazz", s, "medium", a) for i, (s, a) in enumerate(zip(["training", "training", "validation", "test"],
                                                                       [9, 9, 10, 11]))],
    (3100, "", "training", "medium", 9),  # no top genre: not in any subset's label set
    (1486, "Jazz", "training", "medium", 12),
    (5000, "Blues", "training", "large", 13),
]


SHORT_FMA_CLIPS = (98565, 1486)


def write_tracks_csv(path: Path, tracks) -> None:
    """FMA's tracks.csv: two header rows, then the index name, fields that span lines."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "album", "artist", "artist", "set", "set", "track", "track"])
        w.writerow(["", "title", "id", "name", "split", "subset", "genre_top", "title"])
        w.writerow(["track_id", "", "", "", "", "", "", ""])
        for tid, genre, split, subset, artist in tracks:
            w.writerow([tid, "An album,\nwith a line break", artist, "AWOL", split, subset, genre, f"Track {tid}"])


@pytest.fixture
def fma_root(tmp_path) -> Path:
    root = tmp_path / "fma"
    (root / "fma_metadata").mkdir(parents=True)
    write_tracks_csv(root / "fma_metadata" / "tracks.csv", FMA_TRACKS)
    for tid, _, _, subset, _ in FMA_TRACKS:
        for size in ("small", "medium"):
            if subset == "small" or (subset == "medium" and size == "medium"):
                path = root / f"fma_{size}" / f"{tid:06d}"[:3] / f"{tid:06d}.mp3"
                if tid == 99134:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"")  # no audio at all
                else:
                    write_tone(path, seconds=0.3 if tid in SHORT_FMA_CLIPS else 1.2, seed=tid, format="MP3")
    return root


def artist_of(file: str) -> int:
    return {t[0]: t[4] for t in FMA_TRACKS}[int(Path(file).stem)]


def test_fma_tracks_csv_with_two_header_rows(fma_root):
    rows = read_tracks_csv(fma_root / "fma_metadata" / "tracks.csv")
    assert [r["track_id"] for r in rows] == [str(t[0]) for t in FMA_TRACKS]
    assert {k: rows[0][k] for k in ("track_id", "genre_top", "split", "subset", "artist_id")} == \
        {"track_id": "2", "genre_top": "Hip-Hop", "split": "training", "subset": "small", "artist_id": "1"}


def test_fma_small_official_split_and_known_bad_files(fma_root, tmp_path):
    dm = mini_datamodule("fma", fma_root, tmp_path, source_options={"size": "small"}, max_bad_fraction=0.2)
    assert dm.class_names == ["Hip-Hop", "Rock"]
    assert len(dm.tracks.files) == 17
    assert split_sizes(dm.split_tracks) == (11, 2, 2)  # 12/2/3 listed, 98565 and 99134 left out
    bad = {Path(p).name: r for p, r in dm.cache.bad_files.items()}
    assert set(bad) == {"098565.mp3", "099134.mp3"}
    assert bad["098565.mp3"].startswith("known bad file: far shorter")
    for split, indices in dm.split_tracks.items():
        expected = {"train": "training", "val": "validation", "test": "test"}[split]
        by_id = {t[0]: t[2] for t in FMA_TRACKS}
        assert {by_id[int(Path(dm.tracks.files[i]).stem)] for i in indices} == {expected}


def test_fma_medium_includes_small_and_finds_short_files_itself(fma_root, tmp_path, monkeypatch):
    from mgr.data.sources import fma

    monkeypatch.setattr(fma, "KNOWN_BAD", {})  # unlisted faults are caught by decoding
    dm = mini_datamodule("fma", fma_root, tmp_path, source_options={"size": "medium"}, max_bad_fraction=0.2)
    assert dm.class_names == ["Hip-Hop", "Jazz", "Rock"]
    assert len(dm.tracks.files) == 22 and "fma_medium" in dm.tracks.files[0]
    bad = {Path(p).name: r for p, r in dm.cache.bad_files.items()}
    assert bad["098565.mp3"].startswith("too short: 0.30 s") and bad["001486.mp3"].startswith("too short: 0.30 s")
    assert bad["099134.mp3"].startswith("cannot decode")
    assert split_sizes(dm.split_tracks) == (13, 3, 3)


MEDIUM_MISTRIMMED = (1486, 5574, 65753, 80391, 98558, 98559, 98560, 98566, 98568, 98571, 105247, 108924, 126981,
                     127336, 143992)


@pytest.mark.parametrize("size", ["medium", "large"])
def test_fma_known_faults_of_medium_are_known_in_medium_and_large(fma_root, size):
    """mdeff/fma#8's mis-trimmed clips of fma_medium (here 1486) go to the report without decoding."""
    from mgr.data.sources.fma import KNOWN_BAD

    assert set(MEDIUM_MISTRIMMED) <= set(KNOWN_BAD)
    (fma_root / f"fma_{size}").mkdir(exist_ok=True)  # large: every clip missing but the listed faults
    bad = {Path(p).name: r for p, r in FMASource(str(fma_root), size=size).list().known_bad.items()}
    assert bad["001486.mp3"].startswith("known bad file: mis-trimmed")
    assert bad["098565.mp3"].startswith("known bad file: far shorter") and bad["099134.mp3"].startswith("known bad")


def test_fma_artists_are_the_groups_and_random_splits_keep_them_on_one_side(fma_root):
    source = FMASource(str(fma_root), size="medium")
    tracks = source.list()
    assert tracks.groups == [f"artist {artist_of(f)}" for f in tracks.files]
    check_split(source.split(tracks, "official", 0), tracks.files, source.leak_groups(tracks, "official"))
    for split in ("random", {"train": 0.5, "val": 0.25, "test": 0.25}):
        for seed in range(3):
            splits = source.split(tracks, split, seed)
            assert sum(split_sizes(splits)) == len(tracks.files) and all(split_sizes(splits))
            sides = {}
            for name, indices in splits.items():
                for i in indices:
                    sides.setdefault(artist_of(tracks.files[i]), set()).add(name)
            assert all(len(s) == 1 for s in sides.values()), sides
            check_split(splits, tracks.files, source.leak_groups(tracks, split))


def test_fma_official_split_with_an_artist_on_two_sides_fails_loudly(fma_root, tmp_path):
    leaky = [(*t[:4], 1 if t[0] == 8 else t[4]) for t in FMA_TRACKS]  # validation track 8 by training artist 1
    write_tracks_csv(fma_root / "fma_metadata" / "tracks.csv", leaky)
    with pytest.raises(MGRError, match="Group artist 1 is in both the train and the val split"):
        mini_datamodule("fma", fma_root, tmp_path, source_options={"size": "small"}, max_bad_fraction=0.2)


def test_fma_track_listed_twice_in_tracks_csv_is_an_error(fma_root):
    write_tracks_csv(fma_root / "fma_metadata" / "tracks.csv", [*FMA_TRACKS, (2, "Hip-Hop", "test", "small", 1)])
    last = 4 + 2 * len(FMA_TRACKS)  # 3 header lines; every row spans 2 lines
    with pytest.raises(MGRError, match=rf"Track 2 is listed twice in \S*tracks.csv \(lines 4 and {last}\)"):
        FMASource(str(fma_root)).list()
