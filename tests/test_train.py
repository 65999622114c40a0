"""python -m mgr.train on generated audio: a run directory, a checkpoint that loads alone, every
feature, the cache reused, user mistakes as one clear error, the CLI's help and multiruns."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from conftest import NO_PLOTS, TINY_DATA, metrics_of, options, run_dir_of, tiny, write_tiny_model_configs, write_wav
from mgr.data import synth_audio
from mgr.features import FRONTENDS
from mgr.models import GenreClassifier, load_model


@pytest.mark.slow
def test_training_beats_chance_and_writes_a_run_directory(trained_proc):
    proc = trained_proc
    assert "Test results (best checkpoint)" in proc.stdout
    run_dir = run_dir_of(proc)
    metrics = metrics_of(proc)
    assert metrics["test/track_acc"] >= 0.6, metrics  # chance: 0.2
    assert set(metrics) >= {"test/acc", "test/f1", "test/track_acc", "test/track_f1", "test/loss"}
    assert np.array(metrics["track_confusion"]).sum() == 20
    assert np.trace(metrics["chunk_confusion"]) / np.sum(metrics["chunk_confusion"]) == pytest.approx(metrics["test/acc"])
    assert (run_dir / ".hydra" / "config.yaml").exists() and (run_dir / "train.log").exists()
    assert (run_dir / "csv" / "metrics.csv").read_text().count("\n") > 10
    assert (run_dir / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
def test_checkpoint_loads_without_arguments(trained_proc):
    best = metrics_of(trained_proc)["best_checkpoint"]
    model = GenreClassifier.load_from_checkpoint(best)
    assert model.class_names == sorted(synth_audio.CLASSES)
    assert load_model(best).hparams.net == model.hparams.net
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(2, model.chunk_samples)).shape == (2, len(synth_audio.CLASSES))


@pytest.mark.slow
@pytest.mark.parametrize("model,feature", [("crnn", "mel"), ("cnn", "stft"), ("crnn", "mfcc")])
def test_named_combinations_train(run_mgr, model, feature):
    proc = run_mgr("train", *tiny(model, feature), "debug=limit", *NO_PLOTS)
    metrics = metrics_of(proc)
    assert 0.0 <= metrics["test/track_acc"] <= 1.0
    assert (run_dir_of(proc) / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
def test_second_run_reuses_the_cache(run_mgr):
    first = run_mgr("train", *tiny(), "data.sample_rate=7000", "debug=fast_dev_run", *NO_PLOTS)
    second = run_mgr("train", *tiny(), "data.sample_rate=7000", "debug=fast_dev_run", *NO_PLOTS)
    assert "Decoding audio at 7000 Hz" in first.stderr
    assert "Decoding audio" not in second.stderr + second.stdout
    assert "no decoding" in second.stdout + second.stderr
    assert "mgr.progress" not in first.stdout  # tiny() turns progress off: no log lines either


def _assert_one_clear_error(proc, text):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mgr: error:")]
    assert len(errors) == 1 and text in errors[0], proc.stderr


@pytest.mark.slow
def test_folder_without_root_is_a_clear_error(run_mgr, tmp_path):
    # In a new process once: the exit code and the one line on stderr are what the shell sees.
    _assert_one_clear_error(run_mgr("train", "data=folder", check=False, process=True), "needs data.root")
    missing = tmp_path / "no_such_music"
    _assert_one_clear_error(run_mgr("train", "data=folder", f"data.root={missing}", check=False), "does not exist")
    (tmp_path / "empty").mkdir()
    _assert_one_clear_error(run_mgr("train", "data=folder", f"data.root={tmp_path / 'empty'}", check=False),
                            "need at least 2")


def test_missing_encoder_weights_stop_the_own_data_default_before_any_decoding(run_mgr, tmp_path):
    """data=folder probes musicnn: without its weights (offline, a wrong path) the run stops with one
    sentence before it decodes the folder, not after."""
    root = tmp_path / "music"
    for genre in ("jazz", "metal"):
        for i in range(3):
            write_wav(root / genre / f"{i}.wav", np.zeros(8000, dtype=np.float32) + 0.1, 8000)
    cache = tmp_path / "cache"
    proc = run_mgr("train", "data=folder", f"data.root={root}", f"paths.cache_dir={cache}",
                   f"encoder.wheel={tmp_path / 'no_such.whl'}", check=False)
    _assert_one_clear_error(proc, "musicnn wheel")
    assert not cache.exists() or not [p for p in cache.iterdir() if p.name.startswith("folder-")]


def test_settings_a_model_or_feature_rejects_are_a_clear_error(run_mgr):
    # raised inside Hydra's instantiate, which wraps errors in its own exception
    _assert_one_clear_error(run_mgr("train", *tiny("fcn"), "data.chunk_seconds=0.2", "debug=fast_dev_run", check=False),
                            "FCN needs at least")
    _assert_one_clear_error(run_mgr("train", *tiny(), "feature.trainable=true", "debug=fast_dev_run", check=False),
                            "needs feature.backend=nnaudio")
    assert "Error in call to target" not in run_mgr("train", *tiny("fcn"), "data.chunk_seconds=0.2", "debug=fast_dev_run", check=False).stderr


@pytest.mark.slow
def test_corrupt_files_are_skipped_and_reported(run_mgr, tmp_path, data_dir):
    root = tmp_path / "music"
    for label, genre in enumerate(synth_audio.CLASSES[:3]):
        (root / genre).mkdir(parents=True)
        for i in range(5):
            sf.write(str(root / genre / f"{i}.wav"), synth_audio.render_track(label, i, 2.0), synth_audio.RENDER_RATE)
    good = (root / synth_audio.CLASSES[0] / "0.wav").read_bytes()
    (root / synth_audio.CLASSES[0] / "truncated.wav").write_bytes(good[: len(good) // 3])
    (root / synth_audio.CLASSES[1] / "empty.flac").write_bytes(b"")
    (root / synth_audio.CLASSES[2] / "notes.wav").write_text("not audio, just text\n" * 50)
    overrides = [o for o in tiny() if not o.startswith("data.source_options")]
    proc = run_mgr("train", "data=folder", f"data.root={root}", *overrides, "recipe.min_steps=0",  # tiny()'s one epoch
                   *NO_PLOTS)  # data.num_workers=auto
    assert "Skipped 3 file(s) that could not be decoded" in proc.stdout + proc.stderr
    # No DataLoader advice that is false here: workers within the CPUs, no pinning without a GPU.
    assert "worker processes in total" not in proc.stderr and "pin_memory" not in proc.stderr
    metrics = metrics_of(proc)
    assert "test/track_acc" in metrics
    # Other tests of the session build folder caches too: this run's report lists its own root.
    (report,) = [r for r in data_dir.glob("cache/folder-*/bad_files.tsv") if str(root) in r.read_text()]
    rows = report.read_text().splitlines()[1:]
    assert sorted(row.split("\t")[0].rsplit("/", 1)[1] for row in rows) == ["empty.flac", "notes.wav", "truncated.wav"]


@pytest.mark.slow
def test_multirun_runs_every_job(run_mgr, tmp_path):
    proc = run_mgr("train", "-m", "model=cnn,crnn", *[o for o in tiny() if not o.startswith("model")], "debug=limit",
                   *NO_PLOTS)
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    for job in ("0", "1"):
        assert "test/track_acc" in json.loads((sweep / job / "metrics.json").read_text())
    assert proc.stdout.count("Test results") == 2


@pytest.mark.slow
def test_every_feature_trains_with_crnn_and_cnn(run_mgr, tmp_path):
    # Each feature at its default sizes; the nets at their tiny sizes, whose layers and pools are the
    # default ones. The confusion plots are test_plots' (they do not depend on the feature).
    write_tiny_model_configs(tmp_path / "conf")
    features = ",".join(sorted(FRONTENDS))
    data = [o for o in TINY_DATA if not o.startswith(("data.sample_rate", "data.batch_size"))]
    proc = run_mgr("train", "-m", "model=tiny_crnn,tiny_cnn", f"feature={features}", *data, "data.sample_rate=16000",
                   "data.batch_size=8", "data.eval_batch_size=8", "augment=specaugment", "debug=fast_dev_run",
                   "trainer.enable_progress_bar=false", "~callbacks.plots", f"hydra.searchpath=[file://{tmp_path / 'conf'}]")
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2 * len(FRONTENDS)
    assert proc.stdout.count("Test results") == len(jobs)
    for job in jobs:
        assert (job / "metrics.json").exists(), job
        png = job / "plots" / "feature_examples.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    overrides = [Path(job, ".hydra", "overrides.yaml").read_text() for job in jobs]
    assert all(any(f"feature={name}" in o for o in overrides) for name in FRONTENDS)


@pytest.mark.slow
def test_help_and_cfg_job_work_from_any_directory(run_mgr, tmp_path):
    # --help in a new process, as the shell runs it; --cfg job needs no process of its own.
    proc = subprocess.run([sys.executable, "-m", "mgr.train", "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("python -m mgr.train")
    assert "\n  model=crnn " in proc.stdout and "\n  feature=mel " in proc.stdout
    words = set(proc.stdout.replace(",", " ").split())
    assert {"cnn", "crnn"} | set(options("feature")) <= words
    proc = run_mgr("train", "--cfg", "job", "model=cnn", "feature=stft")
    assert proc.returncode == 0
    cfg = OmegaConf.create(proc.stdout)
    assert cfg.model.name == "cnn" and cfg.model.channels == [32, 64, 128] and cfg.feature.name == "stft"


def test_unknown_group_option_is_one_line_with_the_choices(run_mgr):
    proc = run_mgr("train", "model=nosuchmodel", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("mgr: error: model=nosuchmodel is not an option of the model group; choose one of "
                                   f"{', '.join(options('model'))}.")


@pytest.mark.slow
def test_recipe_min_steps_trains_whole_epochs_beyond_max_epochs_and_a_resume_reaches_them(run_mgr, tmp_path):
    """recipe.min_steps=8 on a tiny split of a few steps an epoch: more whole epochs than
    trainer.max_epochs=1, the one-cycle schedule spanning all their steps (it raises when stepped past
    its end), the length in metrics.json; resumed from its first epoch, the run ends at the same count."""
    from mgr.models import read_checkpoint

    run_dir = tmp_path / "run"
    run = [*tiny(epochs=1), "scheduler=onecycle", "recipe.min_steps=8", "callbacks.model_checkpoint.save_top_k=-1",
           "~callbacks.early_stopping", *NO_PLOTS, f"hydra.run.dir={run_dir}"]
    length = metrics_of(run_mgr("train", *run))["training_length"]
    steps = length["optimizer_steps_per_epoch"]
    assert length == {"epochs": -(-8 // steps), "optimizer_steps_per_epoch": steps, "min_steps": 8, "max_epochs": 1,
                      "optimizer_steps": -(-8 // steps) * steps}
    epochs = length["epochs"]
    assert epochs >= 3, length  # the resume below trains two epochs

    def trained() -> tuple[list[int], int]:
        with open(run_dir / "csv" / "metrics.csv") as f:
            logged = sorted({int(row["epoch"]) for row in csv.DictReader(f) if row.get("val/loss")})
        last = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
        scheduler = last["lr_schedulers"][0]
        assert scheduler["total_steps"] == scheduler["last_epoch"] == last["global_step"]  # the cycle ran to its end
        return logged, last["global_step"]

    assert trained() == (list(range(epochs)), epochs * steps)
    resumed = run_mgr("train", *run, f"ckpt_path={run_dir / 'checkpoints' / 'epoch000.ckpt'}")
    assert trained() == (list(range(epochs)), epochs * steps)
    assert f"Training {epochs} epochs ({epochs * steps} optimizer steps" in resumed.stdout + resumed.stderr
