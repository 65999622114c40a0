"""What a run is built from: the trainer of mgr.train and mgr.eval, with its loggers (the `logger`
group), its callbacks (the `callbacks` group, progress lines for logs, W&B's report beside a W&B
logger, and in training the stop on a non-finite loss), mgr's checkpoint reading and writing, and
the DDP launch: ddp_spawn with a fresh rendezvous port for every launch on one machine, plain ddp
in each process where a cluster (SLURM's srun tasks, torchrun) started the ranks."""

from __future__ import annotations

import logging
import os

import pytorch_lightning as pl
from hydra.utils import instantiate
from lightning_fabric.plugins.environments import (LightningEnvironment, LSFEnvironment, MPIEnvironment,
                                                   SLURMEnvironment, TorchElasticEnvironment)
from lightning_fabric.plugins.environments.lightning import find_free_network_port
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint

from mgr import MGRError
from mgr.entry import instantiate_dict
from mgr.models import CheckpointIO
from mgr.models.finite import StopOnNonFinite
from mgr.utils.progress import progress_for_logs

# The clusters that start the ranks themselves, and choose their port, where Lightning finds them (its
# accelerator connector): there nothing is spawned and the port is theirs.
MANAGED_CLUSTERS = (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment)

log = logging.getLogger(__name__)


def build_trainer(cfg: DictConfig, training: bool) -> tuple[pl.Trainer, ModelCheckpoint | None]:
    """The trainer `cfg.trainer` describes, with the run's loggers and callbacks, and the ModelCheckpoint
    of the `callbacks` group, whose best checkpoint is the run's (None where the group has none:
    Lightning then adds one of its own, which is not the run's)."""
    loggers = instantiate_dict(cfg.get("logger"))
    callbacks = instantiate_dict(cfg.get("callbacks")) + progress_for_logs(cfg.trainer.get("enable_progress_bar", True))
    checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    if training:  # no option: a diverged run must never end as a success, whatever `callbacks=`
        callbacks.append(StopOnNonFinite())
        callbacks += requeue_callbacks()
    callbacks += logger_callbacks(loggers)
    strategy = launched_strategy(cfg.trainer)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, strategy=strategy,
                          plugins=[CheckpointIO(), *rendezvous_plugins(strategy)])
    return trainer, checkpoint


def requeue_callbacks() -> list[pl.Callback]:
    """In a job that submitit started on SLURM (hydra/launcher=slurm): the checkpoint that its requeued
    job resumes from, saved on the signal before the time limit (mgr.utils.preemption)."""
    from mgr.utils.preemption import CheckpointBeforeRequeue, submitit_requeue_signal

    signum = submitit_requeue_signal()
    return [] if signum is None else [CheckpointBeforeRequeue(signum)]


def logger_callbacks(loggers: list) -> list[pl.Callback]:
    """What a logger needs beside it: W&B's summaries and test report (mgr.wandb_logging, imported only
    for a W&B logger, so a run without one never loads wandb)."""
    from pytorch_lightning.loggers import WandbLogger

    if not any(isinstance(logger, WandbLogger) for logger in loggers):
        return []
    from mgr.wandb_logging import WandbReport

    return [WandbReport()]


def launched_strategy(trainer_cfg: DictConfig):
    """The strategy to run: `trainer.strategy` as given, except a ddp_spawn strategy in a process that
    a cluster started as one of its ranks, which becomes the same plain ddp strategy (its options kept):
    the cluster has already started one process per device, and a spawn there would start every rank
    again in each of them."""
    strategy = trainer_cfg.get("strategy", "auto")
    cluster = checked_cluster_ranks(trainer_cfg)
    if cluster is None:
        return strategy
    ddp = "ddp" + strategy.removeprefix("ddp_spawn")
    log.info("%s started the %d ranks of this run: each runs strategy %s in its own process, nothing is spawned "
             "(trainer.strategy=%s spawns the ranks only on one machine without a cluster).",
             cluster_name(cluster), cluster.world_size(), ddp, strategy)
    return ddp


def checked_cluster_ranks(trainer_cfg: DictConfig):
    """The cluster environment that started this process as a rank of a ddp_spawn trainer (None on one
    machine, or for another strategy), once its ranks are checked to be one per device of the trainer
    on all its nodes."""
    strategy = trainer_cfg.get("strategy", "auto")
    cluster = managing_cluster()
    if not (isinstance(strategy, str) and strategy.startswith("ddp_spawn")) or cluster is None:
        return None
    ranks, wanted = cluster.world_size(), trainer_processes(trainer_cfg)
    if ranks != wanted:
        raise MGRError(f"{cluster_name(cluster)} started {ranks} process(es) but trainer.devices x trainer.num_nodes "
                       f"asks for {wanted}; start one task per device (e.g. hydra.launcher.tasks_per_node="
                       f"hydra.launcher.gpus_per_node=trainer.devices, torchrun --nproc_per_node=trainer.devices), "
                       f"or set trainer.devices and trainer.num_nodes to match.")
    return cluster


def cluster_name(cluster) -> str:
    return type(cluster).__name__.removesuffix("Environment")


def managing_cluster():
    """The cluster environment that started this process as one of its ranks, as Lightning's accelerator
    connector finds it (TorchElastic first: torchrun may run inside a SLURM job); None on one machine."""
    return next((cluster() for cluster in MANAGED_CLUSTERS if cluster.detect()), None)


def trainer_processes(trainer_cfg: DictConfig) -> int:
    """How many DDP processes `trainer.devices` on `trainer.num_nodes` nodes make, with Lightning's
    reading of `devices` (-1 or "auto" for every device of the accelerator, a list of indices)."""
    from pytorch_lightning.accelerators import AcceleratorRegistry

    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("gpu", "auto"):
        accelerator = "cuda" if accelerator == "gpu" or torch_cuda_available() else "cpu"
    accelerator_cls = AcceleratorRegistry[accelerator]["accelerator"]
    devices = trainer_cfg.get("devices", "auto")
    if devices == "auto":
        return accelerator_cls.auto_device_count() * int(trainer_cfg.get("num_nodes", 1))
    return len(accelerator_cls.get_parallel_devices(accelerator_cls.parse_devices(devices))) * int(trainer_cfg.get("num_nodes", 1))


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


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
