"""The model zoo: every model config trains through `python -m mgr.train` and restores from its
checkpoint alone, and trains at its default sizes as a newcomer runs it."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_module

from conftest import NO_PLOTS, TINY_DATA, TINY_MODEL, mgr_in_process, write_tiny_model_configs
from mgr.models import GenreClassifier, load_model
from mgr.nets import NETS


ZOO = sorted(TINY_MODEL)


# Every model on log-mel, and seed 004's MFCC + SVM. Every net on 13 MFCC bins is tests/nets' (one
# step at the same tiny sizes), and restoring the feature from a checkpoint does not depend on the net.
ZOO_RUNS = [(model, "mel") for model in ZOO] + [("stats_linear_svm", "mfcc")]


@pytest.fixture(scope="module")
def zoo_runs(tmp_path_factory, data_dir) -> dict[tuple[str, str], Path]:
    """Every (model, feature) of ZOO_RUNS, 2 training steps: one multirun over the models on mel and
    one run of the SVM on MFCCs; job directories by (model, feature)."""
    cwd = tmp_path_factory.mktemp("zoo")
    write_tiny_model_configs(cwd / "conf")
    common = [f"hydra.searchpath=[file://{cwd / 'conf'}]", *TINY_DATA, "feature.n_fft=256", "feature.hop_length=128",
              "feature.n_mels=32", "debug=limit", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
              "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false",
              "~callbacks.early_stopping", *NO_PLOTS]  # plots were half of a run here
    mgr_in_process("train", "-m", "model=" + ",".join(f"tiny_{m}" for m, f in ZOO_RUNS if f == "mel"), "feature=mel",
                   *common, cwd=cwd, data_dir=data_dir)
    for model, feature in (r for r in ZOO_RUNS if r[1] != "mel"):
        mgr_in_process("train", f"model=tiny_{model}", f"feature={feature}", *common, cwd=cwd, data_dir=data_dir)
    runs = {}
    for job in [*(cwd / "logs" / "train" / "multiruns").glob("*/*/"), *(cwd / "logs" / "train" / "runs").glob("*/")]:
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        choices = dict(o.split("=", 1) for o in overrides if "=" in o)  # not ~callbacks.early_stopping
        runs[choices["model"].removeprefix("tiny_"), choices["feature"]] = job
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("model,feature", ZOO_RUNS)
def test_every_model_trains_and_restores_from_its_checkpoint(zoo_runs, model, feature):
    job = zoo_runs[model, feature]
    metrics = json.loads((job / "metrics.json").read_text())
    assert 0.0 <= metrics["test/track_acc"] <= 1.0 and metrics["track_confusion"]
    checkpoint = job / "checkpoints" / "last.ckpt"
    restored = GenreClassifier.load_from_checkpoint(checkpoint)  # no arguments: the checkpoint holds them all
    assert isinstance(restored.encoder.net, NETS[restored.hparams.net["name"]])
    assert restored.hparams.feature["name"] == feature and restored.class_names == metrics["class_names"]
    restored.eval()
    with torch.no_grad():
        assert restored(torch.zeros(2, restored.chunk_samples)).shape == (2, len(metrics["class_names"]))


@pytest.mark.slow
def test_the_svm_is_fitted_not_left_at_zero(zoo_runs):
    restored = load_model(zoo_runs["stats_linear_svm", "mfcc"] / "checkpoints" / "last.ckpt")
    assert restored.head.weight.abs().sum() > 0


# --- every model of `--help`, as a newcomer runs it -------------------------------------------
MODEL_CONFIGS = sorted(p.name[:-5] for p in files("mgr.conf").joinpath("model").iterdir() if p.name.endswith(".yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_every_model_config_trains_with_the_default_data_and_feature(name, data_dir, tmp_path):
    """`python -m mgr.train model=<name>`: default sizes, default feature, default sample rate and chunk
    length; only the amount of data and the budget are cut (one batch of each stage, no plots)."""
    from hydra import compose, initialize_config_module

    from mgr.train import train

    with initialize_config_module("mgr.conf", version_base="1.3"):
        cfg = compose("train", overrides=[
            f"model={name}", *TINY_DATA[:2], "data.batch_size=2", "data.eval_batch_size=2", "debug=fast_dev_run",
            "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "callbacks=none",
            f"paths.data_dir={data_dir}", f"paths.output_dir={tmp_path}",
        ])
    train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["test/track_acc"] <= 1.0
