"""Weights & Biases around a run: offline fallback, metric summaries, the test
report (mgr.test_report's confusion matrix and per-class table, the figures), and always
finishing the run.

Every function does nothing when no W&B logger is configured.
"""

from __future__ import annotations

import logging
import netrc
import os
import socket
from urllib.parse import urlparse
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Summaries the dashboards show per run: the best value rather than the last.
SUMMARIES = {"val/acc": "max", "val/track_acc": "max", "val/f1": "max", "val/track_f1": "max", "val/loss": "min"}


def wandb_loggers(loggers) -> list:
    return [lg for lg in loggers if type(lg).__name__ == "WandbLogger"]


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


def continue_wandb_run(cfg) -> None:
    """When a run resumes in its own directory, log to the W&B run it started, not a new one."""
    from omegaconf import open_dict

    previous = Path(cfg.paths.output_dir, "wandb", "latest-run")
    if not cfg.get("ckpt_path") or cfg.logger.wandb.get("id") or not previous.exists():
        return
    run_id = previous.resolve().name.rsplit("-", 1)[-1]  # run-<date>-<id> or offline-run-<date>-<id>
    with open_dict(cfg):
        cfg.logger.wandb.id = run_id
        cfg.logger.wandb.resume = "allow"
    log.info("Continuing W&B run %s.", run_id)


def define_summaries(loggers) -> None:
    for logger in wandb_loggers(loggers):
        logger.experiment.define_metric("epoch")
        for name, summary in SUMMARIES.items():
            logger.experiment.define_metric(name, summary=summary, step_metric="epoch")


def log_test_report(loggers, results: dict, run_dir: str | Path) -> None:
    """Track-level confusion matrix, per-class scores (mgr.test_report's results) and the run's PNG
    figures to W&B."""
    targets = wandb_loggers(loggers)
    if not targets or "track_confusion" not in results:
        return
    import wandb

    names, confusion = results["class_names"], np.asarray(results["track_confusion"])
    y_true = [t for t in range(len(names)) for p in range(len(names)) for _ in range(int(confusion[t, p]))]
    y_pred = [p for t in range(len(names)) for p in range(len(names)) for _ in range(int(confusion[t, p]))]
    scores = results["track_per_class"]
    table = wandb.Table(columns=list(scores[0]), data=[list(s.values()) for s in scores])
    images = {f"plots/{p.stem}": wandb.Image(str(p)) for p in sorted(Path(run_dir).glob("plots/*.png"))}
    for logger in targets:
        logger.experiment.log({
            "test/track_confusion": wandb.plot.confusion_matrix(y_true=y_true, preds=y_pred, class_names=names),
            "test/per_class": table,
            **images,
        })

