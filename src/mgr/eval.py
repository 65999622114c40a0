"""Re-run the test split from a checkpoint: python -m mgr.eval ckpt_path=/path/to/best.ckpt

Several checkpoints, ckpt_path=[a.ckpt,b.ckpt] (the folds' or seeds' models), are scored as one model:
each chunk gets the mean of their probabilities (mgr.models.ensemble); the data, track aggregation and
everything else are the first checkpoint's.

Track metrics combine a track's chunks as the checkpoint's run did (its track_aggregation and
vote_threshold); `track_aggregation=...` / `vote_threshold=...` score them another way.
`data=...` evaluates other data with the model's classes, sample rate and chunk length
(mgr.restore.check_fits).

Probabilities are the checkpoint's calibrated ones (its temperature, a multi-label checkpoint's one per
tag, mgr.models.calibration; 1 for a checkpoint without one). Besides the table, metrics.json gets their
expected calibration errors, and those of the probabilities as trained (T = 1: test/ece_uncalibrated,
test/track_ece_uncalibrated), and the risk-coverage curve of the test tracks (`risk_coverage`: at each
share answered, the `min_confidence` of mgr.predict that answers it and the accuracy of the tracks it
answers), which plots/risk_coverage.png draws (docs/explanation/calibration.md).

A multi-label checkpoint (task=multilabel) is scored by its ROC-AUC and PR-AUC and by its F1 at the
per-class thresholds it carries (docs/how-to/multilabel.md). Its risk-coverage curve answers as
mgr.predict does: a track by the probability of its most probable tag at or above its threshold, never
one with no such tag (the coverage then ends below 1); of the answered, the share whose most probable
answered tag is right (`top_tag_precision`) and their answers' mean sample-wise F1 (`sample_f1`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import DictConfig

from mgr.entry import command, require, task


@dataclass(frozen=True)
class EvalSettings:
    """conf/eval.yaml's own keys (explained there), checked before any work (mgr.schema.check_settings)."""

    ckpt_path: str | list[str]
    track_aggregation: Optional[str]
    vote_threshold: Optional[float]


@task(settings=EvalSettings)
def evaluate(cfg: DictConfig) -> dict[str, float]:
    # Heavy imports here, so `--help` and `--cfg` answer at once.
    from mgr.test_report import test_and_report
    from mgr.restore import checkpoint_provenance, restore
    from mgr.run import build_trainer

    require(cfg, "ckpt_path", usage="python -m mgr.eval ckpt_path=<best>.ckpt [data=...]")
    model, datamodule = restore(cfg, ensemble=True)
    datamodule.prepare_data()
    trainer, _ = build_trainer(cfg, training=False)
    provenance = checkpoint_provenance(cfg)
    return test_and_report(cfg, trainer, model, datamodule, f"Test results of {', '.join(provenance['checkpoints'])}",
                           provenance, columns={"checkpoints": ";".join(provenance["checkpoints"])})


main = command("eval", evaluate)


if __name__ == "__main__":
    main()
