"""What a run is built from: the trainer of mgr.train and mgr.eval, with its loggers (the `logger`
group), its callbacks (the `callbacks` group, progress lines for logs, W&B's report beside a W&B
logger, and in training the stop on a non-finite loss), mgr's checkpoint reading and writing, and
a fresh rendezvous port for every ddp_spawn launch."""

from __future__ import annotations

import os

import pytorch_lightning as pl
from hydra.utils import instantiate
from lightning_fabric.plugins.environments import (LightningEnvironment, LSFEnvironment, MPIEnvironment,
                                                   SLURMEnvironment, TorchElasticEnvironment)
from lightning_fabric.plugins.environments.lightning import find_free_network_port
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint

from mgr.entry import instantiate_dict
from mgr.models import CheckpointIO
from mgr.models.finite import StopOnNonFinite
from mgr.utils.progress import progress_for_logs

# The clusters that start the ranks themselves, and choose their port, where Lightning finds them (its
# accelerator connector): there nothing is spawned and the port is theirs.
MANAGED_CLUSTERS = (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment)


def build_trainer(cfg: DictConfig, training: bool) -> tuple[pl.Trainer, ModelCheckpoint | None]:
    """The trainer `cfg.trainer` describes, with the run's loggers and callbacks, and the ModelCheckpoint
    of the `callbacks` group, whose best checkpoint is the run's (None where the group has none:
    Lightning then adds one of its own, which is not the run's)."""
    loggers = instantiate_dict(cfg.get("logger"))
    callbacks = instantiate_dict(cfg.get("callbacks")) + progress_for_logs(cfg.trainer.get("enable_progress_bar", True))
    checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    if training:  # no option: a diverged run must never end as a success, whatever `callbacks=`
        callbacks.append(StopOnNonFinite())
    callbacks += logger_callbacks(loggers)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                          plugins=[CheckpointIO(), *rendezvous_plugins(cfg.trainer.get("strategy"))])
    return trainer, checkpoint


def logger_callbacks(loggers: list) -> list[pl.Callback]:
    """What a logger needs beside it: W&B's summaries and test report (mgr.wandb_logging, imported only
    for a W&B logger, so a run without one never loads wandb)."""
    from pytorch_lightning.loggers import WandbLogger

    if not any(isinstance(logger, WandbLogger) for logger in loggers):
        return []
    from mgr.wandb_logging import WandbReport

    return [WandbReport()]


def rendezvous_plugins(strategy) -> list:
    """A FreshPortEnvironment for a ddp_spawn trainer that Lightning would give its own environment
    (no cluster manages the ranks)."""
    if not str(strategy).startswith("ddp_spawn") or any(cluster.detect() for cluster in MANAGED_CLUSTERS):
        return []
    return [FreshPortEnvironment()]


class FreshPortEnvironment(LightningEnvironment):
    """Lightning's single-node environment with a new rendezvous port for each ddp_spawn launch (fit,
    then test, then the next job of a multirun). Lightning's keeps the first launch's port for every
    later one, where the previous launch's closing sockets can abort a rank. The launcher reads
    `main_port` once in the main process and hands it to the ranks in MASTER_PORT; a rank
    (LOCAL_RANK set) reads it back from there."""

    @property
    def main_port(self) -> int:
        if self.creates_processes_externally:
            return int(os.environ["MASTER_PORT"])
        return find_free_network_port()
