"""mgr.data.sources.mtat, rebuilt in miniature: annotations_final.csv (tab-separated, every field quoted,
CRLF lines: clip_id, tags, mp3_path), the top-k tags as multi-hot rows, the folder split (0-b train, c validation,
d-f test), songs as groups, the missing-file errors, and a training step under task=multilabel."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import metrics_of, split_sizes, tiny, write_tone
from mgr import MGRError
from mgr.data.sources import build_source
from mgr.data.sources.mtat import song_of
from mgr.data.splits import check_split

# The file's tag columns in their order; tag counts below: guitar, rock, piano 6 each, no vocals 2, choir 1.
COLUMNS = ["no vocals", "guitar", "choir", "rock", "piano"]
# A song per folder, two clips each: the first clip guitar and rock, the second piano.
FOLDERS = ["0", "1", "b", "c", "d", "f"]


def clips() -> list[tuple[str, set[str]]]:
    """(mp3_path, tags) of 12 clips named as the dataset names them."""
    out = []
    for n, folder in enumerate(FOLDERS):
        song = f"{folder}/artist_{n}-album_{n}-01-song_{n}"
        first, second = {"guitar", "rock"}, {"piano"}
        if n == 0:
            first.add("choir")
        if n < 2:
            second.add("no vocals")
        out += [(f"{song}-0-29.mp3", first), (f"{song}-30-59.mp3", second)]
    return out


def write_annotations(root: Path, header: list[str] | None = None) -> None:
    header = header or ["clip_id", *COLUMNS, "mp3_path"]
    lines = ["\t".join(f'"{h}"' for h in header)]
    for clip_id, (path, tags) in enumerate(clips(), start=2):
        lines.append("\t".join(f'"{v}"' for v in [clip_id, *(int(t in tags) for t in COLUMNS), path]))
    (root / "annotations_final.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode())  # CRLF, as published


@pytest.fixture
def mtat_root(tmp_path) -> Path:
    root = tmp_path / "mtat"
    root.mkdir()
    write_annotations(root)
    for n, (path, _) in enumerate(clips()):
        write_tone(root / path, seconds=1.2, seed=n, format="MP3")
    return root


def source(root: Path, **options):
    return build_source("mtat", str(root), options)


def test_the_top_tags_become_multi_hot_rows(mtat_root):
    listed = source(mtat_root, top_k=4).list()
    assert listed.class_names == ["guitar", "no vocals", "piano", "rock"] and listed.multilabel
    assert listed.labels.dtype == np.float32 and listed.labels.shape == (12, 4)
    assert listed.labels[:4].tolist() == [[1, 0, 0, 1], [0, 1, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0]]
    assert listed.files[0] == str((mtat_root / "0" / "artist_0-album_0-01-song_0-0-29.mp3").resolve())
    assert not listed.known_bad


def test_top_k_takes_the_most_tagged_ties_in_the_file_order(mtat_root):
    assert source(mtat_root, top_k=2).list().class_names == ["guitar", "rock"]  # piano ties, later column
    assert source(mtat_root, top_k=5).list().class_names == sorted(COLUMNS)
    assert source(mtat_root).top_k == 50


def test_clips_of_one_song_share_its_group():
    assert song_of("f/american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-30-59.mp3") == \
        "american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria"


def test_the_folder_split_is_0_to_b_train_c_validation_d_to_f_test(mtat_root):
    src = source(mtat_root, top_k=3)
    listed = src.list()
    for split in (None, "folders"):
        splits = src.split(listed, split, seed=0)
        assert split_sizes(splits) == (6, 2, 4)
        assert {Path(listed.files[i]).parent.name for i in splits["val"]} == {"c"}
        assert {Path(listed.files[i]).parent.name for i in splits["test"]} == {"d", "f"}


def test_random_splits_and_folds_keep_a_song_whole(mtat_root):
    src = source(mtat_root, top_k=3)
    listed = src.list()
    songs = [Path(f).name.rsplit("-", 2)[0] for f in listed.files]
    assert listed.groups == songs
    for seed in range(5):  # with 6 songs of 2 clips, a split by clip would part some song
        for splits in (src.split(listed, "random", seed=seed), src.split(listed, "random", seed=seed, folds=3, fold=0)):
            check_split(splits, listed.files, songs)  # no song on two sides
    assert src.leak_groups(listed, "random") == listed.groups and src.leak_groups(listed, "folders") is None


def test_audio_under_mp3_is_found_and_a_missing_clip_is_reported(mtat_root):
    (mtat_root / "mp3").mkdir()
    for folder in FOLDERS:
        shutil.move(mtat_root / folder, mtat_root / "mp3" / folder)
    (mtat_root / "mp3" / clips()[0][0]).unlink()
    listed = source(mtat_root, top_k=3).list()
    assert listed.files[1] == str((mtat_root / "mp3" / clips()[1][0]).resolve())
    assert list(listed.known_bad) == [listed.files[0]]
    assert "missing: listed in annotations_final.csv" in listed.known_bad[listed.files[0]]


@pytest.mark.parametrize("remove, options, error", [
    ("annotations_final.csv", {}, r"^MagnaTagATune's annotations_final.csv not found under data.root=\S+; fetch it "
                                  r"with `python -m mgr.download dataset=mtat root="),
    ("folders", {"top_k": 3}, r"^MagnaTagATune audio \(folders 0-9, a-f of mp3.zip\) not found under data.root=\S+; "
                              r".*which gives <root>/annotations_final.csv and <root>/<folder>/<clip>.mp3"),
    ("", {}, r"top_k=50 but annotations_final.csv has 5 tags; choose at most 5\."),
    ("", {"top_k": 0}, r"top_k=0; give a positive number of tags"),
])
def test_what_is_missing_is_named_with_how_to_get_it(mtat_root, remove, options, error):
    if remove == "folders":
        for folder in FOLDERS:
            shutil.rmtree(mtat_root / folder)
    elif remove:
        (mtat_root / remove).unlink()
    with pytest.raises(MGRError, match=error):
        source(mtat_root, **options).list()


def test_an_annotation_file_without_its_header_is_refused(mtat_root):
    write_annotations(mtat_root, header=["id", *COLUMNS, "path"])
    with pytest.raises(MGRError, match=r"does not have the tab-separated header clip_id, <tags>, mp3_path"):
        source(mtat_root, top_k=3).list()


def test_mtat_trains_a_step_under_task_multilabel(run_mgr, mtat_root):
    tiny_data = [o for o in tiny("cnn", "mel") if not o.startswith("data.source_options")]
    proc = run_mgr("train", "task=multilabel", "data=mtat", f"data.root={mtat_root}", "recipe=none",
                   "data.source_options.top_k=3", *tiny_data, "data.min_seconds=0.5",
                   "+trainer.limit_train_batches=1", "~callbacks.plots")
    metrics = metrics_of(proc)
    assert metrics["class_names"] == ["guitar", "piano", "rock"] and metrics["task"] == "multilabel"
    assert 0 <= metrics["test/track_auc"] <= 1 and len(metrics["thresholds"]) == 3
