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

from conftest import compose_option, options
from mgr.data.datamodule import GenreDataModule

DATASETS = [o for o in options("data") if o != "base"]
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
    assert own.pop("defaults") == ["base", "_self_"]
    base = raw("base")
    assert set(own) <= set(base), f"data/{option}.yaml adds keys the base lacks: {set(own) - set(base)}"
    restated = [k for k, v in own.items() if base[k] == v]
    assert not restated, f"data/{option}.yaml restates the base's {restated}"
    assert {"source", "root"} <= set(own)  # the base's ??? keys


def test_base_is_no_dataset():
    cfg = compose_option("data", "base").data
    assert sorted(OmegaConf.missing_keys(cfg)) == ["data.root", "data.source"]
    with pytest.raises((MissingMandatoryValue, InstantiationException), match="data.source"):
        instantiate(cfg)
