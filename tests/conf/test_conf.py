"""Every config group option composes and resolves."""

from __future__ import annotations

from importlib.resources import files

import pytest

from conftest import compose_resolved, options


GROUPS = ["data", "feature", "augment", "model", "trainer", "logger", "callbacks", "paths", "hydra", "debug"]
CASES = [(g, o) for g in GROUPS for o in options(g)]


def _own(group: str, option: str) -> list[str]:
    return [f"{group}={option}", *(["data.root=/music"] if (group, option) == ("data", "folder") else [])]


def _elsewhere(group: str, option: str) -> bool:
    """Whether the option sets keys outside its group, so that another group's choice could hide its error."""
    return files("mgr.conf").joinpath(group, f"{option}.yaml").read_text().startswith("# @package _global_")


def _rows() -> list[list[str]]:
    """The n-th option of every group in row n, but an option that sets keys elsewhere in no row."""
    rows: list[list[str]] = []
    for group in GROUPS:
        for n, option in enumerate(o for o in options(group) if not _elsewhere(group, o)):
            if n == len(rows):
                rows.append([])
            rows[n] += _own(group, option)
    return rows


ROWS = _rows()


def composed(group: str, option: str):
    """The train config with this option. A compose takes Hydra a quarter of a second, so options
    compose in rows, one per group; alone where they are in no row, or when their row fails, so that
    an error is the option's own."""
    row = next((r for r in ROWS if f"{group}={option}" in r), None)
    if row is not None:
        try:
            return compose_resolved("train", row)
        except Exception:  # whichever Hydra or OmegaConf error: the option alone raises its own
            pass
    return compose_resolved("train", _own(group, option))


@pytest.mark.parametrize("group,option", CASES)
def test_every_group_option_composes(group, option):
    cfg = composed(group, option)
    assert cfg.task_name == "train"
    if group == "data":
        assert cfg.data.sample_rate > 0 and cfg.data.chunk_seconds > 0
    if group == "feature":
        assert cfg.feature.name == option


def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), group


@pytest.mark.parametrize("option", options("data"))
def test_no_data_option_asks_for_more_loader_workers_than_cpus(option):
    """PyTorch warns when a DataLoader has more workers than the process may use CPUs."""
    from mgr.data.datamodule import resolve_workers, usable_cpus

    workers = resolve_workers(composed("data", option).data.num_workers)
    assert workers == 0 or workers < usable_cpus()
