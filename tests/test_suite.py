"""benchmarks/suite: the builder on tiny local .deb packages (the fetch replaced: no network), its
manifests and mgr's own folds of them, the task and system configs, the librosa reference on tiny
generated audio, and a tiny suite multirun whose mgr.report has per-task and pooled rows."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import NO_PLOTS, compose_resolved
from mgr import MGRError
from mgr.data.sources.folder import FolderSource

SUITE = Path(__file__).resolve().parents[1] / "benchmarks" / "suite"
sys.path.insert(0, str(SUITE))
import build as suite  # noqa: E402
import reference  # noqa: E402

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian)")
SR = 2000  # the builder keeps each file's own rate: a low one keeps these tracks small


def tone(seconds: float, freq: float, sr: int = SR, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    hiss = noise * np.random.default_rng(seed).standard_normal(len(t))
    return (0.3 * np.sin(2 * np.pi * freq * t) + hiss).astype(np.float32)


def make_deb(debs: Path, package: str, files: dict[str, bytes | np.ndarray]) -> Path:
    """A real .deb of `files` (paths inside the package; arrays become audio by their suffix)."""
    tree = debs.parent / f"tree-{package}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(f"Package: {package}\nVersion: 1.0-1\nArchitecture: all\n"
                                             "Maintainer: mgr tests <t@example.org>\nDescription: test soundtrack\n")
    for path, content in files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (tree / path).write_bytes(content)
        else:
            sf.write(tree / path, content, SR)
    debs.mkdir(parents=True, exist_ok=True)
    deb = debs / f"{package}_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "--build", "--root-owner-group", str(tree), str(deb)], check=True,
                   capture_output=True)
    shutil.rmtree(tree)
    return deb


MUSIC = "usr/share/games/{}/music"
TINY = (suite.Soundtrack("alpha", "mgr-test-alpha", MUSIC.format("alpha")),
        suite.Soundtrack("beta", "mgr-test-beta", MUSIC.format("beta")))
ALPHA_SECONDS = {"t0.wav": 70, "t1.flac": 65, "sub/t2.ogg": 95, "t3.wav": 62, "t4.wav": 80, "t5.wav": 61,
                 "airship_2.wav": 70, "airship_remix.wav": 66, "short31.wav": 31, "short45.wav": 45}
BETA_SECONDS = [40, 61, 75, 33, 90, 64, 50, 70]
TINY_TASKS = (suite.Task("long", ("alpha", "beta"), 60.0, 25, 0),
              suite.Task("clips", ("alpha", "beta"), 30.0, 6, 2),
              suite.Task("few", ("alpha", "beta"), 30.0, 5, 1))


def make_packages(where: Path) -> dict[str, Path]:
    music = TINY[0].music_dir
    alpha = {f"{music}/{name}": tone(s, 200 + 10 * i) for i, (name, s) in enumerate(ALPHA_SECONDS.items())}
    alpha[f"{music}/t0_copy.wav"] = alpha[f"{music}/t0.wav"]
    alpha[f"{music}/jingle.wav"] = tone(10, 300)
    alpha[f"{music}/broken.ogg"] = b"OggS not really"
    alpha["usr/share/games/alpha/sounds/effect.wav"] = tone(40, 500)
    alpha["usr/share/doc/mgr-test-alpha/copyright"] = b"Files: *\nCopyright: Alpha Composer\n"
    beta = {f"{TINY[1].music_dir}/b{i}.wav": tone(s, 700 + 20 * i, noise=0.1, seed=i) for i, s in enumerate(BETA_SECONDS)}
    beta["usr/share/doc/mgr-test-beta/copyright"] = b"Files: *\nCopyright: Beta Team\n"
    return {"mgr-test-alpha": make_deb(where, "mgr-test-alpha", alpha), "mgr-test-beta": make_deb(where, "mgr-test-beta", beta)}


def read_manifest(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["path", "label", "group"]  # no split column: mgr's folds split it
        return list(reader)


@needs_dpkg
def test_build_writes_three_tasks_whose_folds_keep_every_track_on_one_side(tmp_path, monkeypatch):
    made = make_packages(tmp_path / "made")
    fetched = []

    def fetch_deb(package, debs):  # the local package, as apt-get download would leave it
        fetched.append(package)
        debs.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(made[package], debs))

    monkeypatch.setattr(suite, "fetch_deb", fetch_deb)
    root = tmp_path / "suite"
    summaries = suite.build(root, TINY, TINY_TASKS)
    assert fetched == ["mgr-test-alpha", "mgr-test-beta"]

    record = json.loads((root / "music" / "alpha" / "tracks.json").read_text())
    reasons = {s["path"]: s["reason"] for s in record["skipped"]}
    assert reasons["t0_copy.wav"] == "identical to t0.wav"
    assert "shorter than 30 s" in reasons["jingle.wav"] and "does not decode" in reasons["broken.ogg"]
    assert (root / "music" / "alpha" / "copyright").read_text().startswith("Files: *")
    assert not list(root.rglob("effect.wav")) and not list(root.rglob(".unpack-*")) and not list(root.rglob("*.deb"))

    long, clips, few = (read_manifest(root / f"{t.name}.csv") for t in TINY_TASKS)
    # long: whole tracks of a minute or more; variants of one piece share a group
    assert sorted(r["path"] for r in long if r["label"] == "alpha") == sorted(
        f"music/alpha/{n}" for n, s in ALPHA_SECONDS.items() if s >= 60)
    groups = {r["path"]: r["group"] for r in long}
    assert groups["music/alpha/airship_2.wav"] == groups["music/alpha/airship_remix.wav"] == "alpha/airship"
    # clips: at most 6 tracks per class (the task's cap), up to 2 clips of exactly 30 s per track, grouped by track
    for label in ("alpha", "beta"):
        sources = {r["path"].rsplit(".", 2)[0] for r in clips if r["label"] == label}
        assert len(sources) == 6
    for r in clips:
        info = sf.info(str(root / r["path"]))
        assert info.frames == 30 * SR and r["path"].startswith(f"clips/{r['label']}/")
    # b4 (90 s; among the 6 tracks drawn) gives two clips, each centred in its half of the track; one group
    beta_clips = sorted(r["path"] for r in clips if r["path"].startswith("clips/beta/b4."))
    assert beta_clips == ["clips/beta/b4.0.flac", "clips/beta/b4.1.flac"]
    audio, _ = sf.read(str(root / beta_clips[1]), dtype="float32")
    b4 = tone(90, 780, noise=0.1, seed=4)
    np.testing.assert_allclose(audio, b4[int(52.5 * SR): int(82.5 * SR)], atol=1e-4)  # 16-bit WAV, then FLAC
    assert {r["group"] for r in clips if r["path"].startswith("clips/beta/b4.")} == {"beta/b4"}
    # few: one clip per track, 5 tracks per class
    assert all(r["path"].endswith(".0.flac") for r in few) and len(few) == 10
    assert [(s["task"], s["classes"], s["files"]) for s in summaries] == [
        ("long", 2, len(long)), ("clips", 2, len(clips)), ("few", 2, 10)]
    assert summaries[1]["minutes"] == pytest.approx(len(clips) / 2)

    # mgr's own folds (data.folds=5, data.split_seed 0): each group tested once, never on two sides
    for task in TINY_TASKS:
        source = FolderSource(str(root / f"{task.name}.csv"))
        tracks = source.list()
        tested = []
        for fold in range(5):
            split = source.split(tracks, None, 0, 5, fold)
            sides = [{tracks.groups[i] for i in split[s]} for s in ("train", "val", "test")]
            assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2]), (task.name, fold)
            tested += sorted(sides[2])
        assert sorted(tested) == sorted(set(tracks.groups))

    # Re-running fetches and cuts nothing, and writes the same manifests.
    before = {t.name: (root / f"{t.name}.csv").read_bytes() for t in TINY_TASKS}
    monkeypatch.setattr(suite, "fetch_deb", lambda *a: pytest.fail("fetched again"))
    monkeypatch.setattr(suite, "cut_clip", lambda *a: pytest.fail("cut again"))
    suite.build(root, TINY, TINY_TASKS)
    assert {t.name: (root / f"{t.name}.csv").read_bytes() for t in TINY_TASKS} == before


@needs_dpkg
def test_a_task_mgr_cannot_fold_stops_the_build_before_its_manifest(tmp_path, monkeypatch):
    made = make_packages(tmp_path / "made")
    monkeypatch.setattr(suite, "fetch_deb", lambda package, debs: Path(shutil.copy(made[package], debs.parent)))
    too_few = suite.Task("tiny", ("alpha", "beta"), 30.0, 4, 1)  # 4 tracks per class: no 5 folds
    with pytest.raises(MGRError, match="data.folds=5 needs at least 5 groups"):
        suite.build(tmp_path / "suite", TINY, [too_few])
    assert not (tmp_path / "suite" / "tiny.csv").exists()


def test_clips_are_30_s_apart_and_inside_the_track():
    assert suite.clip_starts(29.9, 2) == []
    assert suite.clip_starts(45.0, 2) == [7.5]  # one clip, centred
    assert suite.clip_starts(90.0, 2) == [7.5, 52.5]  # centred in each half
    for seconds in (60.0, 61.0, 200.0, 1234.5):
        starts = suite.clip_starts(seconds, 2)
        assert len(starts) == 2 and starts[0] >= 0 and starts[-1] + suite.CLIP_SECONDS <= seconds
        assert starts[1] - starts[0] >= suite.CLIP_SECONDS


def test_the_suite_uses_no_reserved_package_and_is_shaped_as_the_issue_asks():
    assert not {s.package for s in suite.SOUNDTRACKS} & suite.RESERVED
    tasks = {t.name: t for t in suite.TASKS}
    assert set(tasks) == {"long", "clips", "many"}
    assert tasks["long"].min_seconds >= 60 and tasks["long"].clips_per_track == 0
    assert tasks["clips"].tracks_per_class <= 25 and tasks["clips"].clips_per_track >= 1 and suite.CLIP_SECONDS <= 30
    assert len(tasks["many"].labels) >= 10


def test_a_reserved_package_is_refused_before_any_fetch(tmp_path, monkeypatch):
    monkeypatch.setattr(suite, "fetch_deb", lambda *a: pytest.fail("fetched"))
    reserved = suite.Soundtrack("wesnoth", "wesnoth-1.16-music", "usr/share/games/wesnoth/1.16/data/core/music")
    with pytest.raises(MGRError, match="wesnoth-1.16-music is reserved for independent checks"):
        suite.build_class(tmp_path, tmp_path / "debs", reserved, 30.0)


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get")
def test_apt_get_failure_is_one_clear_error(tmp_path):
    with pytest.raises(MGRError, match=r"apt-get download mgr-no-such-package-x failed \(.*\); the suite fetches"):
        suite.fetch_deb("mgr-no-such-package-x", tmp_path / "debs")
    assert not list((tmp_path / "debs").rglob("*.deb"))


def test_without_apt_get_the_build_says_what_it_needs(tmp_path, monkeypatch):
    monkeypatch.setattr(suite.shutil, "which", lambda name: None)
    with pytest.raises(MGRError, match="needs apt-get and dpkg-deb"):
        suite.fetch_deb("supertux-data", tmp_path)


def test_variants_of_a_piece_share_a_group():
    got = suite.pieces(["airship_2", "airship_remix", "cave", "cave_old", "forest", "forest2", "forest-cave",
                        "ingame_00", "ingame_01", "halloween_1", "track3", "track3_enhanced"])
    assert got["airship_2"] == got["airship_remix"] == "airship"
    assert got["cave_old"] == "cave" and got["forest2"] == "forest" and got["forest-cave"] == "forest-cave"
    assert got["ingame_00"] == "ingame_00" and got["ingame_01"] == "ingame_01" and got["halloween_1"] == "halloween_1"
    assert got["track3_enhanced"] == "track3"


@pytest.mark.parametrize("task", ["long", "clips", "many"])
def test_each_task_is_data_folder_with_its_manifest_and_5_folds(task):
    own = compose_resolved("train", [f"data=suite_{task}", "data.fold=3"])
    folder = compose_resolved("train", ["data=folder", f"data.root={own.data.root}", "data.folds=5", "data.fold=3"])
    assert own == folder
    assert own.data.root.endswith(f"/suite/{task}.csv")


def test_the_systems_are_the_default_scratch_and_the_classic_baseline_as_commands_give_them():
    task = ["data=suite_clips", "data.fold=0"]
    default = compose_resolved("train", [*task, "experiment=suite/default"])
    assert default == compose_resolved("train", task) == compose_resolved("train", [*task, "model=probe"])
    assert default["encoder"]["descriptors"] == "auto" and default["model"]["head"] == "select"  # fused
    classic = compose_resolved("train", [*task, "experiment=suite/classic"])
    assert classic == compose_resolved("train", [*task, "model=stats_rbf_svm", "feature=descriptors",
                                                 "data.chunk_seconds=3.0", "data.train_chunks_per_track=even"])
    scratch = compose_resolved("train", [*task, "experiment=suite/scratch"])
    assert scratch == compose_resolved("train", [*task, "model=cnn"])
    assert (scratch["feature"]["n_mels"], scratch["optimizer"]["name"], scratch["recipe"]["min_steps"]) == (64, "adamw", 1000)


def test_reference_scores_an_easy_fold(tmp_path, capsys):
    pytest.importorskip("librosa")
    sr = 22050
    with open(tmp_path / "long.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["path", "label", "group"])
        for label, freq, noise in (("low", 220.0, 0.0), ("high", 1760.0, 0.0), ("noisy", 440.0, 0.3)):
            (tmp_path / label).mkdir()
            for i in range(6):
                sf.write(tmp_path / label / f"t{i}.wav", tone(2.0, freq * (1 + 0.02 * i), sr, noise, seed=i), sr)
                out.writerow([f"{label}/t{i}.wav", label, f"{label}/t{i}"])
    assert reference.main(["--root", str(tmp_path), "--task", "long", "--fold", "1", "--clips", "1", "0"]) == 0
    printed = capsys.readouterr().out
    rows = [l for l in printed.splitlines() if l.startswith("| 1 s") or l.startswith("| whole track")]
    assert len(rows) == 4 and "3 classes" in printed  # two protocols x two feature sets
    split = FolderSource(str(tmp_path / "long.csv")).split(FolderSource(str(tmp_path / "long.csv")).list(), None, 0, 5, 1)
    assert f"{len(split['train'])}/{len(split['val'])}/{len(split['test'])} train/val/test tracks" in printed
    assert [float(r.split("|")[-3]) for r in rows] == [1.0] * 4, printed


def test_reference_without_a_build_is_one_clear_error(tmp_path, capsys):
    assert reference.main(["--root", str(tmp_path), "--task", "many", "--fold", "0"]) == 1
    assert capsys.readouterr().err.strip() == (f"mgr: error: {tmp_path / 'many.csv'} does not exist; "
                                               "run python benchmarks/suite/build.py first.")


def test_frame_features_measure_what_they_name():
    pytest.importorskip("librosa")
    sr = 22050
    frames = reference.frame_features(tone(2.0, 440.0, sr), sr)
    sizes = {name: f.shape[0] for name, f in frames.items()}
    assert sizes == {"mfcc": 20, "contrast": 7, "chroma": 12, "zcr": 1, "centroid": 1, "bandwidth": 1, "rolloff": 1}
    middle = slice(5, -5)  # away from the zero padding at the ends
    assert np.bincount(frames["chroma"][:, middle].argmax(0)).argmax() == 9  # A
    assert np.median(frames["centroid"][0, middle]) == pytest.approx(440, rel=0.05)
    assert np.median(frames["zcr"][0, middle]) == pytest.approx(2 * 440 / sr, rel=0.05)


def test_clip_statistics_describe_each_evaluation_clip_on_its_own():
    pytest.importorskip("librosa")
    sr = 22050
    wave = np.concatenate([tone(1.0, f, sr) for f in (440.0, 880.0, 1760.0)])
    stats = reference.clip_statistics(wave, sr, clip=sr)  # evaluation's starts: 0, 1 s, 2 s
    assert {name: s.shape for name, s in stats.items()} == {
        "mfcc": (3, 40), "contrast": (3, 14), "chroma": (3, 24), "zcr": (3, 2), "centroid": (3, 2),
        "bandwidth": (3, 2), "rolloff": (3, 2)}
    # no frame of a clip sees its neighbour: each clip's centroid is its own tone's
    np.testing.assert_allclose(stats["centroid"][:, 0], [440.0, 880.0, 1760.0], rtol=0.05)
    x = reference.select(stats, reference.BASE_FEATURES)
    assert x.shape == (3, 82)
    np.testing.assert_array_equal(x[:, 40], stats["centroid"][:, 0])  # means first, in feature order
    np.testing.assert_array_equal(x[:, 41:61], stats["mfcc"][:, 20:])  # then the standard deviations
    assert reference.select(stats, reference.FEATURE_SETS["+bw+rolloff"]).shape == (3, 86)
    whole = reference.clip_statistics(wave, sr, clip=0)
    assert whole["centroid"].shape == (1, 2) and 700 < whole["centroid"][0, 0] < 1400
    assert reference.clip_statistics(wave[: sr // 2], sr, clip=sr)["mfcc"].shape == (1, 40)  # padded to one clip


def write_tiny_task(path: Path, clips_per_track: int) -> None:
    """A suite manifest of tones: 2 classes x 5 tracks (groups) of 6 s, `clips_per_track` files each."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["path", "label", "group"])
        for label, freq in (("low", 220.0), ("high", 1760.0)):
            (path.parent / path.stem / label).mkdir(parents=True)
            for i in range(5):
                for k in range(clips_per_track):
                    name = f"{path.stem}/{label}/t{i}.{k}.wav"
                    sf.write(path.parent / name, tone(6.0, freq * (1 + 0.03 * i + 0.01 * k), 22050, 0.05, i), 22050)
                    out.writerow([name, label, f"{label}/t{i}"])


@pytest.mark.slow
def test_a_suite_multirun_and_its_report_have_per_task_and_pooled_rows(run_mgr, tmp_path):
    data = tmp_path / "data"
    (data / "suite").mkdir(parents=True)
    write_tiny_task(data / "suite" / "long.csv", 1)
    write_tiny_task(data / "suite" / "clips.csv", 2)
    run_mgr("train", "-m", "data=suite_long,suite_clips", "data.fold=0,1", "experiment=suite/scratch,suite/classic",
            f"paths.data_dir={data}", "trainer.max_epochs=1", "recipe.min_steps=0", "data.num_workers=0", "trainer.enable_progress_bar=false",
            *NO_PLOTS)
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    proc = run_mgr("report", f"sweep_dir={sweep}")
    assert "8 runs in 4 groups" in proc.stdout
    with open(sweep / "report.csv", newline="") as f:
        per_task = {(r["dataset"], r["other"]): r for r in csv.DictReader(f)}
    systems = ("experiment=suite/classic", "experiment=suite/scratch")
    assert set(per_task) == {(d, s) for d in ("suite_clips", "suite_long") for s in systems}
    assert {r["folds"] for r in per_task.values()} == {"2"}
    with open(sweep / "report_suite.csv", newline="") as f:
        pooled = {r["name"].split()[-1]: r for r in csv.DictReader(f)}
    assert set(pooled) == set(systems)
    for system, row in pooled.items():
        assert (row["datasets"], row["runs"]) == ("2", "4")
        tasks = [float(per_task[d, system]["pooled_track_acc"]) for d in ("suite_clips", "suite_long")]
        assert float(row["mean_over_datasets"]) == pytest.approx(np.mean(tasks))
    with open(sweep / "report_pairs.csv", newline="") as f:
        views = sorted({(r["view"], r["a"].split()[0]) for r in csv.DictReader(f)})
    assert views == [("per dataset", "dataset=suite_clips"), ("per dataset", "dataset=suite_long"),
                     ("pooled over datasets", "feature=descriptors")]
    assert "## Pooled over datasets" in (sweep / "report.md").read_text()
