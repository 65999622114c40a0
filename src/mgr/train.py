"""Train a genre classifier: python -m mgr.train [group=option ...] [key=value ...]"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Optional

from omegaconf import DictConfig

from mgr import MGRError
from mgr.entry import command, task
from mgr.run_directory import prepare_run_directory
from mgr.utils.config import resolved_dict

log = logging.getLogger("mgr.train")


@dataclass(frozen=True)
class TrainSettings:
    """conf/train.yaml's own keys (explained there), checked before any work (mgr.schema.check_settings)."""

    seed: Optional[int]
    ckpt_path: Optional[str]
    test: bool
    calibrate: bool
    novelty: bool
    track_aggregation: str  # its choices: mgr.models.aggregation, checked first in train()
    vote_threshold: float
    optimized_metric: str  # one the model logs: check_monitored
    optimized_mode: Literal["min", "max"]


@task(settings=TrainSettings)
def train(cfg: DictConfig) -> float | None:
    # Heavy imports here, so `--help` and `--cfg` answer at once.
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from mgr.encoders import fetch_weights
    from mgr.environment import environment
    from mgr.models import GenreClassifier
    from mgr.models.aggregation import TrackAggregation
    from mgr.models.training_length import checked_min_steps, stretch_to_min_steps
    from mgr.run import build_trainer
    from mgr.test_report import test_and_report

    TrackAggregation(cfg.track_aggregation, cfg.vote_threshold)  # a wrong value stops before any work
    check_monitored(cfg.optimized_metric, cfg.get("task") or "multiclass")
    prepare_run_directory(cfg)  # a used directory or a missing last checkpoint stops here
    ckpt_path = checked_checkpoint(cfg.get("ckpt_path"))
    min_steps = checked_min_steps(cfg.get("recipe"))
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, _convert_="all")
    check_task(cfg.get("task") or "multiclass", datamodule.tracks)  # listed, not yet decoded
    if cfg.get("encoder"):  # missing weights (offline, a wrong path) stop here, not after minutes of decoding
        fetch_weights(resolved_dict(cfg.encoder))
    datamodule.prepare_data()  # generates/decodes once; the class names come from the data
    model = GenreClassifier.from_config(cfg, datamodule.class_names, datamodule.class_parents)
    trainer, checkpoint = build_trainer(cfg, training=True)
    if caches_embeddings(model.encoder):
        datamodule.use_encoder(model.encoder, trainer.strategy.root_device,
                               cfg.data.get("eval_batch_size") or cfg.data.batch_size)
    # After the cache: a cached probe's epoch is every chunk of its training tracks.
    length = stretch_to_min_steps(trainer, datamodule, min_steps, fitted_head=model.head.fitted)
    training = {"training_length": length.as_dict()} if length else {}
    for logger in trainer.loggers:
        logger.log_hyperparams({**resolved_dict(cfg), "environment": environment(), **training})
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)

    best_path = checkpoint.best_model_path if checkpoint else ""
    if best_path:
        training.update(finish_best(model, datamodule, trainer, best_path, cfg.get("calibrate", True),
                                    cfg.get("novelty", True)))
    if cfg.get("test"):
        if not best_path:
            log.warning("No best checkpoint was saved; testing the weights of the last step.")
        title = "Test results (best checkpoint)" if best_path else "Test results (last weights)"
        test_and_report(cfg, trainer, model, datamodule, title, {"best_checkpoint": best_path, **training},
                        ckpt_path=best_path or None)
    value = best_score(checkpoint) if best_path else None
    if value is None:  # nothing monitored: the last epoch's value
        value = trainer.callback_metrics.get(cfg.optimized_metric)
    return None if value is None else float(value)


def check_monitored(metric: str, task: str) -> None:
    """optimized_metric must be one the model logs (under `task`), or the checkpoint callback would stop
    the run at its first validation, or, with no validation, choose nothing."""
    from mgr.models.aggregation import TrackAggregation
    from mgr.models.metrics import TrackMetrics, chunk_metrics

    multilabel = task == "multilabel"
    chunk = [*chunk_metrics(2, multilabel).keys(), "loss"]
    tracks = list(TrackMetrics(2, TrackAggregation(), multilabel=multilabel).names)
    logged = [f"val/{name}" for name in chunk + tracks] + [f"train/{name}" for name in chunk]
    if metric not in logged:
        raise MGRError(f"optimized_metric={metric} is not a metric the model logs under task={task}; choose one of "
                       f"{', '.join(logged)} (optimized_mode=max for all but the losses).")


def check_task(task: str, tracks) -> None:
    """Multi-label data (several labels per track) trains under task=multilabel only; single-label data
    trains under either (multilabel: one-hot targets)."""

    if tracks.multilabel and task != "multilabel":
        raise MGRError("The data is multi-label (several labels per track: a manifest's labels column or "
                       "data=synth_multilabel); train it with task=multilabel.")


def checked_checkpoint(ckpt_path: str | None) -> str | None:
    """The checkpoint to resume from, read and checked before any data work (a URL fetched and
    verified once), as the local file Lightning then reads again through mgr's CheckpointIO;
    Lightning's keywords (`last`) as they are."""
    from mgr.models.checkpoints import local_checkpoint, read_checkpoint

    if ckpt_path is None or str(ckpt_path) in ("last", "best", "hpc", "registry"):
        return ckpt_path
    read_checkpoint(ckpt_path)
    return str(local_checkpoint(ckpt_path))


def finish_best(model, datamodule, trainer, best_path: str, calibrate: bool, novelty: bool) -> dict:
    """What is fitted on the best checkpoint's weights after training, loaded once into `model` (which the
    test then loads again) and written into that checkpoint once (by global rank 0; every rank fits the
    same, on all ranks' chunks):

    - `calibrate`: temperature scaling (mgr.models.calibration.calibrate): T (a multi-label model: one
      per tag, and its thresholds chosen again on the calibrated probabilities) fitted on the validation
      chunks, into the hyperparameters. last.ckpt keeps T = 1: its weights are others, and a resumed run
      calibrates its own best.
    - `novelty`: the novelty detector (mgr.models.novelty) of the training and validation chunks'
      embeddings, at the calibrated temperature's weights (the embeddings do not depend on T), into the
      state_dict, for mgr.predict novelty=true.

    Returns the fits for metrics.json (`temperature_fit`: T and the validation NLL before and after;
    `novelty_fit`)."""
    from mgr.models.calibration import calibrate as fit_and_set
    from mgr.models.checkpoints import read_checkpoint, save_atomically
    from mgr.models.novelty import fit_novelty

    if not (calibrate or novelty):
        return {}
    checkpoint = read_checkpoint(best_path)
    model.load_state_dict(checkpoint["state_dict"])
    fits = {}
    if calibrate:
        fit = fit_and_set(model, datamodule, trainer.strategy.root_device)
        log.info("Calibration of %s: %s", best_path, fit)
        for key in ("temperature", "thresholds"):
            checkpoint["hyper_parameters"][key] = model.hparams[key]
        fits["temperature_fit"] = {"temperature": fit.temperature, "val_nll_before": fit.nll_before,
                                   "val_nll_after": fit.nll_after, "val_chunks": fit.chunks}
    if novelty:
        detector, fit = fit_novelty(model, datamodule, trainer.strategy.root_device)
        model.novelty = detector.to(model.device)
        log.info("Novelty detection of %s: %s", best_path, fit)
        checkpoint["state_dict"].update({f"novelty.{k}": v.cpu() for k, v in detector.state_dict().items()})
        fits["novelty_fit"] = fit.as_dict()
    if trainer.is_global_zero:
        save_atomically(checkpoint, best_path)
    trainer.strategy.barrier("mgr-finished-best")
    return fits


def caches_embeddings(encoder) -> bool:
    """A frozen pretrained encoder is a fixed function of the chunk: the data module computes its layers
    once per chunk (GenreDataModule.use_encoder) and feeds the probe those instead of waveforms."""
    from mgr.encoders.pretrained import PretrainedEncoder

    return isinstance(encoder, PretrainedEncoder) and not encoder.finetune and encoder.cache_embeddings


def best_score(checkpoint) -> float | None:
    """The monitored value of the best checkpoint, the value a sweeper optimises. A ddp_spawn
    worker sends the main process only the best checkpoint's path (Lightning's launcher leaves
    the score behind), so there the score is read from the callback state that checkpoint saved."""
    from mgr.models import read_checkpoint

    score = checkpoint.best_model_score
    if score is None:
        score = read_checkpoint(checkpoint.best_model_path)["callbacks"][checkpoint.state_key]["best_model_score"]
    return None if score is None else float(score)


main = command("train", train)


if __name__ == "__main__":
    main()
