"""What every entry point shares: user errors without tracebacks, config
instantiation, and the closing summary."""

from __future__ import annotations

import functools
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from mgr import MGRError

log = logging.getLogger("mgr")


def task(fn: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Wrap a Hydra task: an MGRError ends the run with its one-sentence message and exit code 1."""

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig) -> Any:
        from mgr.environment import write_environment
        from mgr.tracking import finish_wandb

        _quiet_warnings()
        failed = True
        try:
            write_environment(cfg.paths.output_dir)
            result = fn(cfg)
            failed = False
            return result
        except Exception as e:
            error = _user_error(e)
            if error is None:
                raise
            print(f"mgr: error: {error}", file=sys.stderr)
            sys.exit(1)
        finally:
            finish_wandb(failed)  # also after a failure, so the next multirun job gets its own W&B run

    return wrapper


def _user_error(e: BaseException | None) -> MGRError | None:
    """The MGRError behind `e`: Hydra's instantiate wraps errors raised while building an
    object (a model that rejects its settings) in an InstantiationException."""
    while e is not None and not isinstance(e, MGRError):
        e = e.__cause__
    return e


def _quiet_warnings() -> None:
    # Advice that does not apply to small CPU runs, or that mgr handles itself.
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(lambda r: "litlogger" not in r.getMessage())
    for message in (
        ".*isinstance.treespec, LeafSpec.*",
        ".*does not have many workers.*",
        ".*The number of training batches.*is smaller than the logging interval.*",
        ".*Checkpoint directory.*exists and is not empty.*",
    ):
        warnings.filterwarnings("ignore", message=message)


def instantiate_dict(group: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` entry of a group like `callbacks` or `logger`."""
    from hydra.utils import instantiate

    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def plain(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def test_and_report(cfg: DictConfig, trainer, model, datamodule, title: str, about: dict,
                    ckpt_path: str | None = None) -> dict[str, float]:
    """Test (on `ckpt_path`'s weights if given, else the model's), then write metrics.json
    (test metrics, `about`, class names, the track aggregation, confusion matrices, per-class
    scores), print the table and send the report to loggers that take it (W&B). Returns the
    test metrics."""
    from mgr.models import test_confusions
    from mgr.tracking import log_test_report, per_class_scores

    fresh_rendezvous_port(trainer)
    trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    results = {**about, "class_names": model.class_names, **model.track_aggregation.as_dict(),
               **test_confusions(trainer)}
    results["track_per_class"] = per_class_scores(results["track_confusion"], model.class_names)
    write_and_print_results(metrics, results, cfg.paths.output_dir, title)
    log_test_report(trainer.loggers, results, cfg.paths.output_dir)
    return metrics


def write_and_print_results(metrics: dict[str, float], extra: dict, run_dir: str, title: str) -> None:
    """Write metrics.json into the run directory and print the chunk/track table."""
    Path(run_dir, "metrics.json").write_text(json.dumps({**metrics, **extra}, indent=2))
    rows = [("accuracy", "test/acc", "test/track_acc"), ("macro-F1", "test/f1", "test/track_f1")]
    lines = [f"\n{title}", f"  {'':10s} {'chunk':>8s} {'track':>8s}"]
    for name, chunk, track in rows:
        lines.append(f"  {name:10s} {metrics.get(chunk, float('nan')):8.4f} {metrics.get(track, float('nan')):8.4f}")
    lines.append(f"  run directory: {run_dir}")
    print("\n".join(lines), flush=True)


def fresh_rendezvous_port(trainer) -> None:
    """Give the next ddp_spawn launch its own rendezvous port. Lightning keeps the first
    launch's port in MASTER_PORT and reuses it for the test launch and for every later job
    of a multirun; meeting the previous launch's closing sockets there can abort a rank."""
    import os

    environment = getattr(trainer.strategy, "cluster_environment", None)
    if type(environment).__name__ == "LightningEnvironment" and hasattr(environment, "_main_port"):
        os.environ.pop("MASTER_PORT", None)
        environment._main_port = -1
