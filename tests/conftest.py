"""Shared helpers: tiny configs and a runner for the real entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def tiny(model: str = "cnn", feature: str = "mel", epochs: int = 1) -> list[str]:
    return [f"model={model}", f"feature={feature}", *TINY_DATA, *TINY_FEATURE[feature], *TINY_MODEL[model],
            f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false"]


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


@pytest.fixture
def run_mgr(tmp_path, data_dir):
    def run(task: str, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
        return mgr_command(task, *overrides, cwd=tmp_path, data_dir=data_dir, check=check)

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
]


@pytest.fixture(scope="session")
def trained_proc(tmp_path_factory, data_dir) -> subprocess.CompletedProcess:
    """One `mgr.train` of TRAINED, shared by the tests that need a trained model."""
    cwd = tmp_path_factory.mktemp("trained_run")
    return mgr_command("train", *TRAINED, cwd=cwd, data_dir=data_dir)


@pytest.fixture(scope="session")
def trained_run(trained_proc) -> Path:
    """Run directory of the TRAINED run; its metrics.json names the best checkpoint."""
    return run_dir_of(trained_proc)
