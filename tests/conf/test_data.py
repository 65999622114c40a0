"""conf/data/: every dataset config extends base.yaml, states only what differs from it,
and composes into exactly the arguments GenreDataModule takes; data=base is not a dataset."""

from __future__ import annotations

import inspect
from importlib.resources import files

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from conftest import compose_option, compose_resolved, options
from mgr.data.datamodule import GenreDataModule

DATASETS = [o for o in options("data") if o != "base"]
REAL = [o for o in DATASETS if o not in ("synth", "synth_multilabel")]  # recorded music: audio-sized epochs
# Own music (and the real-music suite, as data=folder) probes a pretrained encoder by default; the named
# benchmarks train from scratch, as the literature they reproduce does (conf/recipe/pretrained.yaml).
OWN_RECIPE = {o: "pretrained" for o in ("folder", "suite_long", "suite_clips", "suite_many")}
ARGUMENTS = set(inspect.signature(GenreDataModule.__init__).parameters) - {"self"}


def raw(option: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(files("mgr.conf").joinpath("data", f"{option}.yaml")))


@pytest.mark.parametrize("option", DATASETS)
def test_every_dataset_composes_into_the_datamodule_arguments(option):
    cfg = compose_option("data", option).data
    assert cfg._target_ == "mgr.data.GenreDataModule"
    assert set(cfg) - {"_target_"} == ARGUMENTS  # every knob overridable as data.<key>=, none unknown
    assert not OmegaConf.missing_keys(cfg)


@pytest.mark.parametrize("option", DATASETS)
def test_every_dataset_extends_base_and_states_only_what_differs(option):
    own = raw(option)
    recipe = [{"override /recipe@_global_.recipe": OWN_RECIPE.get(option, "small_data")}] if option in REAL else []
    assert own.pop("defaults") == ["base", *recipe, "_self_"]
    base = raw("base")
    assert set(own) <= set(base), f"data/{option}.yaml adds keys the base lacks: {set(own) - set(base)}"
    restated = [k for k, v in own.items() if base[k] == v]
    assert not restated, f"data/{option}.yaml restates the base's {restated}"
    assert {"source", "root"} <= set(own)  # the base's ??? keys


@pytest.mark.parametrize("option", DATASETS)
def test_real_music_trains_by_the_small_data_recipe_and_synth_as_before(option):
    cfg = compose_resolved("train", [f"data={option}"])
    if option in REAL:
        assert cfg.data.train_chunks_per_track == "audio" and cfg.recipe.mixup_alpha > 0
        assert (cfg.feature.n_mels, cfg.optimizer.name, cfg.scheduler.name) == (64, "adamw", "onecycle")
        assert cfg.model.name == ("probe" if OWN_RECIPE.get(option) == "pretrained" else "cnn")
        # The command line still chooses, and recipe=none is the house defaults again.
        assert compose_resolved("train", [f"data={option}", "model=crnn"]).model.name == "crnn"
        assert compose_resolved("train", [f"data={option}", "model=cnn"]).recipe == cfg.recipe
        plain = compose_resolved("train", [f"data={option}", "recipe=none"])
        assert (plain.model.name, plain.optimizer.name, plain.recipe.mixup_alpha) == ("crnn", "adam", 0.0)
    else:
        assert (cfg.model.name, cfg.optimizer.name, cfg.scheduler.name, cfg.recipe.label_smoothing) == ("crnn", "adam", "none", 0.0)


def test_base_is_no_dataset():
    cfg = compose_option("data", "base").data
    assert sorted(OmegaConf.missing_keys(cfg)) == ["data.root", "data.source"]
    with pytest.raises((MissingMandatoryValue, InstantiationException), match="data.source"):
        instantiate(cfg)
