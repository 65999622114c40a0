"""mgr.data.sources.mtg_jamendo, rebuilt in miniature: the split TSVs (CRLF lines, tags one a column as
`genre---rock`), multi-hot labels, the five official splits by artist, the missing-file errors, and a
training step under task=multilabel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import metrics_of, split_sizes, tiny, write_tone
from mgr import MGRError
from mgr.data.sources import build_source
from mgr.data.sources.mtg_jamendo import track_id
from mgr.data.splits import check_split

# Three tracks per artist, so that every artist's tracks carry each genre and lack each one.
TAGS = [["genre---rock"], ["genre---pop", "genre---rock"], ["genre---electronic"]]
ARTISTS = [f"artist_{a:06d}" for a in range(1, 7)]
# The side of each artist in split-0 and split-1 (the dataset's splits are by artist).
SIDES = {"split-0": ["train"] * 4 + ["validation", "test"],
         "split-1": ["test"] + ["train"] * 4 + ["validation"]}
HEADER = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"


def tracks(mood: bool = False) -> list[tuple]:
    """(TRACK_ID, ARTIST_ID, PATH, tags) of 18 tracks, ids 201..218 as the dataset writes them."""
    out = []
    for a, artist in enumerate(ARTISTS):
        for k, tags in enumerate(TAGS):
            n = 201 + 3 * a + k
            out.append((f"track_{n:07d}", artist, f"{n % 100:02d}/{n}.mp3", tags + (["mood/theme---happy"] if mood else [])))
    return out


def write_split(root: Path, split: str, subset_suffix: str, rows: list[tuple]) -> None:
    folder = root / "data" / "splits" / split
    folder.mkdir(parents=True, exist_ok=True)
    for side in ("train", "validation", "test"):
        lines = [HEADER] + ["\t".join([t, artist, "album_000001", path, "30.0", *tags])
                            for t, artist, path, tags in rows if SIDES[split][ARTISTS.index(artist)] == side]
        (folder / f"autotagging{subset_suffix}-{side}.tsv").write_bytes(("\r\n".join(lines) + "\r\n").encode())


@pytest.fixture
def jamendo_root(tmp_path) -> Path:
    root = tmp_path / "mtg-jamendo"
    for split in SIDES:
        write_split(root, split, "_genre", tracks())
        write_split(root, split, "", tracks(mood=True))
    for n, (_, _, path, _) in enumerate(tracks()):
        write_tone(root / "audio" / path, seconds=1.2, seed=n, format="MP3")
    return root


def source(root: Path, **options):
    return build_source("mtg_jamendo", str(root), options)


def test_genre_tags_become_multi_hot_rows_named_without_their_prefix(jamendo_root):
    listed = source(jamendo_root).list()
    assert listed.class_names == ["electronic", "pop", "rock"] and listed.multilabel
    assert listed.labels.dtype == np.float32 and listed.labels.shape == (18, 3)
    assert listed.labels[:3].tolist() == [[0, 0, 1], [0, 1, 1], [1, 0, 0]]
    assert listed.files[0] == str((jamendo_root / "audio" / "01" / "201.mp3").resolve())
    assert listed.groups[:4] == ["artist_000001"] * 3 + ["artist_000002"]
    assert not listed.known_bad


def test_the_all_subset_keeps_every_tag_with_its_category(jamendo_root):
    listed = source(jamendo_root, subset="all").list()
    assert listed.class_names == ["genre---electronic", "genre---pop", "genre---rock", "mood/theme---happy"]
    assert listed.labels[1].tolist() == [0, 1, 1, 1]


def test_split_0_is_read_as_given_and_split_1_from_its_own_files_with_no_artist_on_two_sides(jamendo_root):
    src = source(jamendo_root)
    listed = src.list()
    for split, sizes, test_artist in [(None, (12, 3, 3), "artist_000006"), ("split-0", (12, 3, 3), "artist_000006"),
                                      ("split-1", (12, 3, 3), "artist_000001")]:
        splits = src.split(listed, split, seed=0)
        assert split_sizes(splits) == sizes
        check_split(splits, listed.files, listed.groups)  # no file and no artist on two sides
        assert {listed.groups[i] for i in splits["test"]} == {test_artist}


def test_low_quality_audio_is_the_low_mp3_beside_each_path(jamendo_root):
    listed = source(jamendo_root, low_quality=True).list()
    assert listed.files[0].endswith("01/201.low.mp3")
    assert len(listed.known_bad) == 18 and "missing: listed in the split-0 files" in next(iter(listed.known_bad.values()))
    assert track_id(listed.files[0]) == "track_0000201"


@pytest.mark.parametrize("remove, options, error", [
    ("data/splits/split-0", {}, r"^MTG-Jamendo's split-0 folder not found under data.root=\S+; fetch it with "
                                r"`python -m mgr.download dataset=mtg_jamendo root=\S+`"),
    ("data/splits/split-0/autotagging_genre-validation.tsv", {},
     r"autotagging_genre-validation.tsv is missing; fetch it with `python -m mgr.download dataset=mtg_jamendo "),
    ("data/splits/split-0/autotagging_moodtheme-train.tsv", {"subset": "moodtheme"},
     r"autotagging_moodtheme-train.tsv is missing; .* which gives <root>/data/splits/split-<n>/autotagging_moodtheme-"),
    ("audio", {}, r"^MTG-Jamendo audio \(the audio/ folder\) not found under data.root=\S+; fetch it with "
                  r"`python -m mgr.download dataset=mtg_jamendo root="),
    ("audio", {"low_quality": True}, r"dataset=mtg_jamendo_low root=\S+`, which gives .*audio/14/214\.low\.mp3"),
    ("", {"subset": "rock"}, r"subset='rock'; choose one of genre, moodtheme, instrument, top50tags, all\."),
])
def test_what_is_missing_is_named_with_how_to_get_it(jamendo_root, remove, options, error):
    import shutil

    target = jamendo_root / remove
    if remove and target.is_dir():
        shutil.rmtree(target)
    elif remove and target.exists():
        target.unlink()
    with pytest.raises(MGRError, match=error):
        source(jamendo_root, **options).list()


def test_a_split_listing_tracks_split_0_lacks_is_refused(jamendo_root):
    src = source(jamendo_root)
    listed = src.list()
    write_split(jamendo_root, "split-1", "_genre", tracks() + [("track_0000999", ARTISTS[0], "99/999.mp3", ["genre---rock"])])
    with pytest.raises(MGRError, match=r"The split-1 files list 1 tracks that split-0's do not \(first: track_0000999\)"):
        src.split(listed, "split-1", seed=0)


def test_mtg_jamendo_trains_a_step_under_task_multilabel(run_mgr, jamendo_root):
    tiny_data = [o for o in tiny("cnn", "mel") if not o.startswith("data.source_options")]
    proc = run_mgr("train", "task=multilabel", "data=mtg_jamendo", f"data.root={jamendo_root}", "recipe=none",
                   *tiny_data, "data.min_seconds=0.5", "+trainer.limit_train_batches=1", "~callbacks.plots")
    metrics = metrics_of(proc)
    assert metrics["class_names"] == ["electronic", "pop", "rock"] and metrics["task"] == "multilabel"
    assert 0 <= metrics["test/track_auc"] <= 1 and len(metrics["thresholds"]) == 3
