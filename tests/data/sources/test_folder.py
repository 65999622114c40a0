"""mgr.data.sources.folder: <root>/<genre>/<file>, pre-split folders and manifests; every
mistake is one clear error."""

from __future__ import annotations

import csv

import pytest

from conftest import mini_datamodule, split_sizes, write_tone
from mgr import MGRError
from mgr.data.sources.folder import FolderSource


def test_folder_source_errors_are_clear(tmp_path):
    with pytest.raises(MGRError, match="needs data.root"):
        FolderSource(None).list()
    with pytest.raises(MGRError, match="does not exist"):
        FolderSource(str(tmp_path / "nope")).list()
    (tmp_path / "empty" / "rock").mkdir(parents=True)
    with pytest.raises(MGRError, match="need at least 2"):
        FolderSource(str(tmp_path / "empty")).list()


def test_presplit_folders_are_the_split(tmp_path):
    root = tmp_path / "music"
    counts = {"train": 3, "val": 1, "test": 2}
    for split, n in counts.items():
        for genre in ("jazz", "rock"):
            for i in range(n):
                write_tone(root / split / genre / f"{genre}{i}.wav", seed=i)
    dm = mini_datamodule("folder", root, tmp_path)
    assert dm.class_names == ["jazz", "rock"]
    assert split_sizes(dm.split_tracks) == (6, 2, 4)
    assert all(f"/{k}/" in dm.tracks.files[i] for k, v in dm.split_tracks.items() for i in v)
    with pytest.raises(MGRError, match="already defines its split"):
        mini_datamodule("folder", root, tmp_path, split={"train": 0.5, "val": 0.25, "test": 0.25})


def test_presplit_file_in_two_split_folders_is_an_error(tmp_path):
    root = tmp_path / "music"
    for split in ("train", "test"):
        for genre in ("jazz", "rock"):
            write_tone(root / split / genre / f"{genre}.wav")
    (root / "test" / "jazz" / "again.wav").symlink_to(root / "train" / "jazz" / "jazz.wav")
    with pytest.raises(MGRError, match=r"File \S*/train/jazz/jazz.wav is listed twice: in \S*/music/test "
                                       r"and in \S*/music/train"):
        FolderSource(str(root)).list()


@pytest.mark.parametrize("header,rows", [("path,label,split", ["a.wav,rock,train", "b.wav,jazz,train", "./a.wav,rock,test"]),
                                         ("path,label", ["a.wav,rock", "b.wav,jazz", "./a.wav,rock"])])
def test_manifest_path_listed_twice_is_an_error(tmp_path, header, rows):
    write_tone(tmp_path / "a.wav")
    write_tone(tmp_path / "b.wav", seed=1)
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join([header, *rows]) + "\n")
    with pytest.raises(MGRError, match=r"File \S*/a.wav is listed twice in \S*/m.csv \(lines 2 and 4\)"):
        FolderSource(str(manifest)).list()


def test_manifest_groups_stay_on_one_side(tmp_path):
    rows = []
    for g in range(12):  # 12 albums of 3 songs, 2 labels
        for s in range(3):
            path = write_tone(tmp_path / "audio" / f"album{g}" / f"{s}.flac", seed=g * 3 + s)
            rows.append([str(path.relative_to(tmp_path)), "pop" if g % 2 else "folk", f"album{g}"])
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "group"], *rows])
    dm = mini_datamodule("folder", manifest, tmp_path)
    assert dm.class_names == ["folk", "pop"]
    groups = dm.tracks.groups
    sides = {k: {groups[i] for i in v} for k, v in dm.split_tracks.items()}
    assert not (sides["train"] & sides["test"]) and not (sides["train"] & sides["val"])
    assert sum(split_sizes(dm.split_tracks)) == 36 and all(split_sizes(dm.split_tracks))
    # A split column that puts one album on both sides is a leak.
    with open(manifest, "w", newline="") as f:
        split_of = ["train"] * 24 + ["val"] * 6 + ["test"] * 5 + ["train"]
        csv.writer(f).writerows([["path", "label", "group", "split"], *[r + [s] for r, s in zip(rows, split_of)]])
    with pytest.raises(MGRError, match="Group album11 is in both the train and the test split"):
        mini_datamodule("folder", manifest, tmp_path)


def test_manifest_errors_are_clear(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,genre\na.wav,rock\n")
    with pytest.raises(MGRError, match="columns path,label"):
        FolderSource(str(manifest)).list()
    manifest.write_text("path,label\nmissing.wav,rock\n")
    with pytest.raises(MGRError, match="Line 2 of .* names .*missing.wav, which does not exist"):
        FolderSource(str(manifest)).list()
