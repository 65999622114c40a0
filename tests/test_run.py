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
