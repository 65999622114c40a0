"""Every experiment config composes with its own dataset, combines chunks as its paper did, and
runs one step of everything on synth."""

from __future__ import annotations

import functools
import json
from importlib.resources import files

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from conftest import NO_PLOTS, TINY_DATA
from mgr.nets import NETS


EXPERIMENTS = sorted(p.name[:-5] for p in files("mgr.conf").joinpath("experiment").iterdir() if p.name.endswith(".yaml"))


def _compose(overrides: list[str]):
    with initialize_config_module("mgr.conf", version_base="1.3"):
        return compose("train", overrides=overrides)


@functools.cache
def _experiment(name: str):
    """The experiment as it composes with its own dataset (at a root of the right layout), once for
    the tests that read it."""
    cfg = _compose([f"experiment={name}", "data.root=/music"])
    OmegaConf.set_readonly(cfg, True)
    return cfg


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_with_its_own_dataset(name):
    text = files("mgr.conf").joinpath("experiment", f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n# "), "a header comment names the source"
    assert "Differs" in text or "as experiment=" in text, "the header says what differs from the source"
    cfg = _experiment(name)
    assert cfg.data.source in {"gtzan", "fma", "artist20", "folder"}
    assert cfg.model.name in NETS


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_runs_one_step_on_synth(name, data_dir, tmp_path):
    from mgr.train import train

    # The experiment's own sample rate, chunk length, feature and model; only the data is swapped. No
    # plots: they took 60 % of a run and do not depend on the experiment.
    cfg = _compose([
        f"experiment={name}", "data=synth", *TINY_DATA[:2], "data.split={train: 0.6, val: 0.2, test: 0.2}",
        "data.batch_size=2", "data.eval_batch_size=2", "debug=fast_dev_run", "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false", *NO_PLOTS,
        f"paths.data_dir={data_dir}", f"paths.output_dir={tmp_path}",
    ])
    train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "test/track_acc" in metrics


@pytest.mark.parametrize("name,rule,threshold", [
    ("seed004_artist20_crnn_song", "majority_vote", 0.5), ("seed004_artist20_crnn_album", "majority_vote", 0.5),
    ("seed004_artist20_mfcc_svm_song", "majority_vote", 0.0), ("seed004_artist20_mfcc_svm_album", "majority_vote", 0.0),
    ("won2020_short_chunk_resnet_gtzan", "mean_probs", 0.5), ("seed002_gtzan_spectrogram", "mean_logits", 0.5),
])
def test_experiments_combine_chunks_as_their_papers_did(name, rule, threshold):
    cfg = _experiment(name)
    assert (cfg.track_aggregation, cfg.vote_threshold) == (rule, threshold)
