"""data.folds/data.fold: stratified N-fold cross-validation over whole groups for every source,
GTZAN's folds over the fault-filtered clips, clear errors, one waveform cache for all folds, the
fold stored with the run, and `-m data.fold='range(3)'` through mgr.train."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import NO_PLOTS, tiny
from mgr import MGRError
from mgr.data import GenreDataModule
from mgr.data.sources import FMASource, TrackList, build_source
from mgr.data.sources.gtzan import GENRES, GTZANSource
from mgr.data.splits import check_split, group_folds


def every_fold(source, tracks, folds, split=None, seed=0) -> list[dict]:
    out = [source.split(tracks, split, seed, folds, k) for k in range(folds)]
    for splits in out:
        check_split(splits, tracks.files, source.leak_groups(tracks, split, folds))
    return out


def tracklist(per_class: dict[int, list[int]]) -> TrackList:
    """Tracks of classes 0, 1, ...: per class, the sizes of its groups."""
    files, labels, groups = [], [], []
    for label, sizes in per_class.items():
        for g, size in enumerate(sizes):
            for t in range(size):
                files.append(f"/music/{label}/{g}/{t}.wav")
                labels.append(label)
                groups.append(f"{label}/{g}")
    return TrackList(files, labels, [f"class_{c}" for c in per_class], groups=groups)


def test_folds_test_every_track_once_keep_groups_whole_and_are_stratified():
    tracks = tracklist({0: [3, 2, 4, 1, 2, 3, 2], 1: [5, 5, 1, 1, 2, 2, 1, 3], 2: [2] * 9})
    source = build_source("folder", "/music", {})
    folds = every_fold(source, tracks, 3)
    tested = sorted(i for f in folds for i in f["test"])
    assert tested == list(range(len(tracks.files)))  # each track in exactly one test fold
    for f in folds:
        assert sorted(f["train"] + f["val"] + f["test"]) == list(range(len(tracks.files)))
        assert {tracks.labels[i] for i in f["test"]} == {0, 1, 2} == {tracks.labels[i] for i in f["val"]}
        per_class = Counter(tracks.labels[i] for i in f["test"])
        assert per_class[2] == 6 and 4 <= per_class[0] <= 7  # class 2: 9 groups of 2, 3 per fold
        groups = lambda part: {tracks.groups[i] for i in f[part]}  # noqa: E731
        assert not groups("test") & groups("train") and not groups("val") & groups("train")
        # validation: 1 in 9 of the other folds' groups, at least one of each class
        assert len(groups("val")) == 3
    assert folds == every_fold(source, tracks, 3)  # deterministic given data.split_seed
    assert folds != every_fold(source, tracks, 3, seed=1)
    assert every_fold(source, tracks, 3, split="random") == folds  # random: the same, over all tracks


def test_folds_without_groups_are_track_folds():
    labels = [i % 2 for i in range(20)]
    parts = group_folds(labels, None, 5, seed=0)
    assert [len(p) for p in parts] == [4] * 5 and sorted(sum(parts, [])) == list(range(20))
    assert all(Counter(labels[i] for i in p) == {0: 2, 1: 2} for p in parts)


@pytest.mark.parametrize("folds,fold,split,message", [
    (3, 3, None, r"data.fold=3 is outside 0..2, the folds of data.folds=3."),
    (3, -1, None, r"data.fold=-1 is outside 0..2"),
    (None, 1, None, r"data.fold=1 needs data.folds=N, the number of folds."),
    (3, None, None, r"data.folds=3 needs data.fold=K, the test fold \(0 to 2\); python -m mgr.train -m data.fold='range\(3\)'"),
    (1, 0, None, r"data.folds must be a whole number >= 2, got 1."),
    (8, 0, None, r"data.folds=8 needs at least 8 groups \(the manifest's group column\) of every class, but class "
                 r"class_0 has 7; use data.folds=7 or fewer."),
    (3, 0, {"train": 0.5, "val": 0.5}, r"data.folds makes its own train/val/test parts; remove the data.split fractions"),
    (3, 0, "album", r"data.split='album' is not a split of data.source=folder; use one of random."),
])
def test_fold_errors_are_one_sentence(folds, fold, split, message):
    tracks = tracklist({0: [1] * 7, 1: [1] * 9})
    with pytest.raises(MGRError, match=message):
        build_source("folder", "/music", {}).split(tracks, split, 0, folds, fold)


def test_folds_of_a_folder_that_defines_its_split_are_an_error(tmp_path):
    tracks = tracklist({0: [1] * 4, 1: [1] * 4})
    tracks.given_splits = ["train"] * 8
    with pytest.raises(MGRError, match="already defines its split .*; remove data.folds and data.fold."):
        build_source("folder", str(tmp_path), {}).split(tracks, None, 0, 2, 0)


def test_fma_folds_are_mgrs_own_by_whole_artists():
    tracks = tracklist({0: [2, 1, 3, 1], 1: [1, 1, 2, 2, 1]})
    tracks.given_splits = ["train"] * len(tracks.files)
    source = FMASource("/fma")
    folds = every_fold(source, tracks, 4)
    assert sorted(i for f in folds for i in f["test"]) == list(range(len(tracks.files)))
    assert source.split(tracks, "official", 0) == {"train": list(range(len(tracks.files))), "val": [], "test": []}
    with pytest.raises(MGRError, match="needs at least 5 artists of every class, but class class_0 has 4"):
        source.split(tracks, None, 0, 5, 0)


@pytest.fixture
def gtzan(tmp_path) -> tuple[GTZANSource, TrackList]:
    """All 1000 clips as empty files; the packaged fault-filtered lists place 930 of them."""
    for genre in GENRES:
        (tmp_path / "genres" / genre).mkdir(parents=True)
        for n in range(100):
            (tmp_path / "genres" / genre / f"{genre}.{n:05d}.au").touch()
    source = GTZANSource(str(tmp_path))
    return source, source.list()


def test_gtzan_10_folds_cover_the_930_filtered_clips_in_runs_of_consecutive_clips(gtzan):
    source, tracks = gtzan
    folds = every_fold(source, tracks, 10)  # leak-checked with the runs as groups
    listed = [i for i, s in enumerate(tracks.given_splits) if s is not None]
    assert len(listed) == 930 and sorted(i for f in folds for i in f["test"]) == listed
    assert all(sorted(f["train"] + f["val"] + f["test"]) == listed for f in folds)
    for f in folds:  # every genre in every test fold, about a tenth of its clips
        per_genre = Counter(tracks.labels[i] for i in f["test"])
        assert len(per_genre) == 10 and all(5 <= n <= 14 for n in per_genre.values())
    runs = source.leak_groups(tracks, None, 10)
    for i in listed:  # a run never mixes genres, sides of the filter, or non-consecutive clips
        same = [j for j in listed if runs[j] == runs[i]]
        assert {tracks.given_splits[j] for j in same} == {tracks.given_splits[i]}
        numbers = sorted(int(Path(tracks.files[j]).stem.split(".")[1]) for j in same)
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))) and len(numbers) <= 10
    random = every_fold(source, tracks, 10, split="random")  # all 1000 clips, track folds
    assert sorted(i for f in random for i in f["test"]) == list(range(1000))
    assert source.leak_groups(tracks, "random", 10) is None


def synth_module(data_dir: Path, **kwargs) -> GenreDataModule:
    return GenreDataModule(source="synth", root=str(data_dir / "synth"), cache_dir=str(data_dir / "cache"),
                           source_options={"tracks_per_class": 6, "seconds": [2.0, 3.5]}, sample_rate=8000,
                           chunk_seconds=1.0, min_seconds=1.0, **kwargs)


def test_every_fold_uses_one_waveform_cache_and_the_fold_is_stored(data_dir, monkeypatch):
    first = synth_module(data_dir, folds=3, fold=0)
    first.prepare_data()
    first.setup()

    def no_decoding(self):
        raise AssertionError("the waveform cache was built again for another fold")

    monkeypatch.setattr("mgr.data.cache._Build.run", no_decoding)
    tested = set(first.split_tracks["test"])
    for k in (1, 2):
        other = synth_module(data_dir, folds=3, fold=k)
        other.prepare_data()
        other.setup()
        assert other.cache.directory == first.cache.directory
        assert not tested & set(other.split_tracks["test"])
        tested |= set(other.split_tracks["test"])
        assert (other.hparams.folds, other.hparams.fold) == (3, k)  # what the checkpoint stores
    assert tested == set(range(30))


@pytest.mark.slow
def test_a_fold_multirun_trains_every_fold_and_each_checkpoint_rebuilds_its_fold(run_mgr, tmp_path):
    run_mgr("train", "-m", "data.fold=range(3)", "data.folds=3", *tiny(), "debug=limit", *NO_PLOTS)
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    tested = []
    for job in ("0", "1", "2"):
        assert (sweep / job / "metrics.json").exists()
        cfg = OmegaConf.load(sweep / job / ".hydra" / "config.yaml")
        assert (cfg.data.folds, cfg.data.fold) == (3, int(job))
        ckpt = next((sweep / job).rglob("*.ckpt"))
        stored = torch.load(ckpt, map_location="cpu", weights_only=False)["datamodule_hyper_parameters"]
        assert (stored["folds"], stored["fold"]) == (3, int(job))
        rebuilt = GenreDataModule(**stored)
        rebuilt.setup()
        tested.append(set(rebuilt.split_tracks["test"]))
    assert not (tested[0] & tested[1] or tested[0] & tested[2] or tested[1] & tested[2])
    assert len(set.union(*tested)) == 30  # 5 classes x 6 tracks of tiny()
