"""benchmarks/realmusic.py: the build on tiny local .deb packages (no download), the manifest and
its split, the librosa reference's features and SVM on tiny generated audio, and `run`'s table,
resumption and errors (with tiny mgr.train runs)."""

from __future__ import annotations

import csv
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import tiny
from mgr import MGRError
from mgr.data.sources.folder import FolderSource
from mgr.data.splits import check_split

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "realmusic.py"
spec = importlib.util.spec_from_file_location("realmusic", SCRIPT)
realmusic = importlib.util.module_from_spec(spec)
sys.modules["realmusic"] = realmusic  # dataclasses look their module up there
spec.loader.exec_module(realmusic)

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian)")
SR = 8000


def tone(seconds: float, freq: float, sr: int = SR, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    hiss = noise * np.random.default_rng(seed).standard_normal(len(t))
    return (0.3 * np.sin(2 * np.pi * freq * t) + hiss).astype(np.float32)


def make_deb(debs: Path, package: str, files: dict[str, bytes | np.ndarray]) -> None:
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
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(debs / f"{package}_1.0-1_all.deb")],
                   check=True, capture_output=True)
    shutil.rmtree(tree)


MUSIC = "usr/share/games/{}/music"
TINY = (realmusic.Soundtrack("alpha", "mgr-test-alpha", MUSIC.format("alpha")),
        realmusic.Soundtrack("beta", "mgr-test-beta", MUSIC.format("beta")))


def make_packages(root: Path) -> None:
    alpha = {f"{TINY[0].music_dir}/{name}": tone(1.5, 200 + 50 * i) for i, name in
             enumerate(["one.wav", "two.flac", "sub/three.ogg", "four.wav", "airship_2.wav", "airship_remix.wav"])}
    alpha[f"{TINY[0].music_dir}/one_copy.wav"] = alpha[f"{TINY[0].music_dir}/one.wav"]
    alpha[f"{TINY[0].music_dir}/jingle.wav"] = tone(0.5, 300)
    alpha[f"{TINY[0].music_dir}/broken.ogg"] = b"OggS not really"
    alpha["usr/share/games/alpha/sounds/effect.wav"] = tone(2.0, 500)
    alpha["usr/share/doc/mgr-test-alpha/copyright"] = b"Files: *\nCopyright: Alpha Composer\n"
    beta = {f"{TINY[1].music_dir}/b{i}.wav": tone(1.5, 900 + 40 * i, noise=0.1, seed=i) for i in range(5)}
    beta["usr/share/doc/mgr-test-beta/copyright"] = b"Files: *\nCopyright: Beta Team\n"
    make_deb(root / "debs", "mgr-test-alpha", alpha)
    make_deb(root / "debs", "mgr-test-beta", beta)


@needs_dpkg
def test_build_writes_a_manifest_mgr_reads_split_by_piece(tmp_path, monkeypatch):
    root = tmp_path / "bench"
    make_packages(root)
    manifest = realmusic.build(root, TINY, min_seconds=1.0)

    with open(manifest, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["path", "label", "split", "group"]
        rows = list(reader)
    assert sorted(r["path"] for r in rows) == sorted(
        ["alpha/one.wav", "alpha/two.flac", "alpha/sub/three.ogg", "alpha/four.wav", "alpha/airship_2.wav",
         "alpha/airship_remix.wav"] + [f"beta/b{i}.wav" for i in range(5)])
    assert all((root / r["path"]).is_file() and r["path"].split("/")[0] == r["label"] for r in rows)
    groups = {r["path"]: r["group"] for r in rows}
    assert groups["alpha/airship_2.wav"] == groups["alpha/airship_remix.wav"] == "alpha/airship"
    assert groups["alpha/one.wav"] == "alpha/one"
    # 60/20/20 of each class's five pieces, whole pieces
    for label in ("alpha", "beta"):
        mine = [r for r in rows if r["label"] == label]
        assert [len({r["group"] for r in mine if r["split"] == s}) for s in ("train", "val", "test")] == [3, 1, 1]
    # mgr's folder source accepts it and finds no leak
    source = FolderSource(str(manifest))
    tracks = source.list()
    splits = source.split(tracks, None, 0)
    check_split(splits, tracks.files, tracks.groups)
    assert tracks.class_names == ["alpha", "beta"]

    record = realmusic.json.loads((root / "alpha" / "tracks.json").read_text())
    reasons = {s["path"]: s["reason"] for s in record["skipped"]}
    assert reasons["one_copy.wav"] == "identical to one.wav"
    assert "shorter than 1 s" in reasons["jingle.wav"] and "does not decode" in reasons["broken.ogg"]
    assert (root / "alpha" / "copyright").read_text().startswith("Files: *")
    assert not list(root.rglob("effect.wav")) and not list(root.glob(".unpack-*")) and not list(root.glob("debs/*.deb"))

    # Re-running fetches nothing (the .debs are gone: downloading these names would fail), same manifest.
    first = manifest.read_bytes()
    assert realmusic.build(root, TINY, min_seconds=1.0).read_bytes() == first
    # The split does not depend on the order the file system lists files in.
    other = tmp_path / "other"
    make_packages(other)
    rglob = Path.rglob
    monkeypatch.setattr(Path, "rglob", lambda self, pattern: reversed(list(rglob(self, pattern))))
    assert realmusic.build(other, TINY, min_seconds=1.0).read_bytes() == first


@needs_dpkg
def test_an_interrupted_unpack_is_redone(tmp_path):
    root = tmp_path / "bench"
    make_packages(root)
    (root / ".unpack-alpha" / "junk").mkdir(parents=True)  # left by a run stopped mid-unpack
    (root / "alpha").mkdir()
    (root / "alpha" / "half_moved.wav").write_bytes(b"")  # and a class folder without tracks.json
    realmusic.build(root, TINY, min_seconds=1.0)
    assert not (root / "alpha" / "half_moved.wav").exists() and not (root / ".unpack-alpha").exists()
    assert len(realmusic.json.loads((root / "alpha" / "tracks.json").read_text())["tracks"]) == 6


@needs_dpkg
def test_a_package_without_its_music_folder_is_one_clear_error(tmp_path):
    make_deb(tmp_path / "debs", "mgr-test-gamma", {"usr/share/games/gamma/sfx/a.wav": tone(1.5, 300),
                                                   "usr/share/doc/mgr-test-gamma/copyright": b"Files: *\n"})
    moved = realmusic.Soundtrack("gamma", "mgr-test-gamma", "usr/share/games/gamma/music")
    with pytest.raises(MGRError, match=r"Cannot unpack usr/share/games/gamma/music, .* \(tar: .*Not found in archive"):
        realmusic.build(tmp_path, [moved], min_seconds=1.0)
    assert not (tmp_path / "gamma" / "tracks.json").exists()


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get")
def test_apt_get_failure_is_one_clear_error(tmp_path):
    with pytest.raises(MGRError, match=r"apt-get download mgr-no-such-package-x failed \(.*\); the benchmark fetches"):
        realmusic.fetch_deb("mgr-no-such-package-x", tmp_path / "debs")
    assert not list((tmp_path / "debs").rglob("*.deb"))


def test_without_apt_get_the_build_says_what_it_needs(tmp_path, monkeypatch):
    monkeypatch.setattr(realmusic.shutil, "which", lambda name: None)
    with pytest.raises(MGRError, match="needs apt-get and dpkg-deb"):
        realmusic.fetch_deb("supertux-data", tmp_path)


def test_variants_of_a_piece_share_a_group():
    got = realmusic.pieces(["airship_2", "airship_remix", "cave", "cave_old", "forest", "forest2", "forest-cave",
                            "ingame_00", "ingame_01", "halloween_1", "track3", "track3_enhanced"])
    assert got["airship_2"] == got["airship_remix"] == "airship"
    assert got["cave_old"] == "cave" and got["forest2"] == "forest" and got["forest-cave"] == "forest-cave"
    assert got["ingame_00"] == "ingame_00" and got["ingame_01"] == "ingame_01" and got["halloween_1"] == "halloween_1"
    assert got["track3_enhanced"] == "track3"


def test_frame_features_measure_what_they_name():
    pytest.importorskip("librosa")
    sr = 22050
    frames = realmusic.frame_features(tone(2.0, 440.0, sr), sr)
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
    stats = realmusic.clip_statistics(wave, sr, clip=sr)  # evaluation's starts: 0, 1 s, 2 s
    assert {name: s.shape for name, s in stats.items()} == {
        "mfcc": (3, 40), "contrast": (3, 14), "chroma": (3, 24), "zcr": (3, 2), "centroid": (3, 2),
        "bandwidth": (3, 2), "rolloff": (3, 2)}
    # no frame of a clip sees its neighbour: each clip's centroid is its own tone's
    np.testing.assert_allclose(stats["centroid"][:, 0], [440.0, 880.0, 1760.0], rtol=0.05)
    x = realmusic.select(stats, realmusic.BASE_FEATURES)
    assert x.shape == (3, 82)
    np.testing.assert_array_equal(x[:, 40], stats["centroid"][:, 0])  # means first, in feature order
    np.testing.assert_array_equal(x[:, 41:61], stats["mfcc"][:, 20:])  # then the standard deviations
    assert realmusic.select(stats, realmusic.FEATURE_SETS["+bw+rolloff"]).shape == (3, 86)
    whole = realmusic.clip_statistics(wave, sr, clip=0)
    assert whole["centroid"].shape == (1, 2) and 700 < whole["centroid"][0, 0] < 1400
    assert realmusic.clip_statistics(wave[: sr // 2], sr, clip=sr)["mfcc"].shape == (1, 40)  # padded to one clip


def test_reference_command_scores_an_easy_task(tmp_path, capsys):
    pytest.importorskip("librosa")
    sr = 22050
    records = {}
    for label, freq, noise in (("low", 220.0, 0.0), ("high", 1760.0, 0.0), ("noisy", 440.0, 0.3)):
        (tmp_path / label).mkdir()
        for i in range(5):
            sf.write(tmp_path / label / f"t{i}.wav", tone(2.0, freq * (1 + 0.02 * i), sr, noise, seed=i), sr)
        records[label] = {"tracks": [{"path": f"t{i}.wav", "group": f"t{i}"} for i in range(5)]}
    realmusic.write_manifest(tmp_path, records)
    assert realmusic.main(["reference", "--root", str(tmp_path), "--clips", "1", "0"]) == 0
    out = capsys.readouterr().out
    rows = [l for l in out.splitlines() if l.startswith("| 1 s") or l.startswith("| whole track")]
    assert len(rows) == 4  # two protocols x two feature sets
    assert "3 classes, 9/3/3 train/val/test tracks" in out and "wall time:" in out
    track_acc = [float(r.split("|")[-3]) for r in rows]
    assert track_acc == [1.0] * 4, out
    dims = sorted({int(r.split("|")[3]) for r in rows})
    assert dims == [82, 86]


def test_reference_without_a_build_is_one_clear_error(tmp_path, capsys):
    assert realmusic.main(["reference", "--root", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == (f"mgr: error: {tmp_path / 'manifest.csv'} does not exist; "
                                   "run python benchmarks/realmusic.py build first.")


def test_the_table_gives_mean_and_sample_std_over_seeds():
    runs = [{"seed": s, "test/acc": a, "test/f1": 0.5, "test/track_acc": t, "test/track_f1": 0.25, "wall_seconds": w}
            for s, a, t, w in ((0, 0.6, 0.7, 100.0), (1, 0.8, 0.9, 200.0), (2, 0.7, 0.8, 300.0))]
    table = realmusic.results_table({"two": {"description": "two seeds", "runs": runs[:2]},
                                     "one": {"description": "one seed", "runs": runs[2:]}}).splitlines()
    assert table[0] == ("| system | what | test clip acc | test clip F1 | test track acc | test track F1 | seeds "
                        "| wall s/run |")
    # std over two seeds with ddof=1: |0.8 - 0.6| / sqrt(2)
    assert table[2] == "| two | two seeds | 0.700 ± 0.141 | 0.500 ± 0.000 | 0.800 ± 0.141 | 0.250 ± 0.000 | 2 | 150 |"
    assert table[3] == "| one | one seed | 0.700 | 0.500 | 0.800 | 0.250 | 1 | 300 |"


def test_run_rejects_an_unknown_system_by_listing_the_choices(tmp_path, capsys):
    assert realmusic.main(["run", "--root", str(tmp_path), "--systems", "default", "crnn"]) == 1
    assert capsys.readouterr().err.strip() == ("mgr: error: No system named crnn; --systems chooses from "
                                               f"{', '.join(realmusic.SYSTEMS)}.")
    assert not list(tmp_path.iterdir())


def test_run_without_a_build_is_one_clear_error(tmp_path, capsys):
    assert realmusic.main(["run", "--root", str(tmp_path)]) == 1
    assert "manifest.csv does not exist; run python benchmarks/realmusic.py build first." in capsys.readouterr().err


def test_the_reference_row_is_its_base_features_at_3_s_computed_once(tmp_path, monkeypatch):
    calls = []

    def reference(manifest, clips):
        calls.append(clips)
        return [{"clips": "3 s", "features": name, "test_clip_acc": acc, "test_clip_f1": 0.5, "test_track_acc": 0.75,
                 "test_track_f1": 0.25} for name, acc in (("base", 0.625), ("+bw+rolloff", 0.875))]

    monkeypatch.setattr(realmusic, "reference", reference)
    saved = tmp_path / "reference" / "run.json"
    first = realmusic.reference_run(tmp_path / "manifest.csv", saved)
    assert {k: first[k] for k in realmusic.METRICS} == {"test/acc": 0.625, "test/f1": 0.5, "test/track_acc": 0.75,
                                                       "test/track_f1": 0.25}
    assert realmusic.reference_run(tmp_path / "manifest.csv", saved) == first and calls == [[3.0]]


def failing_mgr_train(command, stdout, **kwargs):
    """subprocess.run of an mgr.train that stops with a user error."""
    stdout.write("Traceback and log lines\nmgr: error: data.root /x does not exist.\n")
    return subprocess.CompletedProcess(command, 1)


def test_a_failed_run_names_its_directory_and_mgr_s_sentence(tmp_path, monkeypatch):
    monkeypatch.setattr(realmusic.subprocess, "run", failing_mgr_train)
    run_dir = tmp_path / "default" / "seed0"
    with pytest.raises(MGRError) as e:
        realmusic.train(run_dir, ["data=folder"])
    assert str(e.value) == (f"mgr.train failed in {run_dir} (exit 1: data.root /x does not exist); "
                            f"see {run_dir / 'train.log'} and {run_dir / 'output.log'}.")
    assert not (run_dir / "wall_seconds.txt").exists()


def train_in_process(args: list[str], out) -> int:
    """`python -m mgr.train <args>` in this process, with this environment (the MGR_ paths realmusic's
    process would get), its output to `out`: its exit code. As conftest's mgr_in_process, which adds
    paths overrides that the run's overrides.yaml would record and realmusic compare."""
    import contextlib
    import logging

    from hydra.core.global_hydra import GlobalHydra

    from mgr.train import main

    saved_argv, root = sys.argv, logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        sys.argv = ["mgr.train", *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            main()
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        sys.argv = saved_argv
        GlobalHydra.instance().clear()
        for handler in set(root.handlers) - set(saved_handlers):
            handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


@pytest.mark.slow
def test_run_trains_each_seed_once_and_tabulates_them(tmp_path, capsys, monkeypatch):
    root = tmp_path / "bench"
    records = {}
    for label, freq in (("low", 220.0), ("high", 1760.0)):
        (root / label).mkdir(parents=True)
        for i in range(5):
            sf.write(root / label / f"t{i}.wav", tone(2.0, freq * (1 + 0.02 * i)), SR)
        records[label] = {"tracks": [{"path": f"t{i}.wav", "group": f"t{i}"} for i in range(5)]}
    realmusic.write_manifest(root, records)
    overrides = [*(o for o in tiny() if not o.startswith("data.source_options")),  # options of synth only
                 "callbacks=none", "data.num_workers=0"]
    monkeypatch.setenv("MGR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MGR_LOG_DIR", str(tmp_path / "logs"))
    # In this process: main() parses the same argv. The first mgr.train is a process of its own, as
    # realmusic starts it; the second, the same command, runs in this process (one start fewer).
    commands, run = [], subprocess.run  # realmusic.subprocess is the subprocess module: patched for all

    def first_in_a_process(command, *args, **kwargs):
        if command[1:3] != ["-m", "mgr.train"]:  # not realmusic's (platform's uname, git)
            return run(command, *args, **kwargs)
        commands.append(command)
        if len(commands) == 1:
            return run(command, *args, **kwargs)
        assert command[0] == sys.executable and kwargs["stderr"] == subprocess.STDOUT
        return subprocess.CompletedProcess(command, train_in_process(command[3:], kwargs["stdout"]))

    monkeypatch.setattr(realmusic.subprocess, "run", first_in_a_process)
    argv = ["run", "--root", str(root), "--systems", "default", "--seeds", "0", "1", "--", *overrides]
    assert realmusic.main(argv) == 0, capsys.readouterr()
    assert [[a for a in c if a.startswith("seed=")] for c in commands] == [["seed=0"], ["seed=1"]]
    printed = capsys.readouterr().out
    out = root / "runs"
    for seed in (0, 1):
        assert "test/track_acc" in realmusic.json.loads((out / "default" / f"seed{seed}" / "metrics.json").read_text())
    assert "[1/2] default seed 0 ..." in printed and "[2/2] default seed 1: test track acc" in printed
    (row,) = [l for l in printed.splitlines() if l.startswith("| default |")]
    assert row.split(" | ")[-2] == "2" and " ± " in row
    assert (out / "table.md").read_text().strip() in printed
    results = realmusic.json.loads((out / "results.json").read_text())
    assert [r["seed"] for r in results["default"]["runs"]] == [0, 1]

    # A failed run stops the comparison after the table of the runs before it.
    monkeypatch.setitem(realmusic.SYSTEMS, "broken", ("fails", []))
    monkeypatch.setattr(realmusic.subprocess, "run", failing_mgr_train)
    assert realmusic.main(["run", "--root", str(root), "--systems", "default", "broken", "--seeds", "0", "--",
                           *overrides]) == 1
    failed = capsys.readouterr()
    assert failed.err.startswith(f"mgr: error: mgr.train failed in {out / 'broken' / 'seed0'} (exit 1: ")
    assert "| default |" in failed.out and "| broken |" not in failed.out

    # A second invocation reads both runs and trains nothing.
    monkeypatch.setattr(realmusic.subprocess, "run", lambda *a, **k: pytest.fail("trained again"))
    assert realmusic.main(argv) == 0
    again = capsys.readouterr().out
    assert "[1/2] default seed 0: finished before" in again and " ..." not in again
    assert row in again
    # ... and refuses runs trained otherwise rather than tabulating them as these
    assert realmusic.main([*argv, "trainer.max_epochs=2"]) == 1
    assert "was trained with other overrides" in capsys.readouterr().err
