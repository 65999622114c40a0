"""Every config group option composes and resolves."""

from __future__ import annotations

import pytest

from importlib.resources import files

from omegaconf import OmegaConf

from conftest import GROUPS, compose_option, options


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes(group, option):
    cfg = compose_option(group, option)
    assert cfg.task_name == "train"
    if group == "data":
        assert cfg.data.sample_rate > 0 and cfg.data.chunk_seconds > 0
    if group == "feature":  # a variant (mel64) is the frontend it extends, with other settings
        own = OmegaConf.load(files("mgr.conf").joinpath("feature", f"{option}.yaml"))
        extends = next((d for d in own.get("defaults", []) if isinstance(d, str) and d != "_self_"), option)
        assert cfg.feature.name == own.get("name", extends)


def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), group


@pytest.mark.parametrize("option", options("data"))
def test_no_data_option_asks_for_more_loader_workers_than_cpus(option):
    """PyTorch warns when a DataLoader has more workers than the process may use CPUs."""
    from mgr.data.datamodule import resolve_workers, usable_cpus

    workers = resolve_workers(compose_option("data", option).data.num_workers)
    assert workers == 0 or workers < usable_cpus()
