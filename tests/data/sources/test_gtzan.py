"""mgr.data.sources.gtzan, its layouts rebuilt in miniature: the shipped fault-filtered lists,
the known bad clip, list mistakes as clear errors, and data=gtzan through mgr.train and mgr.eval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TONE_RATE, mini_datamodule, split_sizes, write_tone
from mgr import MGRError
from mgr.data.sources.gtzan import GENRES, GTZANSource
from mgr.data.splits import check_split


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
            write_tone(root / "genres_original" / name, seed=10 * g + k)
            lists[("train", "train", "valid", "test")[k]].append(name)
    (root / "genres_original" / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF\x00\x00")
    split_dir = tmp_path / "lists"
    split_dir.mkdir()
    for split, names in lists.items():
        (split_dir / f"{split}_filtered.txt").write_text("\n".join(names) + "\n")
    return root, split_dir


def test_gtzan_datamodule_uses_the_lists_and_reports_the_known_bad_clip(gtzan_mini, tmp_path):
    root, lists = gtzan_mini
    dm = mini_datamodule("gtzan", root, tmp_path, source_options={"split_lists": str(lists)})
    assert dm.class_names == list(GENRES)
    assert split_sizes(dm.split_tracks) == (19, 10, 10)  # 20 train minus jazz.00054
    report = dm.cache.report_path.read_text()
    assert "jazz.00054.wav\tknown bad file" in report and report.count("\n") == 2
    wave, label, _ = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)  # as the model gets it
    assert wave.shape == (4, TONE_RATE // 2) and wave.dtype == torch.float32
    random = mini_datamodule("gtzan", root, tmp_path, source_options={"split_lists": str(lists)}, split="random")
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


@pytest.mark.slow
def test_train_and_eval_on_gtzan_through_the_entry_points(gtzan_mini, tmp_path, data_dir):
    """data=gtzan end to end: the split, the report and a checkpoint mgr.eval can rebuild the data from."""
    from conftest import NO_PLOTS, TINY_FEATURE, TINY_MODEL, metrics_of, mgr_in_process

    root, lists = gtzan_mini
    overrides = ["data=gtzan", f"data.root={root}", f"data.source_options.split_lists={lists}",
                 "data.sample_rate=8000", "data.chunk_seconds=0.5", "data.min_seconds=0.5", "data.num_workers=0",
                 "data.max_bad_fraction=0.05", "data.batch_size=8", "model=cnn", *TINY_MODEL["cnn"], "feature=mel",
                 *TINY_FEATURE["mel"], "trainer.max_epochs=1", "recipe.min_steps=0", "trainer.enable_progress_bar=false", *NO_PLOTS]
    proc = mgr_in_process("train", *overrides, cwd=tmp_path, data_dir=data_dir)
    assert "Split: train 19, val 10, test 10 tracks (1 unusable left out)" in proc.stdout + proc.stderr
    metrics = metrics_of(proc)
    assert metrics["class_names"] == list(GENRES) and np.array(metrics["track_confusion"]).sum() == 10
    evaluation = mgr_in_process("eval", f"ckpt_path={metrics['best_checkpoint']}", cwd=tmp_path, data_dir=data_dir)
    assert metrics_of(evaluation)["test/track_acc"] == pytest.approx(metrics["test/track_acc"])
