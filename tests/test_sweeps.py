"""Sweeps: Optuna through Hydra, the submitit launcher locally, and every W&B sweep file
run the way a W&B agent runs it."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from conftest import NO_PLOTS, TINY_DATA, compose_resolved, mgr_in_process, tiny

SWEEPS = sorted((Path(__file__).parents[1] / "sweeps").glob("*.yaml"))


@pytest.mark.slow
def test_optuna_sweep(run_mgr, tmp_path):
    overrides = [o for o in tiny() if not o.startswith(("feature.n_mels", "data.batch_size"))]
    run_mgr("train", "hparams_search=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.n_startup_trials=2",
            *overrides, "debug=limit", *NO_PLOTS)
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    assert len([p for p in sweep.iterdir() if (p / "metrics.json").exists()]) == 3
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"optimizer.lr", "model.dropout", "data.batch_size", "feature.n_mels"}
    assert results["best_value"] > 0


@pytest.mark.slow
def test_submitit_local_multirun(run_mgr, tmp_path):
    run_mgr("train", "-m", "hydra/launcher=local", "model=cnn,crnn", *[o for o in tiny() if not o.startswith("model")],
            "debug=limit", *NO_PLOTS)
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    assert all((sweep / job / "metrics.json").exists() for job in ("0", "1"))
    assert list(sweep.glob(".submitit/*/*_result.pkl"))


def test_slurm_launcher_config_composes():
    cfg = compose_resolved("train", ["hydra/launcher=slurm"])
    assert cfg.task_name == "train"


def agent_args(sweep: dict, pick: int = 0) -> list[str]:
    """The `key=value` arguments (W&B's ${args_no_hyphens}) for one point of the sweep."""
    args = []
    for key, spec in sweep["parameters"].items():
        if "value" in spec:
            value = spec["value"]
        elif "values" in spec:
            value = spec["values"][pick % len(spec["values"])]
        else:
            value = spec["min"]
        args.append(f"{key}={value}")
    return args


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_sweep_point_composes(path):
    sweep = yaml.safe_load(path.read_text())
    assert sweep["command"][-1] == "${args_no_hyphens}" and sweep["program"] == "mgr.train"
    assert sweep["metric"]["name"] == compose_resolved("train", [])["optimized_metric"]
    grids = [[(k, v) for v in spec["values"]] for k, spec in sweep["parameters"].items() if "values" in spec]
    for point in itertools.product(*grids):
        fixed = [a for a in agent_args(sweep) if a.split("=")[0] not in dict(point)]
        compose_resolved("train", [*fixed, *(f"{k}={v}" for k, v in point)])


@pytest.mark.slow
@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_sweep_runs_as_an_agent_would(path, tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no W&B login: the run logs offline
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    sweep = yaml.safe_load(path.read_text())
    args = agent_args(sweep)
    chosen = dict(a.split("=", 1) for a in args)
    # A tiny budget: small data and the model's/feature's tiny sizes, one short epoch.
    budget = [*TINY_DATA, "debug=limit", "trainer.enable_progress_bar=false", *NO_PLOTS]
    budget += [o for o in tiny(chosen["model"], chosen["feature"]) if o.startswith(("model.", "feature."))
               and o.split("=")[0] not in chosen]
    proc = mgr_in_process("train", *args, *budget, cwd=tmp_path, data_dir=data_dir)
    assert "Test results" in proc.stdout
    assert list(tmp_path.glob("logs/train/runs/*/wandb/offline-run-*/run-*.wandb"))
