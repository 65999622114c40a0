"""Weights & Biases around a run, the only module of mgr that imports wandb:

- `wandb_logger`, the factory conf/logger/wandb.yaml names: the offline fallback, and the run's
  own W&B run continued when it resumes;
- `WandbReport`, the callback mgr.run adds beside a W&B logger: metric summaries, and the test
  report (mgr.test_report's confusion matrix and per-class table, the figures).

mgr.entry closes the W&B run at the end of every task.
"""

from __future__ import annotations

import logging
import netrc
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from pytorch_lightning import Callback
from pytorch_lightning.loggers import WandbLogger

log = logging.getLogger(__name__)

# Summaries the dashboards show per run: the best value rather than the last.
SUMMARIES = {"val/acc": "max", "val/track_acc": "max", "val/f1": "max", "val/track_f1": "max", "val/loss": "min",
             # task=multilabel's
             "val/auc": "max", "val/track_auc": "max", "val/ap": "max", "val/track_ap": "max"}


def wandb_logger(save_dir: str, resume_checkpoint=None, id: str | None = None, **settings) -> WandbLogger:
    """Lightning's WandbLogger writing under `save_dir`/wandb, offline where W&B cannot be reached.
    A run that resumes from a checkpoint (`resume_checkpoint`) in a directory that already holds a
    W&B run continues that run, unless `id` names one."""
    choose_wandb_mode()
    if id is None and resume_checkpoint:
        id = previous_run_id(save_dir)
    return WandbLogger(save_dir=save_dir, id=id, **settings)  # Lightning lets W&B resume a known id


def choose_wandb_mode() -> None:
    """Without credentials W&B would prompt for a key, without a network it would wait for
    minutes: go offline instead, with one warning."""
    if os.environ.get("WANDB_MODE"):
        return
    server = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    host, port = server.hostname or "api.wandb.ai", server.port or (80 if server.scheme == "http" else 443)
    try:
        has_login = bool(os.environ.get("WANDB_API_KEY")) or netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        has_login = False
    if not has_login:
        why = "No W&B API key found (WANDB_API_KEY or `wandb login`)"
    else:
        try:
            socket.create_connection((host, port), timeout=5).close()
            return
        except OSError:
            why = f"The W&B server {host} cannot be reached"
    os.environ["WANDB_MODE"] = "offline"
    log.warning("%s: logging offline; upload later with `wandb sync <run dir>/wandb/offline-run-*`.", why)


def previous_run_id(save_dir: str | Path) -> str | None:
    """The id of the W&B run last written under `save_dir`, None where there is none."""
    previous = Path(save_dir, "wandb", "latest-run")
    if not previous.exists():
        return None
    run_id = run_id_of(previous.resolve().name)
    if run_id:
        log.info("Continuing W&B run %s.", run_id)
    return run_id


def run_id_of(folder: str) -> str | None:
    """The run id in a W&B run folder's name: run-<date>_<time>-<id> or offline-run-<date>_<time>-<id>,
    with -<n> after it where W&B started the run twice in one second (a quick resume)."""
    found = re.fullmatch(r"(?:offline-)?run-\d{8}_\d{6}-([^-]+)(?:-\d+)?", folder)
    return found.group(1) if found else None


def wandb_loggers(loggers) -> list[WandbLogger]:
    return [lg for lg in loggers if isinstance(lg, WandbLogger)]


class WandbReport(Callback):
    """What mgr adds to W&B's own logging: the best value of each validation metric as its summary,
    and the test report, which mgr.test_report hands to `report_test`."""

    def on_fit_start(self, trainer, pl_module) -> None:
        # Under ddp_spawn in rank 0, attached to the run the main process started; other ranks
        # hold Lightning's dummy experiment, which ignores this.
        for logger in wandb_loggers(trainer.loggers):
            logger.experiment.define_metric("epoch")
            for name, summary in SUMMARIES.items():
                logger.experiment.define_metric(name, summary=summary, step_metric="epoch")

    def report_test(self, trainer, results: dict, run_dir: str | Path) -> None:
        """Per-class scores (mgr.test_report's results: a multi-label model's per tag, with its ROC-AUC,
        PR-AUC and threshold), a multi-class model's track-level confusion matrix, and the run's PNG
        figures. In the main process, after the test, also under ddp_spawn."""
        targets = wandb_loggers(trainer.loggers)
        if not targets or "track_per_class" not in results:
            return
        import wandb

        scores = results["track_per_class"]
        report = {"test/per_class": wandb.Table(columns=list(scores[0]), data=[list(s.values()) for s in scores]),
                  **{f"plots/{p.stem}": wandb.Image(str(p)) for p in sorted(Path(run_dir).glob("plots/*.png"))}}
        if "track_confusion" in results:
            names, confusion = results["class_names"], np.asarray(results["track_confusion"])
            y_true = [t for t in range(len(names)) for p in range(len(names)) for _ in range(int(confusion[t, p]))]
            y_pred = [p for t in range(len(names)) for p in range(len(names)) for _ in range(int(confusion[t, p]))]
            report["test/track_confusion"] = wandb.plot.confusion_matrix(y_true=y_true, preds=y_pred, class_names=names)
        for logger in targets:
            logger.experiment.log(report)
