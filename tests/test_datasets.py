"""The real datasets' layouts, rebuilt in miniature from generated audio:
labels, split sizes, disjointness and the bad-file report."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mgr import MGRError
from mgr.data import GenreDataModule
from mgr.data.sources.artist20 import Artist20Source
from mgr.data.sources.fma import FMASource, read_tracks_csv
from mgr.data.sources.folder import FolderSource
from mgr.data.sources.gtzan import GENRES, GTZANSource, packaged_lists
from mgr.data.splits import check_split

RATE = 8000


def tone(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def write(path: Path, seconds: float = 1.2, seed: int = 0, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, seed), RATE, **kwargs)
    return path


def datamodule(source: str, root: Path, tmp_path: Path, **kwargs) -> GenreDataModule:
    defaults = dict(cache_dir=str(tmp_path / "cache"), sample_rate=RATE, chunk_seconds=0.5, min_seconds=0.5,
                    batch_size=4, num_workers=0)
    dm = GenreDataModule(source=source, root=str(root), **{**defaults, **kwargs})
    dm.prepare_data()
    dm.setup()
    return dm


def split_sizes(splits: dict) -> tuple[int, int, int]:
    return tuple(len(splits[k]) for k in ("train", "val", "test"))


# GTZAN -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout,ext", [("Data/genres_original", "wav"), ("genres", "au")])
def test_gtzan_shipped_lists_give_the_fault_filtered_split(tmp_path, layout, ext):
    """All 1000 clips as (empty) files, Kaggle copy or original tarball: the packaged lists place 930."""
    for genre in GENRES:
        (tmp_path / layout / genre).mkdir(parents=True)
        for n in range(100):
            (tmp_path / layout / genre / f"{genre}.{n:05d}.{ext}").touch()
    source = GTZANSource(str(tmp_path))
    tracks = source.list()
    assert len(tracks.files) == 1000 and tracks.class_names == list(GENRES)
    assert all(Path(f).name.startswith(GENRES[label] + ".") for f, label in zip(tracks.files, tracks.labels))
    filtered = source.split(tracks, "filtered", seed=0)
    assert split_sizes(filtered) == (443, 197, 290)
    check_split(filtered, tracks.files)
    if ext == "wav":  # only the Kaggle copy's jazz.00054 is broken
        assert [Path(f).name for f in tracks.known_bad] == ["jazz.00054.wav"]
        assert tracks.files.index(next(iter(tracks.known_bad))) in filtered["train"]
    else:
        assert not tracks.known_bad
    random = source.split(tracks, "random", seed=0)
    assert split_sizes(random) == (800, 100, 100)
    assert random != filtered
    with pytest.raises(MGRError, match="is not a split of data.source=gtzan"):
        source.split(tracks, "album", seed=0)


@pytest.fixture
def gtzan_mini(tmp_path) -> tuple[Path, Path]:
    """4 clips per genre in genres_original/, jazz.00054.wav broken, lists restricted to them."""
    root = tmp_path / "gtzan"
    lists = {"train": [], "valid": [], "test": []}
    for g, genre in enumerate(GENRES):
        numbers = [54, 55, 56, 57] if genre == "jazz" else [0, 1, 2, 3]
        for k, n in enumerate(numbers):
            name = f"{genre}/{genre}.{n:05d}.wav"
            write(root / "genres_original" / name, seed=10 * g + k)
            lists[("train", "train", "valid", "test")[k]].append(name)
    (root / "genres_original" / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF\x00\x00")
    split_dir = tmp_path / "lists"
    split_dir.mkdir()
    for split, names in lists.items():
        (split_dir / f"{split}_filtered.txt").write_text("\n".join(names) + "\n")
    return root, split_dir


def test_gtzan_datamodule_uses_the_lists_and_reports_the_known_bad_clip(gtzan_mini, tmp_path):
    root, lists = gtzan_mini
    dm = datamodule("gtzan", root, tmp_path, source_options={"split_lists": str(lists)})
    assert dm.class_names == list(GENRES)
    assert split_sizes(dm.split_tracks) == (19, 10, 10)  # 20 train minus jazz.00054
    report = dm.cache.report_path.read_text()
    assert "jazz.00054.wav\tknown bad file" in report and report.count("\n") == 2
    wave, label, _ = next(iter(dm.train_dataloader()))
    assert wave.shape == (4, RATE // 2)
    random = datamodule("gtzan", root, tmp_path, source_options={"split_lists": str(lists)}, split="random")
    assert sum(split_sizes(random.split_tracks)) == 39


def test_gtzan_with_a_clip_of_the_lists_missing_says_so(gtzan_mini):
    root, lists = gtzan_mini
    (root / "genres_original" / "rock" / "rock.00003.wav").unlink()
    with pytest.raises(MGRError, match=r"1 clip\(s\) of the fault-filtered split are missing.*rock.00003"):
        GTZANSource(str(root), split_lists=str(lists)).list()


def test_gtzan_clip_in_two_split_lists_is_an_error(gtzan_mini):
    """A train clip appended to the test list moved to test without a word; now it names both lists."""
    root, lists = gtzan_mini
    test_list = (lists / "test_filtered.txt").read_text()
    (lists / "test_filtered.txt").write_text(test_list + "blues/blues.00000.wav\n")
    with pytest.raises(MGRError, match=r"Clip blues/blues.00000 is listed twice: line 1 of \S*/train_filtered.txt "
                                       r"and line 11 of \S*/test_filtered.txt; .*remove one of the two"):
        GTZANSource(str(root), split_lists=str(lists)).list()
    (lists / "test_filtered.txt").write_text(test_list + "rock/rock.00003.wav\n")  # twice in one list
    with pytest.raises(MGRError, match=r"Clip rock/rock.00003 is listed twice in \S*/test_filtered.txt \(lines 10 and 11\)"):
        GTZANSource(str(root), split_lists=str(lists)).list()


def test_gtzan_split_lists_folder_without_a_list_or_with_a_clip_twice_on_disk(gtzan_mini):
    root, lists = gtzan_mini
    (lists / "valid_filtered.txt").unlink()
    with pytest.raises(MGRError, match=r"data.source_options.split_lists=\S+ has no valid_filtered.txt"):
        GTZANSource(str(root), split_lists=str(lists)).list()
    (root / "genres_original" / "pop" / "pop.00001.au").write_bytes(b"")  # a second copy of pop.00001.wav
    with pytest.raises(MGRError, match=r"GTZAN clip pop/pop.00001 is there twice: pop.00001.au and pop.00001.wav"):
        GTZANSource(str(root)).list()


def test_missing_dataset_names_the_download_command(tmp_path, data_dir):
    with pytest.raises(MGRError, match="python -m mgr.data.download dataset=gtzan root="):
        GenreDataModule(source="gtzan", root=str(tmp_path / "nope"), cache_dir=str(tmp_path)).prepare_data()
    with pytest.raises(MGRError, match="python -m mgr.data.download dataset=fma_metadata root="):
        GenreDataModule(source="fma", root=str(tmp_path), cache_dir=str(tmp_path)).prepare_data()
    proc = subprocess.run([sys.executable, "-m", "mgr.train", "data=fma_small", f"data.root={tmp_path / 'fma'}",
                           f"paths.data_dir={data_dir}", f"paths.log_dir={tmp_path / 'logs'}"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 1
    assert "mgr: error: FMA metadata not found" in proc.stderr and "download dataset=fma_metadata" in proc.stderr
    assert "Traceback" not in proc.stderr


# FMA ---------------------------------------------------------------------------------------------

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
                    write(path, seconds=0.3 if tid in SHORT_FMA_CLIPS else 1.2, seed=tid, format="MP3")
    return root


def artist_of(file: str) -> int:
    return {t[0]: t[4] for t in FMA_TRACKS}[int(Path(file).stem)]


def test_fma_tracks_csv_with_two_header_rows(fma_root):
    rows = read_tracks_csv(fma_root / "fma_metadata" / "tracks.csv")
    assert [r["track_id"] for r in rows] == [str(t[0]) for t in FMA_TRACKS]
    assert {k: rows[0][k] for k in ("track_id", "genre_top", "split", "subset", "artist_id")} == \
        {"track_id": "2", "genre_top": "Hip-Hop", "split": "training", "subset": "small", "artist_id": "1"}


def test_fma_small_official_split_and_known_bad_files(fma_root, tmp_path):
    dm = datamodule("fma", fma_root, tmp_path, source_options={"size": "small"}, max_bad_fraction=0.2)
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
    dm = datamodule("fma", fma_root, tmp_path, source_options={"size": "medium"}, max_bad_fraction=0.2)
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
        datamodule("fma", fma_root, tmp_path, source_options={"size": "small"}, max_bad_fraction=0.2)


def test_fma_track_listed_twice_in_tracks_csv_is_an_error(fma_root):
    write_tracks_csv(fma_root / "fma_metadata" / "tracks.csv", [*FMA_TRACKS, (2, "Hip-Hop", "test", "small", 1)])
    last = 4 + 2 * len(FMA_TRACKS)  # 3 header lines; every row spans 2 lines
    with pytest.raises(MGRError, match=rf"Track 2 is listed twice in \S*tracks.csv \(lines 4 and {last}\)"):
        FMASource(str(fma_root)).list()


# artist20 ----------------------------------------------------------------------------------------


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


# folder variants ---------------------------------------------------------------------------------


def test_presplit_folders_are_the_split(tmp_path):
    root = tmp_path / "music"
    counts = {"train": 3, "val": 1, "test": 2}
    for split, n in counts.items():
        for genre in ("jazz", "rock"):
            for i in range(n):
                write(root / split / genre / f"{genre}{i}.wav", seed=i)
    dm = datamodule("folder", root, tmp_path)
    assert dm.class_names == ["jazz", "rock"]
    assert split_sizes(dm.split_tracks) == (6, 2, 4)
    assert all(f"/{k}/" in dm.tracks.files[i] for k, v in dm.split_tracks.items() for i in v)
    with pytest.raises(MGRError, match="already defines its split"):
        datamodule("folder", root, tmp_path, split={"train": 0.5, "val": 0.25, "test": 0.25})


def test_presplit_file_in_two_split_folders_is_an_error(tmp_path):
    root = tmp_path / "music"
    for split in ("train", "test"):
        for genre in ("jazz", "rock"):
            write(root / split / genre / f"{genre}.wav")
    (root / "test" / "jazz" / "again.wav").symlink_to(root / "train" / "jazz" / "jazz.wav")
    with pytest.raises(MGRError, match=r"File \S*/train/jazz/jazz.wav is listed twice: in \S*/music/test "
                                       r"and in \S*/music/train"):
        FolderSource(str(root)).list()


@pytest.mark.parametrize("header,rows", [("path,label,split", ["a.wav,rock,train", "b.wav,jazz,train", "./a.wav,rock,test"]),
                                         ("path,label", ["a.wav,rock", "b.wav,jazz", "./a.wav,rock"])])
def test_manifest_path_listed_twice_is_an_error(tmp_path, header, rows):
    write(tmp_path / "a.wav")
    write(tmp_path / "b.wav", seed=1)
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join([header, *rows]) + "\n")
    with pytest.raises(MGRError, match=r"File \S*/a.wav is listed twice in \S*/m.csv \(lines 2 and 4\)"):
        FolderSource(str(manifest)).list()


def test_manifest_groups_stay_on_one_side(tmp_path):
    rows = []
    for g in range(12):  # 12 albums of 3 songs, 2 labels
        for s in range(3):
            path = write(tmp_path / "audio" / f"album{g}" / f"{s}.flac", seed=g * 3 + s)
            rows.append([str(path.relative_to(tmp_path)), "pop" if g % 2 else "folk", f"album{g}"])
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "group"], *rows])
    dm = datamodule("folder", manifest, tmp_path)
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
        datamodule("folder", manifest, tmp_path)


def test_manifest_errors_are_clear(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,genre\na.wav,rock\n")
    with pytest.raises(MGRError, match="columns path,label"):
        FolderSource(str(manifest)).list()
    manifest.write_text("path,label\nmissing.wav,rock\n")
    with pytest.raises(MGRError, match="Line 2 of .* names .*missing.wav, which does not exist"):
        FolderSource(str(manifest)).list()


def test_train_and_eval_on_gtzan_through_the_entry_points(gtzan_mini, tmp_path, data_dir):
    """data=gtzan end to end: the split, the report and a checkpoint mgr.eval can rebuild the data from."""
    from conftest import TINY_FEATURE, TINY_MODEL, metrics_of, mgr_command

    root, lists = gtzan_mini
    overrides = ["data=gtzan", f"data.root={root}", f"data.source_options.split_lists={lists}",
                 "data.sample_rate=8000", "data.chunk_seconds=0.5", "data.min_seconds=0.5", "data.num_workers=0",
                 "data.max_bad_fraction=0.05", "data.batch_size=8", "model=cnn", *TINY_MODEL["cnn"], "feature=mel",
                 *TINY_FEATURE["mel"], "trainer.max_epochs=1", "trainer.enable_progress_bar=false"]
    proc = mgr_command("train", *overrides, cwd=tmp_path, data_dir=data_dir)
    assert "Split: train 19, val 10, test 10 tracks (1 unusable left out)" in proc.stdout + proc.stderr
    metrics = metrics_of(proc)
    assert metrics["class_names"] == list(GENRES) and np.array(metrics["track_confusion"]).sum() == 10
    evaluation = mgr_command("eval", f"ckpt_path={metrics['best_checkpoint']}", cwd=tmp_path, data_dir=data_dir)
    assert metrics_of(evaluation)["test/track_acc"] == pytest.approx(metrics["test/track_acc"])
