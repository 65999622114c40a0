"""mgr.data.sources.folder: <root>/<genre>/<file>, pre-split folders and manifests; every
mistake is one clear error."""

from __future__ import annotations

import csv
import os

import pytest

from conftest import mini_datamodule, split_sizes, write_tone
from mgr import MGRError
from mgr.data.sources import build_source
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
    with pytest.raises(MGRError, match="Line 2 of .* names .*missing.wav: does not exist; fix the path"):
        FolderSource(str(manifest)).list()
    manifest.write_bytes("path,label\nchanson/é.wav,chanson\n".encode("latin-1"))
    with pytest.raises(MGRError, match=r"^The manifest \S+ is not UTF-8 text \(invalid continuation byte\); save it"):
        FolderSource(str(manifest)).list()
    manifest.write_text(f'path,label\n"{"x" * 200_000}.wav",rock\n')
    with pytest.raises(MGRError, match=r"^Line 2 of \S+ is not CSV \(field larger than field limit"):
        FolderSource(str(manifest)).list()


def two_tones(folder):
    return [write_tone(folder / "a.wav").name, write_tone(folder / "b.wav", seed=1).name]


@pytest.mark.parametrize("outside", ["../elsewhere/c.wav", "{tmp}/elsewhere/c.wav", "linked.wav"])
def test_a_manifest_path_leading_out_of_its_folder_is_refused_unless_allowed(tmp_path, outside):
    """By `..`, an absolute path or a symlink: a manifest from someone else must not make mgr read
    (decode, cache) other files; data.allow_outside_root=true lets a trusted one."""
    music = tmp_path / "music"
    a, b = two_tones(music)
    c = write_tone(tmp_path / "elsewhere" / "c.wav", seed=2)
    (music / "linked.wav").symlink_to(c)
    manifest = music / "m.csv"
    manifest.write_text(f"path,label\n{a},rock\n{b},jazz\n{outside.format(tmp=tmp_path)},jazz\n")
    with pytest.raises(MGRError, match=rf"^Line 4 of {manifest} names {c}, outside the manifest's folder {music}; "
                                       r".*data.allow_outside_root=true if you trust the manifest.$"):
        FolderSource(str(manifest)).list()
    allowed = build_source("folder", str(manifest), {}, allow_outside_root=True).list()
    assert allowed.files[2] == str(c) and allowed.class_names == ["jazz", "rock"]
    # data.allow_outside_root reaches the source through the data module
    with pytest.raises(MGRError, match="outside the manifest's folder"):
        mini_datamodule("folder", manifest, tmp_path)
    assert len(mini_datamodule("folder", manifest, tmp_path, allow_outside_root=True).tracks.files) == 3


@pytest.mark.parametrize("line,error", [
    ("a.wav,,train", r"^Line 3 of \S+ has an empty label; give the file its genre or drop the line.$"),
    ("a.wav,rock", r"^Line 3 of \S+ has 2 field\(s\) but the header has 3 \(path,label,split\); fill in"),
    (",rock,train", r"^Line 3 of \S+ has an empty path; "),
    ("stream.wav,rock,train", r"^Line 3 of \S+ names \S+stream.wav: not a regular file \(FIFO\); "),
])
def test_a_bad_manifest_row_is_one_sentence_naming_its_line(tmp_path, line, error):
    """Not a class named '', not a traceback (a short row's missing values were None), not a hang."""
    a, b = two_tones(tmp_path)
    os.mkfifo(tmp_path / "stream.wav")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label,split\n\n{line}\n{b},jazz,test\n")  # line 2 blank: lines are counted
    with pytest.raises(MGRError, match=error):
        FolderSource(str(manifest)).list()


def test_a_manifest_with_a_byte_order_mark_is_read(tmp_path):
    """Spreadsheets save "CSV UTF-8" with a BOM, which otherwise becomes part of the first column's name."""
    a, b = two_tones(tmp_path)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label\n{a},rock\n{b},jazz\n", encoding="utf-8-sig")
    assert manifest.read_bytes().startswith(b"\xef\xbb\xbfpath")
    tracks = FolderSource(str(manifest)).list()
    assert tracks.class_names == ["jazz", "rock"] and tracks.files == [str(tmp_path / a), str(tmp_path / b)]
