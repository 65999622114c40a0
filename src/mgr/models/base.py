"""The base LightningModule: frontend, input normalisation, steps, metrics, optimizers.

An architecture subclasses `GenreClassifier`, builds its layers from
`self.n_bins` / `self.n_frames` (the frontend's output size for one chunk) and
implements `embed(spec) -> [B, D]` plus a `self.head` Linear(D, n_classes).
Hyperparameters are plain values, so `Arch.load_from_checkpoint(path)` needs no
arguments. How a track's chunks are combined (`set_track_aggregation`) is no
argument of the architectures: it rides in the hyperparameters as two plain
values, `track_aggregation` and `vote_threshold`.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from mgr import MGRError
from mgr.data.chunking import TrackAggregation
from mgr.data.datamodule import PADDING_LABEL
from mgr.features import build_frontend
from mgr.models.metrics import TrackMetrics

CONFUSION_KEYS = {"chunk_confusion": "confusion/test_chunk", "track_confusion": "confusion/test_track"}
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


class GenreClassifier(pl.LightningModule):
    def __init__(
        self,
        class_names: list[str],
        feature: dict,
        sample_rate: int,
        chunk_seconds: float,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
    ):
        super().__init__()
        # Collects the subclass's __init__ arguments too (Lightning walks the init frames).
        self.save_hyperparameters()
        self.class_names = list(class_names)
        self.num_classes = len(class_names)
        self.chunk_samples = int(round(chunk_seconds * sample_rate))
        self.frontend = build_frontend({**feature, "sample_rate": sample_rate})
        with torch.no_grad():
            try:
                _, _, self.n_bins, self.n_frames = self.frontend(torch.zeros(1, self.chunk_samples)).shape
            except (AssertionError, RuntimeError) as e:
                raise MGRError(f"data.chunk_seconds={chunk_seconds} is too short for this feature: {e}") from None
        # Seed 001's "layer 0": batch normalisation of each frequency bin of the dB input,
        # so no dataset statistics are needed.
        self.input_norm = nn.BatchNorm2d(self.n_bins)
        # Training-time augmentation of the feature map; mgr.train sets it from the `augment` group.
        # It holds no weights, so checkpoints and inference do not depend on it.
        self.augment: nn.Module = nn.Identity()
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(self.num_classes, average="micro"),
                "f1": MulticlassF1Score(self.num_classes, average="macro"),
            }
        )
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_tracks = TrackMetrics(self.num_classes)
        self.test_tracks = TrackMetrics(self.num_classes)
        self.set_track_aggregation()  # the default until mgr.train or a checkpoint sets it
        # Weighted by batch size and summed over DDP ranks: exact with uneven shards.
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.test_confusion = MulticlassConfusionMatrix(self.num_classes)
        self.test_results: dict[str, Any] = {}

    # --- model -----------------------------------------------------------------
    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, T] waveform -> normalised [B, 1, F, frames] feature map."""
        spec = self.frontend(wave)
        return self.input_norm(spec.transpose(1, 2)).transpose(1, 2)

    def embed(self, spec: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(self.features(wave)))

    def set_track_aggregation(self, name: str | None = None, vote_threshold: float | None = None) -> None:
        """How the chunks of a track are combined (mgr.data.chunking.TrackAggregation) in the val/test
        track metrics, mgr.eval, mgr.predict and mgr.embed; None keeps the current value. Kept in the
        hyperparameters, so the checkpoint carries it."""
        current = getattr(self, "track_aggregation", TrackAggregation())
        self.track_aggregation = TrackAggregation(current.name if name is None else name,
                                                  current.vote_threshold if vote_threshold is None else vote_threshold)
        self.val_tracks.aggregation = self.test_tracks.aggregation = self.track_aggregation
        self.hparams.update(self.track_aggregation.as_dict())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # load_from_checkpoint builds the model from the architecture's arguments only, so the
        # aggregation is restored here; a checkpoint from before it existed: mean of logits. With a
        # trainer attached (resuming, testing the best checkpoint) the run's own setting stays.
        if self._trainer is None:
            stored = checkpoint.get("hyper_parameters") or {}
            default = TrackAggregation()
            self.set_track_aggregation(stored.get("track_aggregation", default.name),
                                       stored.get("vote_threshold", default.vote_threshold))

    def check_min_frames(self, minimum: int, why: str) -> None:
        if self.n_frames < minimum:
            raise MGRError(
                f"{type(self).__name__} needs at least {minimum} feature frames ({why}), but one chunk gives "
                f"{self.n_frames}; raise data.chunk_seconds or lower feature.hop_length."
            )

    # --- steps -----------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        wave, target, _ = batch
        logits = self.head(self.embed(self.augment(self.features(wave))))  # augmented in training only
        loss = F.cross_entropy(logits, target)
        self.train_metrics.update(logits, target)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(target), sync_dist=True)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, batch_size=len(target))
        return loss

    def _eval_step(self, batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Score a batch; returns the logits and targets of the chunks that count: a DDP rank with
        no evaluation chunks of its own evaluates one padding chunk, which counts nowhere."""
        wave, target, track = batch
        keep = target != PADDING_LABEL
        logits, target, track = self(wave)[keep], target[keep], track[keep]
        # Also when empty: the gathered track state then has the same shape on every rank.
        getattr(self, f"{stage}_tracks").update(logits, target, track)
        if len(target):  # the chunk metrics reject empty batches; their sums sync as they are
            getattr(self, f"{stage}_loss").update(F.cross_entropy(logits, target), weight=len(target))
            getattr(self, f"{stage}_metrics").update(logits, target)
        return logits, target

    def _eval_epoch_end(self, stage: str) -> dict[str, torch.Tensor]:
        metrics, tracks, loss = (getattr(self, f"{stage}_{kind}") for kind in ("metrics", "tracks", "loss"))
        self.log_dict(metrics.compute())
        self.log(f"{stage}/loss", loss.compute())
        results = tracks.compute()
        for metric in (metrics, tracks, loss):
            metric.reset()
        self.log(f"{stage}/track_acc", results["track_acc"], prog_bar=stage == "val")
        self.log(f"{stage}/track_f1", results["track_f1"])
        return results

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self):
        self._eval_epoch_end("val")

    def test_step(self, batch, batch_idx):
        logits, target = self._eval_step(batch, "test")
        if len(target):
            self.test_confusion.update(logits, target)

    def on_test_epoch_end(self):
        results = self._eval_epoch_end("test")
        # Rows: true class, columns: predicted class, in the order of class_names.
        self.test_results = {
            "chunk_confusion": self.test_confusion.compute().cpu().tolist(),
            "track_confusion": results["track_confusion"].cpu().tolist(),
        }
        self.test_confusion.reset()
        # callback_metrics travel back to the main process after a ddp_spawn test; attributes do not.
        for name, key in CONFUSION_KEYS.items():
            self.trainer.callback_metrics[key] = torch.tensor(self.test_results[name])

    def on_test_end(self):
        # Runs after the callbacks' on_test_end: the other ranks wait while rank 0 draws its
        # plots, instead of tearing down their process group under it (a gloo rank aborted so).
        self.trainer.strategy.barrier("mgr-test-end")

    # Under ddp_spawn on the CPU, tensors sent to the worker processes share memory. Lightning
    # copies parameters and buffers, but not torchmetrics states, which are updated in place:
    # every rank would add into the same counts. reset() gives each process its own.
    def on_fit_start(self):
        for metric in self.modules():
            if isinstance(metric, Metric):
                metric.reset()

    def on_validation_start(self):
        for metric in (self.val_metrics, self.val_tracks, self.val_loss):
            metric.reset()

    def on_test_start(self):
        for metric in (self.test_metrics, self.test_tracks, self.test_loss, self.test_confusion):
            metric.reset()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The architecture's name, so mgr.models.load_model knows which class to restore.
        checkpoint["mgr_model"] = type(self).__name__

    # --- optimisation ----------------------------------------------------------
    def configure_optimizers(self):
        opt_cfg = dict(self.hparams.optimizer or {"name": "adam", "lr": 1e-3})
        name = opt_cfg.pop("name", "adam")
        if name not in OPTIMIZERS:
            raise MGRError(f"Unknown model.optimizer.name={name!r}; choose one of {sorted(OPTIMIZERS)}.")
        optimizer = OPTIMIZERS[name](self.parameters(), **opt_cfg)
        sched_cfg = dict(self.hparams.scheduler or {"name": "none"})
        name = sched_cfg.pop("name", "none")
        if name == "none":
            return optimizer
        if name == "cosine":
            epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 100
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, **sched_cfg)
            return {"optimizer": optimizer, "lr_scheduler": scheduler}
        if name == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", **sched_cfg)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
        raise MGRError(f"Unknown model.scheduler.name={name!r}; choose one of none, cosine, plateau.")


def test_confusions(trainer: pl.Trainer) -> dict[str, list]:
    """The test confusion matrices of the trainer's last test run (also one run in spawned processes)."""
    return {name: trainer.callback_metrics[key].tolist() for name, key in CONFUSION_KEYS.items()
            if key in trainer.callback_metrics}
