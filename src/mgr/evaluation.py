"""The test report of mgr.train and mgr.eval: test, score the confusion matrices per class,
write metrics.json, print the chunk/track table and hand the results to the loggers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

# The printed table: row name, chunk metric, track metric.
TABLE_ROWS = (("accuracy", "test/acc", "test/track_acc"), ("macro-F1", "test/f1", "test/track_f1"))


def per_class_scores(confusion: list[list[int]], class_names: list[str]) -> list[dict]:
    """Precision, recall, F1 and support of each class from a confusion matrix (rows: true class)."""
    m = np.asarray(confusion, dtype=float)
    tp, predicted, actual = np.diag(m), m.sum(axis=0), m.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    return [dict(label=name, precision=float(p), recall=float(r), f1=float(f), support=int(s))
            for name, p, r, f, s in zip(class_names, precision, recall, f1, actual)]


def test_and_report(cfg: DictConfig, trainer, model, datamodule, title: str, provenance: dict,
                    ckpt_path: str | None = None) -> dict[str, float]:
    """Test (on `ckpt_path`'s weights if given, else the model's), then write metrics.json
    (test metrics, `provenance` (which checkpoint), class names, the track aggregation, confusion matrices, per-class
    scores), print the table and send the report to loggers that take it (W&B). Returns the
    test metrics."""
    from mgr.models import test_confusions
    from mgr.tracking import log_test_report
    from mgr.utils.tasks import fresh_rendezvous_port

    fresh_rendezvous_port(trainer)
    trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    results = {**provenance, "class_names": model.class_names, **model.track_aggregation.as_dict(),
               **test_confusions(trainer)}
    results["track_per_class"] = per_class_scores(results["track_confusion"], model.class_names)
    write_and_print_results(metrics, results, cfg.paths.output_dir, title)
    log_test_report(trainer.loggers, results, cfg.paths.output_dir)
    return metrics


def write_and_print_results(metrics: dict[str, float], extra: dict, run_dir: str, title: str) -> None:
    """Write metrics.json into the run directory and print the chunk/track table."""
    Path(run_dir, "metrics.json").write_text(json.dumps({**metrics, **extra}, indent=2))
    lines = [f"\n{title}", f"  {'':10s} {'chunk':>8s} {'track':>8s}"]
    for name, chunk, track in TABLE_ROWS:
        lines.append(f"  {name:10s} {metrics.get(chunk, float('nan')):8.4f} {metrics.get(track, float('nan')):8.4f}")
    lines.append(f"  run directory: {run_dir}")
    print("\n".join(lines), flush=True)
