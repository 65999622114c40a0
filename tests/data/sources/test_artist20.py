"""mgr.data.sources.artist20: album, song and fraction splits, albums kept together."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import split_sizes
from mgr import MGRError
from mgr.data.sources.artist20 import Artist20Source
from mgr.data.splits import check_split


@pytest.fixture
def artist20_root(tmp_path) -> Path:
    root = tmp_path / "a20"
    for a in range(4):
        for b in range(4):
            album = root / "artist20" / "mp3s-32k" / f"artist_{a}" / f"album_{b}"
            album.mkdir(parents=True)
            for t in range(5):
                (album / f"{t:02d}-song.mp3").touch()
    return root


def test_artist20_album_song_and_fraction_splits(artist20_root):
    source = Artist20Source(str(artist20_root))
    tracks = source.list()
    assert tracks.class_names == [f"artist_{a}" for a in range(4)] and len(tracks.files) == 80
    albums = [tracks.groups[i] for i in range(80)]

    album = source.split(tracks, "album", seed=0)
    check_split(album, tracks.files, source.leak_groups(tracks, "album"))
    assert split_sizes(album) == (40, 20, 20)
    for split in ("val", "test"):  # one whole album per artist
        assert sorted(a.split("/")[0] for a in {albums[i] for i in album[split]}) == tracks.class_names
        assert sorted(tracks.labels[i] for i in album[split]) == sorted([0, 1, 2, 3] * 5)
    assert album == source.split(tracks, "album", seed=0) != source.split(tracks, "album", seed=1)

    song = source.split(tracks, "song", seed=0)
    check_split(song, tracks.files, source.leak_groups(tracks, "song"))
    assert split_sizes(song) == (64, 8, 8)
    assert {albums[i] for i in song["test"]} & {albums[i] for i in song["train"]}  # songs of an album spread

    assert song == source.split(tracks, "song", seed=0)

    # Seed 004 has no artist split (its "by artists" is the song split); fractions keep albums together.
    with pytest.raises(MGRError, match="data.split='artist' is not a split of data.source=artist20; use one of song, album"):
        source.split(tracks, "artist", seed=0)
    for split in ("random", {"train": 0.5, "val": 0.25, "test": 0.25}):
        by_fraction = source.split(tracks, split, seed=0)
        assert source.leak_groups(tracks, split) == albums
        check_split(by_fraction, tracks.files, albums)
        assert all(sorted({tracks.labels[i] for i in v}) == [0, 1, 2, 3] for v in by_fraction.values())
    assert source.split(tracks, "random", seed=0) == source.split(tracks, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0)


def test_leaked_album_fails_loudly(artist20_root):
    source = Artist20Source(str(artist20_root))
    tracks = source.list()
    album = source.split(tracks, "album", seed=0)
    album["train"].append(album["test"].pop())
    with pytest.raises(MGRError, match="Group artist_.*/album_.* is in both"):
        check_split(album, tracks.files, source.leak_groups(tracks, "album"))


def test_artist20_missing_names_the_layout(tmp_path):
    with pytest.raises(MGRError, match=r"artist20/mp3s-32k/<artist>/<album>/<track>.mp3"):
        Artist20Source(str(tmp_path)).list()
