"""artist20's own protocols from the distribution's list files (artist20/lists/): the canonical
3/1/2 album split and the 6-fold album jackknife, on a miniature tree; a missing list, or one
that names an album not on disk, is one sentence naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from mgr import MGRError
from mgr.data.sources.artist20 import Artist20Source
from mgr.data.splits import check_split

ARTISTS, ALBUMS, TRACKS = 3, 6, 2


@pytest.fixture
def a20(tmp_path) -> Path:
    """3 artists x 6 albums x 2 tracks, and the list files, albums listed in reverse folder order."""
    root = tmp_path / "data"
    lists = root / "artist20" / "lists"
    lists.mkdir(parents=True)
    all_tracks, sides = [], {"trn": [], "val": [], "tst": []}
    for a in range(ARTISTS):
        for b in reversed(range(ALBUMS)):  # the list's order, not the folders', defines the jackknife
            album = f"artist_{a}/album_{b}"
            for t in range(TRACKS):
                (root / "artist20" / "mp3s-32k" / album).mkdir(parents=True, exist_ok=True)
                (root / "artist20" / "mp3s-32k" / album / f"{t:02d}-song.mp3").touch()
                all_tracks.append(f"{album}/{t:02d}-song")
            sides["trn" if b < 3 else "val" if b == 3 else "tst"].append(album)
    (lists / "a20-all-tracks.list").write_text("\n".join(all_tracks) + "\n")
    for side, albums in sides.items():
        (lists / f"a20-{side}-albums.list").write_text("\n".join(albums) + "\n")
    return root


def albums_of(tracks, indices) -> set[str]:
    return {tracks.groups[i] for i in indices}


def test_canonical_split_is_read_from_the_album_lists(a20):
    source = Artist20Source(str(a20))
    tracks = source.list()
    canonical = source.split(tracks, "canonical", seed=0)
    check_split(canonical, tracks.files, source.leak_groups(tracks, "canonical"))
    expect = {"train": (0, 1, 2), "val": (3,), "test": (4, 5)}
    for side, numbers in expect.items():
        assert albums_of(tracks, canonical[side]) == {f"artist_{a}/album_{b}" for a in range(ARTISTS) for b in numbers}
    assert canonical == source.split(tracks, "canonical", seed=1)  # read, not drawn


def test_canonical_split_takes_a_sides_track_list_where_its_album_list_is_absent(a20):
    lists = a20 / "artist20" / "lists"
    (lists / "a20-tst-albums.list").unlink()
    (lists / "a20-tst-tracks.list").write_text("artist_0/album_5/00-song\nartist_1/album_4/01-song\n")
    source = Artist20Source(str(a20))
    tracks = source.list()
    test = source.split(tracks, "canonical", seed=0)["test"]
    assert [Path(tracks.files[i]).relative_to(a20 / "artist20" / "mp3s-32k").as_posix() for i in test] == \
        ["artist_0/album_5/00-song.mp3", "artist_1/album_4/01-song.mp3"]


def test_jackknife_tests_every_album_once_and_no_album_crosses_train_and_test(a20):
    source = Artist20Source(str(a20))
    tracks = source.list()
    folds = [source.split(tracks, "jackknife", 0, None, k) for k in range(ALBUMS)]
    assert folds[2] == source.split(tracks, "jackknife", 0, ALBUMS, 2)  # data.folds=6 may be given
    tested = []
    for k, fold in enumerate(folds):
        check_split(fold, tracks.files, source.leak_groups(tracks, "jackknife"))
        # fold k tests each artist's (k+1)-th album of a20-all-tracks.list (album_5, album_4, ...)
        assert albums_of(tracks, fold["test"]) == {f"artist_{a}/album_{ALBUMS - 1 - k}" for a in range(ARTISTS)}
        assert len(albums_of(tracks, fold["val"])) == ARTISTS  # one of the other five per artist
        assert sorted({tracks.labels[i] for i in fold["val"]}) == list(range(ARTISTS))
        assert not albums_of(tracks, fold["test"]) & albums_of(tracks, fold["train"] + fold["val"])
        tested += fold["test"]
    assert sorted(tested) == list(range(len(tracks.files)))  # an effective test set of every track


@pytest.mark.parametrize("folds,fold", [(None, None), (None, 6), (5, 0), (6, -1)])
def test_jackknife_folds_out_of_range_are_one_sentence(a20, folds, fold):
    source = Artist20Source(str(a20))
    with pytest.raises(MGRError, match=r"data.split=jackknife has 6 folds, one per album of each artist: give "
                                       r"data.fold=K with K in 0..5 \(and data.folds=6 or none\)."):
        source.split(source.list(), "jackknife", 0, folds, fold)


def test_a_missing_list_names_the_file(a20):
    lists = a20 / "artist20" / "lists"
    source = Artist20Source(str(a20))
    tracks = source.list()
    (lists / "a20-val-albums.list").unlink()
    with pytest.raises(MGRError, match=rf"{lists / 'a20-val-albums.list'} is missing \(and so is a20-val-tracks.list\); "
                                       "data.split=canonical reads the val albums from it"):
        source.split(tracks, "canonical", 0)
    (lists / "a20-all-tracks.list").unlink()
    with pytest.raises(MGRError, match=rf"{lists / 'a20-all-tracks.list'} is missing; the artist20 distribution "
                                       r"ships it in artist20/lists/ \(data.source_options.lists=PATH"):
        source.split(tracks, "jackknife", 0, None, 0)


def test_a_list_naming_an_album_not_on_disk_names_the_file_and_line(a20):
    lists = a20 / "artist20" / "lists"
    with (lists / "a20-trn-albums.list").open("a") as f:
        f.write("artist_9/album_0\n")
    source = Artist20Source(str(a20))
    tracks = source.list()
    with pytest.raises(MGRError, match=rf"Line 10 of {lists / 'a20-trn-albums.list'} names the album artist_9/album_0, "
                                       "which is not under .*mp3s-32k; is the copy of artist20 complete?"):
        source.split(tracks, "canonical", 0)
    with (lists / "a20-all-tracks.list").open("a") as f:
        f.write("artist_0/album_9/00-song\n")
    with pytest.raises(MGRError, match=rf"Line 37 of {lists / 'a20-all-tracks.list'} names artist_0/album_9/00-song"):
        source.split(tracks, "jackknife", 0, None, 0)


def test_an_album_on_two_sides_of_the_canonical_lists_is_an_error(a20):
    lists = a20 / "artist20" / "lists"
    with (lists / "a20-tst-albums.list").open("a") as f:
        f.write("artist_0/album_0\n")
    source = Artist20Source(str(a20))
    with pytest.raises(MGRError, match="Track artist_0/album_0/00-song is listed twice: line 3 of .*a20-trn-albums.list "
                                       "and line 7 of .*a20-tst-albums.list"):
        source.split(source.list(), "canonical", 0)


def test_lists_elsewhere_and_the_canonical_split_has_no_folds(a20, tmp_path):
    moved = tmp_path / "my-lists"
    (a20 / "artist20" / "lists").rename(moved)
    source = Artist20Source(str(a20), lists=str(moved))
    tracks = source.list()
    assert len(source.split(tracks, "canonical", 0)["test"]) == ARTISTS * 2 * TRACKS
    with pytest.raises(MGRError, match="data.split=canonical is one split; for folds use data.split=jackknife"):
        source.split(tracks, "canonical", 0, 3, 0)
