"""mgr.run: the one place that builds a run's trainer, for mgr.train and mgr.eval; the W&B code
stays in mgr.wandb_logging; every ddp_spawn launch meets on a port of its own."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import pytest

from conftest import compose_resolved, tiny

SRC = Path(__file__).resolve().parents[1] / "src" / "mgr"


def imported_modules(path: Path) -> set[str]:
    """The modules a source file imports anywhere in it (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_only_wandb_logging_imports_wandb_and_no_entry_point_imports_it():
    importers = {p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")
                 if any(m == "wandb" or m.startswith("wandb.") for m in imported_modules(p))}
    assert importers == {"wandb_logging.py"}
    assert not (SRC / "tracking.py").exists()
    for entry_point in ("train.py", "eval.py"):
        imports = imported_modules(SRC / entry_point)
        assert not {m for m in imports if m.startswith(("mgr.tracking", "mgr.wandb_logging"))}, entry_point


def trainer_of(config: str, *overrides: str, training: bool):
    from mgr.run import build_trainer

    return build_trainer(compose_resolved(config, list(overrides)), training)


def test_train_and_eval_get_their_callbacks_and_loggers_from_one_place(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import WandbLogger

    from mgr.models.finite import StopOnNonFinite
    from mgr.models.checkpoints import CheckpointIO
    from mgr.wandb_logging import WandbReport

    trainer, checkpoint = trainer_of("train", *tiny(), f"paths.output_dir={tmp_path}", training=True)
    kinds = [type(c) for c in trainer.callbacks]
    assert StopOnNonFinite in kinds and WandbReport not in kinds
    assert isinstance(checkpoint, ModelCheckpoint) and checkpoint in trainer.callbacks
    assert isinstance(trainer.strategy.checkpoint_io, CheckpointIO)

    trainer, checkpoint = trainer_of("eval", "ckpt_path=/x.ckpt", "logger=wandb", f"paths.output_dir={tmp_path}",
                                     training=False)
    kinds = [type(c) for c in trainer.callbacks]
    assert StopOnNonFinite not in kinds and WandbReport in kinds  # the W&B logger brings its report
    assert [type(lg) for lg in trainer.loggers] == [WandbLogger]
    assert checkpoint is None  # callbacks: eval saves nothing


def test_a_ddp_spawn_trainer_gets_a_fresh_port_environment():
    from mgr.run import FreshPortEnvironment

    trainer, _ = trainer_of("train", *tiny(), "trainer=ddp_cpu", training=True)
    assert type(trainer.strategy.cluster_environment) is FreshPortEnvironment
    trainer, _ = trainer_of("train", *tiny(), training=True)
    assert not isinstance(getattr(trainer.strategy, "cluster_environment", None), FreshPortEnvironment)


def test_each_launch_gets_a_new_port_and_the_ranks_read_the_launchs(monkeypatch):
    """The previous launch's port (still in MASTER_PORT, still bound here) is not the next one's; a
    spawned rank (LOCAL_RANK set) reads the port its launcher handed it."""
    from mgr.run import FreshPortEnvironment

    environment = FreshPortEnvironment()
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with socket.socket() as previous:
        previous.bind(("", 0))
        previous.listen()
        monkeypatch.setenv("MASTER_PORT", str(previous.getsockname()[1]))
        port = environment.main_port
        assert port != previous.getsockname()[1] and 0 < port < 65536
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("MASTER_PORT", "29517")
    assert environment.main_port == 29517


@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp_spawn_find_unused_parameters_true"])
def test_only_a_spawning_strategy_that_no_cluster_manages_gets_fresh_ports(strategy, monkeypatch):
    from lightning_fabric.plugins.environments import SLURMEnvironment

    from mgr.run import FreshPortEnvironment, rendezvous_plugins

    assert [type(p) for p in rendezvous_plugins(strategy)] == [FreshPortEnvironment]
    assert rendezvous_plugins("auto") == rendezvous_plugins(None) == rendezvous_plugins("ddp") == []
    monkeypatch.setattr(SLURMEnvironment, "detect", staticmethod(lambda: True))  # SLURM's tasks are the ranks
    assert rendezvous_plugins(strategy) == []


SLURM_TASK = {"SLURM_JOB_ID": "77", "SLURM_JOB_NAME": "mgrjob", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "2",
              "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "1", "SLURM_NODELIST": "127.0.0.1",
              "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}
TORCHRUN_WORKER = {"TORCHELASTIC_RUN_ID": "5e1d", "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0",
                   "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29517"}


def set_environment(monkeypatch, variables: dict[str, str]) -> None:
    for name in ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "SLURM_JOB_NAME", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("cluster", ["SLURM", "TorchElastic"])
def test_a_ddp_spawn_trainer_runs_plain_ddp_in_the_ranks_a_cluster_started(cluster, monkeypatch):
    """Where SLURM's srun or torchrun started the ranks, each runs Lightning's ddp and spawns nothing
    (ddp_spawn would start every rank again in each of them); its options stay."""
    from lightning_fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
    from pytorch_lightning.strategies.launchers import _MultiProcessingLauncher

    set_environment(monkeypatch, SLURM_TASK if cluster == "SLURM" else TORCHRUN_WORKER)
    trainer, _ = trainer_of("train", *tiny(), "trainer=ddp_cpu", training=True)
    assert not isinstance(trainer.strategy.launcher, _MultiProcessingLauncher)  # nothing spawned:
    assert trainer.strategy.cluster_environment.creates_processes_externally  # the cluster's processes are the ranks
    assert type(trainer.strategy.cluster_environment) is {"SLURM": SLURMEnvironment, "TorchElastic": TorchElasticEnvironment}[cluster]
    assert trainer.world_size == 2
    from mgr.run import launched_strategy

    trainer_cfg = compose_resolved("train", ["trainer=ddp_cpu", "trainer.strategy=ddp_spawn_find_unused_parameters_true"]).trainer
    assert launched_strategy(trainer_cfg) == "ddp_find_unused_parameters_true"


def test_on_one_machine_ddp_spawn_stays():
    from mgr.run import launched_strategy

    assert launched_strategy(compose_resolved("train", ["trainer=ddp_cpu"]).trainer) == "ddp_spawn"
    assert launched_strategy(compose_resolved("train", []).trainer) == "auto"


def test_a_cluster_that_started_other_than_the_trainers_processes_is_one_error(monkeypatch):
    from mgr import MGRError
    from mgr.run import launched_strategy

    set_environment(monkeypatch, {**SLURM_TASK, "SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "4"})
    with pytest.raises(MGRError, match=r"SLURM started 4 process\(es\) but trainer.devices x trainer.num_nodes asks for 2"):
        launched_strategy(compose_resolved("train", ["trainer=ddp_cpu"]).trainer)
    assert launched_strategy(compose_resolved("train", ["trainer=ddp_cpu", "trainer.num_nodes=2"]).trainer) == "ddp"


def test_the_ranks_a_cluster_started_name_one_run_directory(monkeypatch):
    """The name every rank knows: SLURM's job and step (the same again after a requeue), torchrun's
    rendezvous id; none for one process or an interactive SLURM shell."""
    from mgr import MGRError
    from mgr.environment import launched_rank
    from mgr.run_directory import cluster_run_name

    set_environment(monkeypatch, {})
    assert cluster_run_name() is None and launched_rank() == 0
    set_environment(monkeypatch, {**SLURM_TASK, "SLURM_PROCID": "1"})
    assert cluster_run_name() == "slurm-77.0" and launched_rank() == 1
    set_environment(monkeypatch, {**SLURM_TASK, "SLURM_JOB_NAME": "interactive"})
    assert cluster_run_name() is None
    set_environment(monkeypatch, {**SLURM_TASK, "SLURM_NTASKS": "1"})
    assert cluster_run_name() is None
    set_environment(monkeypatch, {**TORCHRUN_WORKER, "RANK": "1"})
    assert cluster_run_name() == "torchrun-5e1d" and launched_rank() == 1
    set_environment(monkeypatch, {**TORCHRUN_WORKER, "TORCHELASTIC_RUN_ID": "none"})
    with pytest.raises(MGRError, match="--rdzv-id"):
        cluster_run_name()


def hydra_run_config(*overrides: str, **trainer):
    from omegaconf import OmegaConf

    return OmegaConf.create({"hydra": {"overrides": {"hydra": list(overrides)}, "run": {"dir": "/logs/train/runs/2026-12-07"},
                                       "output_subdir": ".hydra"}, "trainer": trainer})


def test_the_ranks_a_cluster_started_write_one_run_directory_that_rank_0_logs_to(monkeypatch, capsys):
    """Hydra's run directory of every rank is the cluster's run name, rank 0 alone writes .hydra/ there;
    a hydra.run.dir given stays; a cluster with other than the trainer's processes stops before any work,
    with one line (Hydra would only warn of a callback's exception)."""
    from mgr.run_directory import SharedRunDirectory

    ddp = {"accelerator": "cpu", "devices": 2, "num_nodes": 1, "strategy": "ddp_spawn"}
    set_environment(monkeypatch, {**SLURM_TASK, "SLURM_PROCID": "1", "SLURM_LOCALID": "1"})
    config = hydra_run_config(**ddp)
    SharedRunDirectory().on_run_start(config)
    assert config.hydra.run.dir == "/logs/train/runs/slurm-77.0" and config.hydra.output_subdir is None
    config = hydra_run_config("hydra.run.dir=/mine", **ddp)
    SharedRunDirectory().on_run_start(config)
    assert config.hydra.run.dir == "/logs/train/runs/2026-12-07"  # Hydra itself reads the override into it

    set_environment(monkeypatch, {**TORCHRUN_WORKER, "TORCHELASTIC_RUN_ID": "none"})
    SharedRunDirectory().on_run_start(hydra_run_config("hydra.run.dir=/mine", **ddp))  # a directory given: no name needed
    with pytest.raises(SystemExit):
        SharedRunDirectory().on_run_start(hydra_run_config(**ddp))
    assert capsys.readouterr().err.startswith("mgr: error: torchrun started the ranks without a run id")

    set_environment(monkeypatch, {**SLURM_TASK, "SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "4"})
    with pytest.raises(SystemExit):
        SharedRunDirectory().on_run_start(hydra_run_config(**ddp))
    assert capsys.readouterr().err.count("mgr: error: SLURM started 4 process(es)") == 1

    set_environment(monkeypatch, {})
    config = hydra_run_config(**ddp)
    SharedRunDirectory().on_run_start(config)
    assert config.hydra.run.dir == "/logs/train/runs/2026-12-07" and config.hydra.output_subdir == ".hydra"
