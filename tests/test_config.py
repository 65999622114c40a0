"""Every config group option composes and resolves; the CLI answers --help, --cfg and bad overrides."""

from __future__ import annotations

import subprocess
import sys
from importlib.resources import files

import pytest
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

GROUPS = ["data", "feature", "augment", "model", "trainer", "logger", "callbacks", "paths", "hydra", "debug"]


def options(group: str) -> list[str]:
    return sorted(p.name[:-5] for p in files("mgr.conf").joinpath(group).iterdir() if p.name.endswith(".yaml"))


def compose_resolved(config_name: str, overrides: list[str]):
    with initialize_config_module("mgr.conf", version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = "/tmp/mgr-test-run"
            cfg.hydra.runtime.cwd = "/tmp"
        HydraConfig.instance().set_config(cfg)  # lets ${hydra:...} resolve outside a run
        with open_dict(cfg):
            del cfg.hydra
        OmegaConf.resolve(cfg)
        return cfg


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes(group, option):
    overrides = [f"{group}={option}"]
    if option == "folder":
        overrides.append("data.root=/music")
    cfg = compose_resolved("train", overrides)
    assert cfg.task_name == "train"
    if group == "data":
        assert cfg.data.sample_rate > 0 and cfg.data.chunk_seconds > 0
    if group == "feature":
        assert cfg.feature.name == option


def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), group


def test_eval_config_composes():
    cfg = compose_resolved("eval", ["ckpt_path=/x.ckpt"])
    assert cfg.ckpt_path == "/x.ckpt" and cfg.get("data") is None  # data comes from the checkpoint
    cfg = compose_resolved("eval", ["ckpt_path=/x.ckpt", "data=folder", "data.root=/music"])
    assert cfg.data.source == "folder"


def _cli(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mgr.train", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_help_and_cfg_job_work_from_any_directory(tmp_path):
    proc = _cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    listed = {line.split(":")[0]: line.split(":")[1].split(", ") for line in proc.stdout.splitlines() if ": " in line}
    assert {"cnn", "crnn"} <= {o.strip() for o in listed["model"]}
    assert {o.strip() for o in listed["feature"]} == set(options("feature"))
    proc = _cli("--cfg", "job", "model=cnn", "feature=stft", cwd=tmp_path)
    assert proc.returncode == 0
    cfg = OmegaConf.create(proc.stdout)
    assert cfg.model.name == "cnn" and cfg.model.channels == [32, 64, 128] and cfg.feature.name == "stft"


def test_unknown_group_option_gives_hydras_error(tmp_path):
    proc = _cli("model=nosuchmodel", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Could not find 'model/nosuchmodel'" in proc.stderr
    assert "Available options" in proc.stderr


@pytest.mark.parametrize("option", options("data"))
def test_no_data_option_asks_for_more_loader_workers_than_cpus(option):
    """PyTorch warns when a DataLoader has more workers than the process may use CPUs."""
    from mgr.data.datamodule import resolve_workers, usable_cpus

    cfg = compose_resolved("train", [f"data={option}"] + (["data.root=/music"] if option == "folder" else []))
    workers = resolve_workers(cfg.data.num_workers)
    assert workers == 0 or workers < usable_cpus()
