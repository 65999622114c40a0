"""Shared helpers: tiny configs, a runner for the real entry points, and what tests of several
modules build alike (audio files, miniature datasets, composed configs, chunk logits, checkpoints)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from importlib.resources import files
from pathlib import Path
from typing import Callable

# OpenMP threads that wait for work sleep instead of spinning: on a 2-core machine shared with other
# work, spinning threads of torch's 2-thread pool stall each other (tests/nets, stft, frontends and
# heads took 3x as long under load), while an idle machine still runs big ops on both cores. Set
# before torch loads its OpenMP runtime; the entry points the tests start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from mgr import MGRError  # noqa: E402

# Small audio, small features, small models: seconds per run on a 2-core CPU.
TINY_DATA = [
    "data.source_options.tracks_per_class=6",
    "data.source_options.seconds=[2.0,3.5]",
    "data.sample_rate=8000",
    "data.chunk_seconds=1.0",
    "data.batch_size=16",
]
TINY_FEATURE = {
    "mel": ["feature.n_fft=256", "feature.hop_length=128", "feature.n_mels=32"],
    "stft": ["feature.n_fft=128", "feature.hop_length=128"],
    "mfcc": ["feature.n_fft=256", "feature.hop_length=128", "feature.n_mels=32", "feature.n_mfcc=13"],
}
TINY_MODEL = {
    "crnn": ["model.channels=[8,16,16,16]", "model.rnn_hidden=16"],
    "cnn": ["model.channels=[8,16,32]", "model.hidden=32"],
    "belov_cnn": ["model.channels=[8,16,16]", "model.hidden=16"],
    "cnn5": ["model.channels=[4,8,8,16,16]", "model.linear=[32,32,16,16]", "model.dropout=0.1"],
    "cnn_lstm_parallel": ["model.channels=[4,8,8]", "model.pools=[2,2,4]", "model.lstm_hidden=16"],
    "crnn_artist": ["model.channels=[8,16,16]", "model.rnn_hidden=16"],
    "fcn": ["model.channels=[8,16,16,16,8]", "model.pools=[[2,2],[2,2],[2,2],[3,2],[4,2]]"],
    "short_chunk_cnn": ["model.channels=[8,8,16,16,16]"],
    "short_chunk_resnet": ["model.channels=[8,8,16,16,16]"],
    "musicnn": ["model.timbral_filters=8", "model.temporal_filters=4", "model.backend_channels=8", "model.dense=16"],
    "stats_linear_svm": ["model.head.passes=1"],
}


# For runs whose test checks no plot: drawing them takes about 2 s a run, a third of a tiny run. Where
# they are checked: test_plots (the TRAINED run), test_train's feature images, test_tracking (W&B).
NO_PLOTS = ["~callbacks.plots", "~callbacks.feature_images"]


def tiny(model: str = "cnn", feature: str = "mel", epochs: int = 1) -> list[str]:
    return [f"model={model}", f"feature={feature}", *TINY_DATA, *TINY_FEATURE[feature], *TINY_MODEL[model],
            f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false"]


def write_tiny_model_configs(root: Path) -> None:
    """<root>/model/tiny_<name>.yaml: each shipped model config with TINY_MODEL's sizes, so one Hydra
    multirun can sweep models at their tiny sizes (per-model overrides cannot ride on one sweep); runs
    find them with hydra.searchpath=[file://<root>]."""
    from omegaconf import OmegaConf

    (root / "model").mkdir(parents=True)
    for name, overrides in TINY_MODEL.items():
        sizes = OmegaConf.to_yaml(OmegaConf.from_dotlist([o.removeprefix("model.") for o in overrides]))
        (root / "model" / f"tiny_{name}.yaml").write_text(f"defaults:\n  - {name}\n  - _self_\n\n{sizes}")


@pytest.fixture(scope="session")
def musicnn_wheel() -> Path:
    """The musicnn wheel (real weights, from PyPI once into a temp folder kept across sessions), for the
    tests of the musicnn port and of what uses it by default (data=folder's probe). Where PyPI cannot
    be reached they skip with a loud reason, except on CI (CI=true), which reaches PyPI: there they fail."""
    import mgr.encoders.musicnn as musicnn

    try:
        return musicnn.find_wheel(None, str(Path(tempfile.gettempdir()) / "mgr-test-musicnn"))
    except MGRError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must test musicnn, and could not get its wheel: {e}")
        pytest.skip(f"NOT TESTED: this needs musicnn's wheel: {e}")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One data folder for the whole session, so synth audio is generated once."""
    return tmp_path_factory.mktemp("data")


def mgr_command(task: str, *overrides: str, cwd: Path, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python -m mgr.<task> ...` from a fresh working directory, as a user would."""
    paths = [f"paths.data_dir={data_dir}", f"paths.log_dir={cwd / 'logs'}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MGR_")}
    proc = subprocess.run([sys.executable, "-m", f"mgr.{task}", *overrides, *paths], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"mgr.{task} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, seconds: float = 300) -> None:
    """Wait, at most `seconds`, until `ready()` (a run started with Popen has reached some point: an epoch's
    checkpoint written, say) or until the process has ended."""
    deadline = time.time() + seconds
    while not ready() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)


def mgr_in_process(task: str, *overrides: str, cwd: Path, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess:
    """mgr_command without a new interpreter: the entry point's own Hydra main, the same arguments,
    working directory and environment, its stdout, stderr and exit code. Python, torch and Lightning
    start once per session instead of once per run; the CLI itself, DDP spawn and signals still need
    mgr_command."""
    import contextlib
    import importlib
    import io
    import logging

    from hydra.core.global_hydra import GlobalHydra

    main = importlib.import_module(f"mgr.{task}").main
    paths = [f"paths.data_dir={data_dir}", f"paths.log_dir={cwd / 'logs'}"]
    argv = [f"mgr.{task}", *overrides, *(p for p in paths if not any(o.startswith(p.split("=")[0] + "=") for o in overrides))]
    saved_argv, saved_cwd, root = sys.argv, os.getcwd(), logging.getLogger()
    saved_env = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("MGR_")}
    saved_logging = root.handlers[:], root.level
    stdout, stderr, code = io.StringIO(), io.StringIO(), 0
    try:
        sys.argv = argv
        os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                main()
            except SystemExit as e:  # what the process would exit with
                code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.update(saved_env)
        GlobalHydra.instance().clear()  # as after a process: the next compose or run starts afresh
        for handler in set(root.handlers) - set(saved_logging[0]):  # Hydra's console and train.log handlers
            handler.close()
        root.handlers[:] = saved_logging[0]
        root.setLevel(saved_logging[1])
    proc = subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())
    if check and code != 0:
        raise AssertionError(f"mgr.{task} failed ({code}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


# Runs that only a new interpreter can host: DDP spawns its ranks from the main module, and the
# submitit launcher pickles the job for processes of its own.
NEEDS_A_PROCESS = ("trainer=ddp", "hydra/launcher=")


@pytest.fixture
def run_mgr(tmp_path, data_dir):
    """Run an entry point from this test's directory: in this process, or in a new one (process=True,
    or a run of NEEDS_A_PROCESS)."""
    def run(task: str, *overrides: str, check: bool = True, process: bool = False) -> subprocess.CompletedProcess:
        process = process or any(o.startswith(NEEDS_A_PROCESS) for o in overrides)
        runner = mgr_command if process else mgr_in_process
        return runner(task, *overrides, cwd=tmp_path, data_dir=data_dir, check=check)

    return run


def run_dir_of(proc: subprocess.CompletedProcess) -> Path:
    line = next(l for l in proc.stdout.splitlines() if "run directory:" in l)
    return Path(line.split("run directory:")[1].strip())


def metrics_of(proc: subprocess.CompletedProcess) -> dict:
    return json.loads((run_dir_of(proc) / "metrics.json").read_text())


# A tiny CNN that learns the synth classes in seconds (test track accuracy ~0.95): the model
# the tests of mgr.predict, mgr.embed and the plots share. Same data as test_train's run.
TRAINED = [
    *tiny("cnn", "mel", epochs=10),
    "data.source_options.tracks_per_class=12",
    "data.split={train: 0.5, val: 0.17, test: 0.33}",
    "data.train_chunks_per_track=4",
    "optimizer.lr=3e-3",
    # float32, as the files decode: mgr.predict (which decodes them) must give exactly the test step's
    # probabilities. int16 caches, one quantisation step away, are tested in tests/data.
    "data.cache_dtype=float32",
]


@pytest.fixture(scope="session")
def trained_proc(tmp_path_factory, data_dir) -> subprocess.CompletedProcess:
    """One `mgr.train` of TRAINED, shared by the tests that need a trained model."""
    cwd = tmp_path_factory.mktemp("trained_run")
    return mgr_in_process("train", *TRAINED, cwd=cwd, data_dir=data_dir)


@pytest.fixture(scope="session")
def trained_run(trained_proc) -> Path:
    """Run directory of the TRAINED run; its metrics.json names the best checkpoint."""
    return run_dir_of(trained_proc)


def check_predictions_match_metrics(run_dir: Path) -> list[dict]:
    """test_predictions.csv holds every test track once and gives back metrics.json's track scores."""
    import csv

    from mgr import statistics

    metrics = json.loads((run_dir / "metrics.json").read_text())
    with open(run_dir / "test_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = metrics["class_names"]
    assert len(rows) == sum(map(sum, metrics["track_confusion"])) == len({r["path"] for r in rows})
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    assert sum(int(r["chunks"]) for r in rows) == sum(map(sum, metrics["chunk_confusion"]))
    confusion = np.zeros((len(names), len(names)), dtype=int)
    for r in rows:
        scores = [float(r[f"score_{c}"]) for c in names]
        assert r["prediction"] == names[int(np.argmax(scores))]
        confusion[names.index(r["label"]), names.index(r["prediction"])] += 1
    assert confusion.tolist() == metrics["track_confusion"]
    accuracy, macro_f1 = statistics.scores(confusion)
    assert accuracy == pytest.approx(metrics["test/track_acc"], abs=1e-6)
    assert macro_f1 == pytest.approx(metrics["test/track_f1"], abs=1e-6)
    return rows


# --- audio files and miniature datasets --------------------------------------------------------

def write_wav(path: Path, audio: np.ndarray, rate: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, rate)
    return path


@pytest.fixture
def small_folder(tmp_path) -> Path:
    """<genre>/<n>.wav: 2 genres of 4 noise tracks, 1 to 1.75 s at 8 kHz."""
    root = tmp_path / "music"
    rng = np.random.default_rng(0)
    for genre in ("a", "b"):
        for i in range(4):
            write_wav(root / genre / f"{i}.wav", 0.1 * rng.standard_normal(8000 + 2000 * i).astype(np.float32), 8000)
    return root


@pytest.fixture
def cache_files(tmp_path) -> list[str]:
    """12 noise files of 0.5 to 1.9 s at 8 kHz."""
    rng = np.random.default_rng(2)
    return [str(write_wav(tmp_path / "music" / f"{i:02d}.wav", 0.1 * rng.standard_normal(4000 + 500 * i).astype(np.float32), 8000))
            for i in range(12)]


def verify_command(*overrides: str) -> subprocess.CompletedProcess:
    """python -m mgr.verify (in this process), its run directory (<log_dir>/verify/runs/...) in a
    temporary folder."""
    import tempfile

    with tempfile.TemporaryDirectory() as logs:
        return mgr_in_process("verify", *overrides, cwd=Path(logs), data_dir=Path(logs) / "data", check=False)


TONE_RATE = 8000


def tone(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * TONE_RATE)) / TONE_RATE
    return (0.3 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def write_tone(path: Path, seconds: float = 1.2, seed: int = 0, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, seed), TONE_RATE, **kwargs)
    return path


def mini_datamodule(source: str, root: Path, tmp_path: Path, **kwargs):
    """A GenreDataModule of a miniature dataset, prepared and set up."""
    from mgr.data import GenreDataModule

    defaults = dict(cache_dir=str(tmp_path / "cache"), sample_rate=TONE_RATE, chunk_seconds=0.5, min_seconds=0.5,
                    batch_size=4, num_workers=0)
    dm = GenreDataModule(source=source, root=str(root), **{**defaults, **kwargs})
    dm.prepare_data()
    dm.setup()
    return dm


def split_sizes(splits: dict) -> tuple[int, int, int]:
    return tuple(len(splits[k]) for k in ("train", "val", "test"))


# --- configs ----------------------------------------------------------------------------------

def options(group: str) -> list[str]:
    return sorted(p.name[:-5] for p in files("mgr.conf").joinpath(group).iterdir() if p.name.endswith(".yaml"))


# The groups of conf/train.yaml a user picks options of.
GROUPS = ["data", "feature", "augment", "model", "recipe", "trainer", "logger", "callbacks", "paths", "hydra", "debug"]


def _sets_keys_elsewhere(group: str, option: str) -> bool:
    return files("mgr.conf").joinpath(group, f"{option}.yaml").read_text().startswith("# @package _global_")


@functools.cache
def _option_rows() -> tuple[tuple[str, ...], ...]:
    """Row n: the n-th option of every group; an option that sets keys outside its group (so that
    another group's choice could hide its error) is in no row."""
    rows: list[list[str]] = []
    for group in GROUPS:
        for n, option in enumerate(o for o in options(group) if not _sets_keys_elsewhere(group, o)):
            if n == len(rows):
                rows.append([])
            rows[n].append(f"{group}={option}")
    return tuple(map(tuple, rows))


def compose_option(group: str, option: str):
    """compose_resolved("train", [f"{group}={option}"]) as far as `group` goes, in far fewer composes:
    options compose in rows, one per group; alone where they are in no row, or when their row fails,
    so that an error is the option's own."""
    row = next((r for r in _option_rows() if f"{group}={option}" in r), None)
    if row is not None:
        try:
            return compose_resolved("train", list(row))
        except Exception:  # whichever Hydra or OmegaConf error: the option alone raises its own
            pass
    return compose_resolved("train", [f"{group}={option}"])


def compose_resolved(config_name: str, overrides: list[str]):
    """The config `python -m mgr.<config_name> <overrides>` would run with, resolved. Composed once per
    session for each config and overrides (a compose takes Hydra a quarter of a second, and test
    modules compose the same ones), so it is read-only."""
    return _compose_resolved(config_name, tuple(overrides))


@functools.cache
def _compose_resolved(config_name: str, overrides: tuple[str, ...]):
    from hydra import compose, initialize_config_module
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    with initialize_config_module("mgr.conf", version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = "/tmp/mgr-test-run"
            cfg.hydra.runtime.cwd = "/tmp"
        HydraConfig.instance().set_config(cfg)  # lets ${hydra:...} resolve outside a run
        with open_dict(cfg):
            del cfg.hydra
        OmegaConf.resolve(cfg)
        OmegaConf.set_readonly(cfg, True)
        return cfg


# --- chunk logits, track votes and checkpoints ---------------------------------------------------

# Chunk logits of five tracks over three classes, each track a case where the rules part ways.
CHUNKS = [
    # track 0: one sure chunk of class 0, two fairly sure (p ~0.58) of class 1
    (0, [4.0, 0.0, 0.0]), (0, [0.0, 1.0, 0.0]), (0, [0.0, 1.0, 0.0]),
    # track 1: one extreme chunk of class 0 outweighs in logits, not in probabilities
    (1, [9.0, 0.0, 0.0]), (1, [0.0, 2.0, 0.0]), (1, [0.0, 2.0, 0.0]),
    # track 2: no chunk above 0.5 (two lean to class 2, one to class 0): all of them vote
    (2, [0.0, 0.0, 0.3]), (2, [0.0, 0.0, 0.3]), (2, [0.3, 0.0, 0.0]),
    # track 3: one confident chunk of class 0 against two unsure ones of class 1
    (3, [3.0, 0.0, 0.0]), (3, [0.0, 0.3, 0.0]), (3, [0.0, 0.3, 0.0]),
    # track 4: a tie of confident votes, class 2 first: the class listed first (1) wins
    (4, [0.0, 0.0, 3.0]), (4, [0.0, 3.0, 0.0]),
]
CHUNK_TRACKS = torch.tensor([t for t, _ in CHUNKS])
CHUNK_LOGITS = torch.tensor([l for _, l in CHUNKS])


def seed004_vote(probabilities: torch.Tensor, threshold: float) -> int:
    """Seed 004's code (ZainNasrullah/music-artist-classification-crnn, predict_artist) written out:
    the top class of each slice above the threshold, all slices when none is, the most frequent
    class, the smallest on ties (scipy.stats.mode)."""
    top, classes = probabilities.max(1)
    kept = classes[top > threshold].tolist() or classes.tolist()
    counts = Counter(kept)
    return min(c for c in counts if counts[c] == max(counts.values()))


def save_checkpoint(model, path) -> None:
    """A checkpoint of an untrained model, as Lightning writes it (no data module attached)."""
    import pytorch_lightning as pl

    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
