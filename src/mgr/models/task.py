"""The classification task, one per way of training, over one shared evaluation.

`GenreClassifier` holds what every task shares: an encoder (waveform -> embeddings: a frontend and
a net of mgr.nets, or, for `model=probe`, a pretrained encoder of mgr.encoders, built from the
`encoder` settings), the output layer built from the encoder's embedding size, the chunk and track
metrics (a track's chunks combined by its `track_aggregation`), the validation and test steps, the
test predictions and the checkpoint's tag. Its `task` (TASKS) says what a track's label is: one class
(multiclass: softmax, cross-entropy) or any number of them (multilabel: a sigmoid per class, binary
cross-entropy, targets [batch, classes] of 0/1, and per-class `thresholds` chosen on validation).
How the head learns is its subclass's:

- `TrainedClassifier`: the head (and the net) trained by gradient descent, with the loss, the
  optimizer and schedule (the `optimizer` and `scheduler` config groups), mixup, label smoothing and
  training-time augmentation.
- `FittedClassifier`: a head fitted in closed form (the SVMs, the probe's `select`; `head.fitted`),
  by the same training loop: the task collects the embeddings and fits the head before validation.

Building `GenreClassifier(...)` builds the task of its head's way of training, so the hyperparameters
alone choose the class, and a checkpoint alone builds its task: `load_model(path)` (or
`GenreClassifier.load_from_checkpoint(path)`, the same) reads it through mgr.models.checkpoints, with
weights_only=True. Every hyperparameter is a plain value; checkpoints of either task, and of the one
class both were until 2026-12, carry the same hyperparameters and the same tag.
"""
from __future__ import annotations

import inspect
import logging
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import MulticlassConfusionMatrix
from torchmetrics.utilities.distributed import gather_all_tensors

from mgr import MGRError
from mgr.encoders.pretrained import PretrainedEncoder
from mgr.labels import PADDING_LABEL
from mgr.features import build_augment
from mgr.models.aggregation import TrackAggregation
from mgr.models.encoder import SpectrogramEncoder
from mgr.models.checkpoints import CHECKPOINT_TAG, first_line, read_checkpoint
from mgr.models.sizing import check_model_size
from mgr.models.heads import build_head, fuses_descriptors, head_settings, is_fitted
from mgr.models.novelty import NoveltyDetector
from mgr.models.metrics import TRAINING_BINS, TrackMetrics, chunk_metrics, f1_thresholds
from mgr.models.optim import DEFAULT_OPTIMIZER, build_optimizer, build_scheduler
from mgr.utils.config import resolved_dict

log = logging.getLogger(__name__)

# What a track's label is (the `task` config group): one class, or any number of them.
TASKS = ("multiclass", "multilabel")
# A multi-label model's per-class threshold before validation has chosen one.
DEFAULT_THRESHOLD = 0.5


class GenreClassifier(pl.LightningModule):
    """What every task shares (see the module docstring); `GenreClassifier(...)` builds the task of its
    head's way of training: a FittedClassifier for a head fitted in closed form, else a TrainedClassifier."""

    def __new__(cls, *args, **kwargs):
        if cls is GenreClassifier:  # the hyperparameters choose the class, as a checkpoint's do
            try:
                head = inspect.signature(GenreClassifier.__init__).bind_partial(None, *args, **kwargs).arguments.get("head")
            except TypeError:  # arguments that fit no task: __init__ says which, as it always did
                head = None
            cls = FittedClassifier if is_fitted(head) else TrainedClassifier
        return super().__new__(cls)

    def __init__(
        self,
        class_names: list[str],
        feature: dict,
        sample_rate: int,
        chunk_seconds: float,
        net: dict,
        head: dict | None = None,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        track_aggregation: str = TrackAggregation.name,
        vote_threshold: float = TrackAggregation.vote_threshold,
        encoder: dict | None = None,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        temperature: float | list[float] = 1.0,
        task: str = "multiclass",
        thresholds: list[float] | None = None,
        class_parents: dict[str, str | None] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.class_names = list(class_names)
        self.num_classes = len(class_names)
        if task not in TASKS:
            raise MGRError(f"task={task!r} is not one of {', '.join(TASKS)}.")
        self.multilabel = task == "multilabel"
        self.class_parents = checked_class_parents(class_parents, self.class_names, self.multilabel)
        if encoder is None:
            self.encoder = SpectrogramEncoder(feature, sample_rate, chunk_seconds, net)
            self.hparams["net"] = self.encoder.net_settings  # as built, so a checkpoint restores it as it is
        else:  # a probe: `net` is {"name": "probe"}, and `feature` goes unused
            self.encoder = PretrainedEncoder(encoder, sample_rate, chunk_seconds, fuses_descriptors(head))
            self.hparams["encoder"] = self.encoder.settings  # as built: with its weights' hash
        self.head = build_head(head, self.encoder.embedding_dim, self.num_classes,
                               getattr(self.encoder, "embedding_layers", None))
        # Fitted by mgr.train on the best weights (its finish_best); empty in checkpoints written before.
        self.novelty = NoveltyDetector()
        # Checked for every task, so a wrong recipe is one sentence whichever head it meets.
        if not 0.0 <= label_smoothing < 1.0 or mixup_alpha < 0.0:
            raise MGRError(f"label_smoothing must lie in [0, 1) and mixup_alpha be >= 0 (got {label_smoothing} "
                           f"and {mixup_alpha}).")
        metrics = chunk_metrics(self.num_classes, self.multilabel)
        self.train_metrics = chunk_metrics(self.num_classes, self.multilabel, TRAINING_BINS).clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_tracks = TrackMetrics(self.num_classes, multilabel=self.multilabel)
        self.test_tracks = TrackMetrics(self.num_classes, multilabel=self.multilabel)
        # Weighted by batch size and summed over DDP ranks: exact with uneven shards.
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.test_confusion = MulticlassConfusionMatrix(self.num_classes)
        self.test_results: dict[str, Any] = {}
        self.set_track_aggregation(track_aggregation, vote_threshold)
        self.set_temperature(temperature)
        self.set_thresholds(thresholds)
        # Each test chunk's logits, calibrated and as trained (T = 1), and its track: the calibration errors' inputs.
        self._test_chunks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._prepare_training()

    def _prepare_training(self) -> None:
        """What the subclass's way of training needs, once the encoder and head are built (none: evaluation only)."""

    @classmethod
    def from_config(cls, cfg: DictConfig, class_names: list[str],
                    class_parents: dict[str, str | None] | None = None) -> "GenreClassifier":
        """The task of a training config: `model` (the net's name and settings, and its `head`),
        `feature`, `optimizer`, `scheduler`, the data's sample rate and chunk length, the `encoder`
        of a probe (conf/model/probe.yaml selects it) and the `recipe`'s label smoothing and mixup;
        `class_parents`, the data's tree over the classes (its data module's), where it has one."""
        net = resolved_dict(cfg.model)
        head = net.pop("head", None)
        model = cls(class_names, resolved_dict(cfg.feature), cfg.data.sample_rate, cfg.data.chunk_seconds, net, head,
                    resolved_dict(cfg.optimizer) if cfg.get("optimizer") else None,
                    resolved_dict(cfg.scheduler) if cfg.get("scheduler") else None,
                    cfg.get("track_aggregation") or TrackAggregation.name,
                    cfg.get("vote_threshold", TrackAggregation.vote_threshold),
                    resolved_dict(cfg.encoder) if cfg.get("encoder") else None,
                    *(float((cfg.get("recipe") or {}).get(key, 0.0)) for key in ("label_smoothing", "mixup_alpha")),
                    task=cfg.get("task") or "multiclass", class_parents=class_parents)
        # The `augment` group: training-time only and without weights, so not among the hyperparameters a
        # checkpoint rebuilds the model from. A pretrained encoder has no feature map: build_augment refuses.
        augment = build_augment(resolved_dict(cfg.augment) if cfg.get("augment") else {}, model.encoder.n_bins,
                                model.encoder.n_frames)
        if isinstance(model, TrainedClassifier):
            model.augment = augment
        return model

    # --- model -----------------------------------------------------------------
    @property
    def architecture(self) -> str:
        """What the model is, for people: the net's name, and the head's when it is not a trained linear layer."""
        head = head_settings(self.hparams.head)["name"]
        encoder = self.hparams.get("encoder")
        name = self.hparams.net["name"] if encoder is None else f"{encoder['name']} probe"
        return name + ("" if head == "linear" else f" + {head}")

    @property
    def chunk_samples(self) -> int:
        return self.encoder.chunk_samples

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, T] waveform -> [B, D] embeddings, the input of the output layer."""
        return self.encoder(wave)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """The calibrated logits: the head's divided by the temperature (mgr.models.calibration), so every
        probability mgr reports is calibrated; training's loss reads the head's own (training_step)."""
        return self.calibrated(self.head(self.encoder(wave)))

    def calibrated(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits as trained [..., C] divided by the temperature: one, or a multi-label model's one per tag."""
        if isinstance(self.temperature, list):
            return logits / torch.tensor(self.temperature, dtype=logits.dtype, device=logits.device)
        return logits / self.temperature

    @property
    def forwards_its_head(self) -> bool:
        """Whether forward is this class's (the head on the embedding, calibrated), so its parts can be had
        from one pass; a subclass with a forward of its own (an ensemble: its members' mean probabilities)
        has no one embedding or head."""
        return type(self).forward is GenreClassifier.forward

    def embedded_logits(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The calibrated logits (forward's) and, from the same pass, the embeddings they come from (None
        where forward is a subclass's own: `forwards_its_head`)."""
        if not self.forwards_its_head:
            return self(wave), None
        embeddings = self.embed(wave)
        return self.calibrated(self.head(embeddings)), embeddings

    def logits_both_ways(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The calibrated logits (forward's) and the logits as trained (T = 1): of one pass through the net
        where `forwards_its_head`; otherwise (an ensemble) run again with every temperature at 1."""
        from mgr.models.calibration import as_trained, is_calibrated

        if self.forwards_its_head:
            trained = self.head(self.encoder(wave))
            return self.calibrated(trained), trained
        logits = self(wave)
        if not is_calibrated(self):
            return logits, logits
        with as_trained(self):
            return logits, self(wave)

    def set_temperature(self, temperature: float | list[float]) -> None:
        """The temperature of the model's probabilities (1: as trained; a multi-label model's may be a list,
        one per tag), kept in the hyperparameters so the checkpoint carries it; a checkpoint written before
        temperature scaling has none and loads with 1."""
        per_tag = isinstance(temperature, (list, tuple))
        values = list(temperature) if per_tag else [temperature]
        if (per_tag and not (self.multilabel and len(values) == self.num_classes)) or any(
                isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < float("inf") for t in values):
            tags = f", or for a multilabel model a list of {self.num_classes} (one per tag)" if self.multilabel else ""
            raise MGRError(f"temperature={temperature!r} must be a positive number{tags} (1: the probabilities "
                           "as trained).")
        self.temperature = [float(t) for t in values] if per_tag else float(temperature)
        self.hparams["temperature"] = self.temperature

    def set_thresholds(self, thresholds: list[float] | None) -> None:
        """A multi-label model's per-class thresholds (a class is answered when its probability is at or above
        its threshold): chosen on the validation tracks after each validation (`choose_thresholds`), kept in
        the hyperparameters so each checkpoint carries those of its own weights; None: DEFAULT_THRESHOLD."""
        if thresholds is not None and (not self.multilabel or len(thresholds) != self.num_classes
                                       or not all(0 <= float(t) <= 1 for t in thresholds)):
            raise MGRError(f"thresholds must be null or, for a multilabel model, {self.num_classes} probabilities "
                           f"(one per class); got {thresholds!r}.")
        self.thresholds = None if thresholds is None else [float(t) for t in thresholds]
        self.hparams["thresholds"] = self.thresholds
        if self.multilabel:  # the test scores F1 at them
            self.test_tracks.thresholds = torch.tensor(self.thresholds or [DEFAULT_THRESHOLD] * self.num_classes)

    def answered(self, probabilities: torch.Tensor) -> torch.Tensor:
        """A multi-label model's answers [..., C]: whether each class's probability is at or above its threshold."""
        thresholds = self.thresholds or [DEFAULT_THRESHOLD] * self.num_classes
        return probabilities >= torch.tensor(thresholds, dtype=probabilities.dtype, device=probabilities.device)

    def set_track_aggregation(self, name: str | None = None, vote_threshold: float | None = None) -> None:
        """How the chunks of a track are combined (mgr.models.aggregation.TrackAggregation) in the val/test
        track metrics, mgr.eval, mgr.predict and mgr.embed; None keeps the current value. Kept in the
        hyperparameters, so the checkpoint carries it."""
        current = getattr(self, "track_aggregation", TrackAggregation())
        self.track_aggregation = TrackAggregation(current.name if name is None else name,
                                                  current.vote_threshold if vote_threshold is None else vote_threshold,
                                                  self.multilabel)
        self.val_tracks.aggregation = self.test_tracks.aggregation = self.track_aggregation
        self.hparams.update(self.track_aggregation.as_dict())

    # --- evaluation ------------------------------------------------------------
    def _eval_step(self, batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Score a batch; returns the logits and targets of the chunks that count: a DDP rank with
        no evaluation chunks of its own evaluates one padding chunk, which counts nowhere."""
        wave, target, track = batch
        return self._score(self(wave), target, track, stage)

    def _score(self, logits, target, track, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        keep = self.counted(target)
        logits, target, track = logits[keep], self.targets_of(target[keep]), track[keep]
        # Also when empty: the gathered track state then has the same shape on every rank.
        getattr(self, f"{stage}_tracks").update(logits, target, track)
        if len(target):  # the chunk metrics reject empty batches; their sums sync as they are
            getattr(self, f"{stage}_loss").update(self.loss(logits, target), weight=len(target))
            getattr(self, f"{stage}_metrics").update(logits, self.metric_targets(target))
        return logits, target

    @staticmethod
    def counted(target: torch.Tensor) -> torch.Tensor:
        """Which chunks of a batch count: not a DDP rank's padding chunk (a label, or a row, of PADDING_LABEL)."""
        return target != PADDING_LABEL if target.dim() == 1 else (target != PADDING_LABEL).all(dim=1)

    def targets_of(self, target: torch.Tensor) -> torch.Tensor:
        """The targets the task scores against: class indices, or for a multi-label model rows [N, C] of 0/1
        (a single-label dataset's class indices become one-hot rows, so any data trains under either task)."""
        if self.multilabel and target.dim() == 1:
            return F.one_hot(target.long(), self.num_classes).float()
        return target.float() if self.multilabel else target

    def metric_targets(self, target: torch.Tensor) -> torch.Tensor:
        """Targets as torchmetrics takes them: multi-label rows as integers."""
        return target.round().long() if self.multilabel else target

    def loss(self, logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Cross-entropy over the classes, or for a multi-label model the mean binary cross-entropy of each
        class's sigmoid, its 0/1 targets smoothed towards 1/2 by `label_smoothing` (as cross-entropy's are
        towards the uniform distribution)."""
        if not self.multilabel:
            return F.cross_entropy(logits, target, label_smoothing=label_smoothing)
        smoothed = target * (1.0 - label_smoothing) + label_smoothing / 2
        return F.binary_cross_entropy_with_logits(logits.float(), smoothed)

    def _eval_epoch_end(self, stage: str) -> dict[str, torch.Tensor]:
        metrics, tracks, loss = (getattr(self, f"{stage}_{kind}") for kind in ("metrics", "tracks", "loss"))
        self.log_dict(metrics.compute())
        self.log(f"{stage}/loss", loss.compute())
        names = tracks.names
        results = tracks.compute()
        for metric in (metrics, tracks, loss):
            metric.reset()
        for i, name in enumerate(names):  # the first is the progress bar's
            self.log(f"{stage}/{name}", results[name], prog_bar=stage == "val" and i == 0)
        return results

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self):
        results = self._eval_epoch_end("val")
        if self.multilabel and len(results["track_labels"]):
            self.choose_thresholds(results["track_scores"], results["track_labels"])

    def choose_thresholds(self, track_scores: torch.Tensor, track_labels: torch.Tensor) -> None:
        """Each class's threshold maximising its F1 on the validation tracks (mgr.models.metrics.f1_thresholds):
        every rank gets the same tracks (TrackMetrics gathers them), so every rank chooses the same."""
        probabilities = self.track_aggregation.probabilities_of(track_scores.float())
        self.set_thresholds(f1_thresholds(probabilities, track_labels).tolist())

    def test_step(self, batch, batch_idx):
        wave, target, track = batch
        logits, trained = self.logits_both_ways(wave)
        keep = self.counted(target)
        self._test_chunks.append((logits[keep].float(), trained[keep].float(), track[keep]))
        logits, target = self._score(logits, target, track, "test")
        if len(target) and not self.multilabel:  # a multi-label model has no confusion matrix
            self.test_confusion.update(logits, target)

    def on_test_epoch_end(self):
        results = self._eval_epoch_end("test")
        # Rows: true class, columns: predicted class, in the order of class_names.
        self.test_results = {} if self.multilabel else {
            "chunk_confusion": self.test_confusion.compute().cpu().tolist(),
            "track_confusion": results["track_confusion"].cpu().tolist(),
        }
        self.test_confusion.reset()
        # Every rank's predictions (gathered by TrackMetrics), read by mgr.test_report's TestReport on rank 0.
        # torchmetrics squeezes a one-element result (a test split of one track): the shapes are restored,
        # every array 1-D but the scores [tracks, classes] (and a multi-label model's labels [tracks, classes]
        # and chunk logits [chunks, classes]).
        predictions = {name: value.cpu().numpy().reshape(-1) for name, value in results.items()
                       if name.startswith(("track_ids", "track_scores", "track_labels", "chunk_"))}
        rows = {"track_scores": len(predictions["track_ids"]), "track_labels": len(predictions["track_ids"]),
                "chunk_predictions": len(predictions["chunk_tracks"])}
        for name, n in rows.items():
            if name == "track_scores" or self.multilabel:
                predictions[name] = predictions[name].reshape(n, -1)
        self.test_results.update(predictions)
        self.test_results["temperature"] = self.temperature
        if self.multilabel:
            self.test_results["thresholds"] = self.thresholds
        self.test_results.update(self._test_chunks_both_ways(results["track_ids"]))

    def _test_chunks_both_ways(self, track_ids: torch.Tensor) -> dict[str, Any]:
        """Every rank's test chunks for the calibration errors before and after calibration: their logits
        calibrated (`chunk_logits`) and as trained (`chunk_logits_as_trained`), the row of their track
        among `track_ids` (`chunk_rows`), and the tracks' scores as trained (`track_scores_as_trained`),
        combined from the chunks' logits at T = 1 by the track aggregation as the calibrated ones are."""
        parts = list(zip(*self._test_chunks)) or [(), (), ()]
        empty = (torch.zeros(0, self.num_classes, device=self.device),) * 2 + (torch.zeros(0, dtype=torch.long, device=self.device),)
        logits, trained, tracks = (self._all_ranks(torch.cat(part) if part else none) for part, none in zip(parts, empty))
        self._test_chunks.clear()
        track_ids = track_ids.reshape(-1).to(tracks.device)  # torchmetrics squeezes a one-track split's
        rows = torch.searchsorted(track_ids, tracks)
        scores = self.track_aggregation.scores(trained, rows, len(track_ids))
        return {"chunk_logits": logits.cpu().numpy(), "chunk_logits_as_trained": trained.cpu().numpy(),
                "chunk_rows": rows.cpu().numpy(), "track_scores_as_trained": scores.cpu().numpy()}

    def on_test_end(self):
        # Runs after the callbacks' on_test_end: the other ranks wait while rank 0 draws its plots and
        # writes the test report, instead of tearing down their process group under it (a gloo rank aborted so).
        self.trainer.strategy.barrier("mgr-test-end")

    def _all_ranks(self, t: torch.Tensor) -> torch.Tensor:
        """`t` of every DDP rank, concatenated in rank order (shards may differ in size); `t` alone in one process."""
        return torch.cat(gather_all_tensors(t)) if self.trainer.world_size > 1 else t

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
        self._test_chunks.clear()

    # --- checkpoints -----------------------------------------------------------
    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None,
                             **overrides) -> "GenreClassifier":
        """Lightning's classmethod, read as mgr reads every checkpoint (`load_model`): Lightning's own
        would unpickle a URL with weights_only=False. `overrides` replace stored hyperparameters."""
        if hparams_file is not None or strict is False or not isinstance(map_location, (str, torch.device, type(None))):
            raise MGRError("GenreClassifier.load_from_checkpoint takes a checkpoint path, a device as map_location "
                           "and hyperparameter overrides; hparams_file, strict=False and mapping functions are "
                           "not supported.")
        checkpoint = read_checkpoint(checkpoint_path)
        checkpoint["hyper_parameters"] = {**checkpoint.get("hyper_parameters", {}), **overrides}
        model = load_model(checkpoint_path, checkpoint)
        return model if map_location is None else model.to(map_location)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Lightning calls this when resuming (or testing a checkpoint path) on a built task; the
        # checkpoint has been read by mgr.models.checkpoints, which upgrades the old layout.
        if checkpoint.get("mgr_model") != CHECKPOINT_TAG or "mgr_upgraded_from" in checkpoint:
            raise MGRError("This checkpoint was written by mgr before 2026-12: mgr.eval, mgr.predict and mgr.embed "
                           "load it, but training cannot resume from it; start a new run.")
        # Lightning loads the weights alone: the thresholds chosen with them (testing the best checkpoint) too.
        if self.multilabel:
            self.set_thresholds(checkpoint.get("hyper_parameters", {}).get("thresholds"))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # One tag for every task (what mgr.models.checkpoints recognises): the head's settings in the
        # hyperparameters say which task a checkpoint builds.
        checkpoint["mgr_model"] = CHECKPOINT_TAG


class TrainedClassifier(GenreClassifier):
    """The head (and the net or fine-tuned encoder) trained by gradient descent."""

    def _prepare_training(self) -> None:
        # Training objective only (evaluation's loss is the plain cross-entropy, comparable across runs).
        self.label_smoothing, self.mixup_alpha = float(self.hparams.label_smoothing), float(self.hparams.mixup_alpha)
        # Training-time augmentation of the feature map; from_config sets it from the `augment` group.
        # It holds no weights, so checkpoints and inference do not depend on it.
        self.augment: nn.Module = nn.Identity()

    def training_step(self, batch, batch_idx):
        wave, target, track = batch
        wave, mixed, weight = self._mixup(wave, target)
        logits = self.head(self.encoder(wave, self.augment))  # augmented in training only
        target, mixed = self.targets_of(target), self.targets_of(mixed)
        loss = self.loss(logits, target, self.label_smoothing)
        if weight < 1.0:  # for a multi-label model, the binary cross-entropy against the mixed targets
            loss = weight * loss + (1.0 - weight) * self.loss(logits, mixed, self.label_smoothing)
        self.train_metrics.update(logits, self.metric_targets(target))  # against each mix's larger part
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(target), sync_dist=True)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, batch_size=len(target))
        return loss

    def _mixup(self, wave: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Mixup (Zhang et al. 2018) of the batch's inputs, as AST and PANNs train on few labels: each
        example mixed with another of the batch by one weight ~ Beta(alpha, alpha), kept >= 0.5 so the
        example's own label weighs more. Mixing waveforms mixes the sounds themselves (the probe's cached
        layers mix linearly). Returns the inputs, the other examples' labels and the weight."""
        if self.mixup_alpha <= 0.0 or len(target) < 2:
            return wave, target, 1.0
        weight = torch.distributions.Beta(self.mixup_alpha, self.mixup_alpha).sample().item()
        weight = max(weight, 1.0 - weight)
        other = torch.randperm(len(target), device=target.device)
        return weight * wave + (1.0 - weight) * wave[other], target[other], weight

    def configure_optimizers(self):
        optimizer = build_optimizer(self.hparams.optimizer, self._parameter_groups())
        per_step = (self.hparams.scheduler or {}).get("name") == "onecycle"  # asks Lightning to size the loader
        scheduler = build_scheduler(self.hparams.scheduler, optimizer, self.trainer.max_epochs,
                                    self.trainer.estimated_stepping_batches if per_step else None)
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}

    def _parameter_groups(self) -> list[dict]:
        """The trainable parameters; a fine-tuned pretrained encoder's at its lr_scale of the learning
        rate. A frozen one's need no gradient and are not given to the optimizer."""
        backbone = getattr(self.encoder, "backbone", None)
        scaled = [p for p in backbone.parameters() if p.requires_grad] if backbone is not None else []
        ids = {id(p) for p in scaled}
        groups = [{"params": [p for p in self.parameters() if p.requires_grad and id(p) not in ids]}]
        if scaled:
            lr = (self.hparams.optimizer or DEFAULT_OPTIMIZER).get("lr", DEFAULT_OPTIMIZER["lr"])
            groups.append({"params": scaled, "lr": lr * self.encoder.lr_scale})
        return groups


class FittedClassifier(GenreClassifier):
    """A head fitted in closed form (`head.fitted`: the SVMs, the probe's `select`). The training loop
    takes no gradient steps: it collects the training embeddings for the head's `passes` epochs and
    fits the head on all collected so far before each validation (and at each epoch's end, for runs
    that do not validate), so every validation sees the head as it stands.

    A head that chooses its settings on the validation chunks (the RBF SVM's C and gamma; the probe's
    `select` head its candidate and layer, by the validation track accuracy): after each fit,
    validation embeds all chunks first, the head chooses, then they are scored.

    Under task=multilabel every head fits one binary problem per tag on rows [N, C] of 0/1 (a single-label
    dataset's one-hot), and chooses by the validation track macro PR-AUC, then ROC-AUC (`_track_scorer`).

    Under DDP every rank fits, and chooses, the head on every rank's chunks (gathered): the training
    chunks each read once (the repeats DistributedSampler pads a rank's share with are left out,
    `_sampler_items`), the validation chunks without padding, so it is the head a single process fits on
    the same chunks. Each fit and choice then ends with every rank taking rank 0's head, bit for bit
    (`_take_rank_zero_head`): a rank whose fit rounds otherwise cannot evaluate another head than the one
    rank 0 saves.

    The collected embeddings are not kept in checkpoints (they would outweigh the head many times): a run
    resumed from one (`ckpt_path=last`) collects its `passes` again from the epoch it resumes at, and fits
    on those alone, as trainer.max_epochs permits; the training chunks are the same, so the head is
    fitted on as many passes as an uninterrupted run's."""

    def _prepare_training(self) -> None:
        if self.hparams.encoder is not None and any(p.requires_grad for p in self.encoder.parameters()):
            raise MGRError(f"model.head={head_settings(self.hparams.head)['name']} is fitted in closed form and "
                           "trains nothing else, and encoder.finetune=true or encoder.layer=weighted learn by gradient "
                           "descent; give a trained head (model.head={name: linear} or {name: mlp, hidden: 256, "
                           "dropout: 0.2}) or leave them out.")
        # Manual optimization: the training step steps the placeholder optimizer itself, with no loss
        # (see configure_optimizers).
        self.automatic_optimization = False
        self.step_counter = StepCounter()
        self._fit_batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # embeddings, labels, tracks
        self._fit_pending = False
        self._passes = 0  # training epochs collected by this process (a resumed run's since it resumed)
        self.fitted_chunks = 0  # the training chunks of every rank the head was last fitted on
        self._epoch_chunks = 0  # training chunks this rank has read in the current epoch
        self._select_pending = False
        self._val_batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def configure_optimizers(self):
        # The head takes no gradient steps, but Lightning counts training steps by optimizer steps:
        # without them trainer.global_step stays 0, so ModelCheckpoint never saves (it skips a step
        # count it has saved at, 0 included), recipe.min_steps would hold the run forever, and
        # max_steps would never end it. An optimizer with a zero learning rate, stepped without
        # gradients (manual optimization: there is no loss to hand Lightning), keeps the count
        # without the trainer's internals (over the StepCounter's parameter when the head, like the
        # RBF SVM, holds buffers only). Its state is what checkpoints of fitted heads have always held.
        return torch.optim.SGD(list(self.head.parameters()) or list(self.step_counter.parameters()), lr=0.0)

    def on_train_start(self):
        if self.current_epoch > 0 and self.head.passes > 1:
            log.info("Resumed at epoch %d: the head's training embeddings are not kept in checkpoints, so it "
                     "collects its %d passes again from this epoch.", self.current_epoch, self.head.passes)
            max_epochs = self.trainer.max_epochs
            left = self.head.passes if max_epochs in (None, -1) else max_epochs - self.current_epoch
            if left < self.head.passes:
                log.warning("Only %d of the head's %d passes fit before trainer.max_epochs=%d: it is fitted on "
                            "%d; give trainer.max_epochs=%d to resume with all of them.", left, self.head.passes,
                            self.trainer.max_epochs, left, self.current_epoch + self.head.passes)
        # The run ends after the head's passes (on_train_epoch_end): said as its epoch count too, so the
        # progress reads "Epoch 1/1" for the one pass of a probe, not "Epoch 1/8" and an early end.
        last = self.current_epoch + self.head.passes
        if self.trainer.max_epochs in (None, -1) or last < self.trainer.max_epochs:
            self.trainer.fit_loop.max_epochs = last

    def on_train_epoch_start(self):
        self._epoch_chunks = 0

    def training_step(self, batch, batch_idx):
        wave, target, track = batch
        first, self._epoch_chunks = self._epoch_chunks, self._epoch_chunks + len(target)
        keep = self._sampler_items(first, len(target)).to(target.device)
        with torch.no_grad():  # the whole batch embedded: a batch of repeats alone leaves an empty share, not none
            self._fit_batches.append((self.encoder(wave)[keep], target[keep], track[keep]))
        self._fit_pending = True
        self.optimizers().step()  # changes nothing (see configure_optimizers); counts the step
        return None

    def _sampler_items(self, first: int, n: int) -> torch.Tensor:
        """Which of this rank's chunks `first` to `first + n - 1` of the epoch are items of the training set,
        not repeats. Under DDP each rank reads DistributedSampler's share (mgr.data.datamodule._shard,
        mgr.data.device_chunks.EpochOrder): the epoch's N items in one order, padded to a multiple of the W
        ranks by repeating its first ones, rank r reading every W-th from r, so the rank's chunk i is
        position i * W + r of that order, a repeat from N on. A repeated chunk would weigh twice in the fit."""
        world = self.trainer.world_size
        if world == 1:
            return torch.ones(n, dtype=torch.bool)
        items = len(self.trainer.train_dataloader.dataset)
        return torch.arange(first, first + n) * world + self.global_rank < items

    # Validation runs before on_train_epoch_end, so the head is fitted when validation starts
    # (and at the epoch's end, for runs that do not validate).
    def on_validation_epoch_start(self):
        self._fit_head()

    def on_train_epoch_end(self):
        self._fit_head()
        self._passes += 1
        if self._passes >= self.head.passes:  # counted from this process's first epoch: see the class docstring
            self.trainer.should_stop = True

    def validation_step(self, batch, batch_idx):
        if self._select_pending:  # scored at the epoch's end, by the head chosen on all of them
            wave, target, track = batch
            self._val_batches.append((self.encoder(wave), target, track))
            return
        super().validation_step(batch, batch_idx)

    def on_validation_epoch_end(self):
        if self._select_pending:
            self._select_head()
        super().on_validation_epoch_end()

    def _fit_head(self) -> None:
        if not self._fit_pending:
            return
        # Every rank fits the same head on all ranks' embeddings.
        x, y, track = (self._all_ranks(torch.cat([batch[i] for batch in self._fit_batches])) for i in range(3))
        y = self.targets_of(y)
        self._fit_pending = False
        if not self.multilabel and len(y.unique()) < 2:  # multi-label: a tag without both fits as a constant
            log.warning("The training chunks seen so far hold one class only; the head is not fitted yet.")
            return
        if getattr(self.head, "selects_by_track", False):
            self.head.fit(x, y, track, self._groups_of("train", track))
        else:
            self.head.fit(x, y)
        self.fitted_chunks = len(y)
        self._select_pending = hasattr(self.head, "select")
        self._take_rank_zero_head()  # also the head a select head keeps where no validation follows

    def _select_head(self) -> None:
        batches, self._val_batches, self._select_pending = self._val_batches, [], False
        if not batches:
            return
        x, y, track = (torch.cat([batch[i] for batch in batches]) for i in range(3))
        keep = self.counted(y)
        # Every rank chooses on all ranks' chunks.
        x, y, track = (self._all_ranks(t[keep]) for t in (x, self.targets_of(y[keep]), track))
        if getattr(self.head, "selects_by_track", False):
            self.head.select(x, y, track, self._track_scorer, self._groups_of("val", track))
        elif self.multilabel:  # per-tag SVMs are chosen by the multi-label track scores
            self.head.select(x, y, self._track_scorer(y, track))
        else:
            self.head.select(x, y)
        self._take_rank_zero_head()
        for embeddings, target, track in batches:
            self._score(self.head(embeddings), target, track, "val")

    def _take_rank_zero_head(self) -> None:
        """Under DDP, rank 0's fitted head (its state dict: tensors, and the probe's choice as extra state) on
        every rank. The ranks fit and choose on the same gathered chunks, but GPU kernels that are not
        deterministic (or BLAS on another thread count) can round one rank's fit otherwise, and a tie of C,
        gamma, layer or candidate then break another way: rank 0 would save one head while another rank
        evaluated another, and the metrics gathered over the ranks would mix the two."""
        if self.trainer.world_size == 1:
            return
        state = None
        if self.global_rank == 0:  # sent from the CPU: no rank unpickles tensors onto rank 0's GPU
            state = {name: value.cpu() if torch.is_tensor(value) else value
                     for name, value in self.head.state_dict().items()}
        state = self.trainer.strategy.broadcast(state, src=0)
        if self.global_rank != 0:
            with torch.inference_mode(False):  # in validation: the tensors loaded are updated in training later
                self.head.load_state_dict(state)

    def _groups_of(self, split: str, track: torch.Tensor) -> torch.Tensor | None:
        """The data's group of each of a split's tracks (the data module's track_groups: clips of a
        piece, an album), or None where the data says nothing of groups. Asked of whatever data module
        the trainer holds, by duck typing: the model imports nothing of mgr.data (tests/test_layout.py)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if not hasattr(datamodule, "track_groups"):
            return None
        return torch.as_tensor(datamodule.track_groups(split), device=track.device)[track]

    def _track_scorer(self, target: torch.Tensor, track: torch.Tensor):
        """A function of the logits of the chunks of labels `target` and tracks `track` -> (track accuracy,
        chunk accuracy), the chunks of a track combined as the val/test track metrics combine them; for a
        multi-label model -> (track macro PR-AUC, track macro ROC-AUC), the val/track_ap and val/track_auc
        those logits would log (TrackMetrics' own multilabel metrics)."""
        def score(logits: torch.Tensor) -> tuple[float, float]:
            tracks = TrackMetrics(self.num_classes, self.track_aggregation, self.multilabel)
            tracks.update(logits, target, track)
            scores, labels = tracks.track_scores()  # not compute(): the chunks are gathered from every rank already
            if self.multilabel:
                metrics = tracks.multilabel_scores(scores, labels)  # what its compute() logs, without a DDP sync
                return metrics["track_ap"].item(), metrics["track_auc"].item()
            track_accuracy = (scores.argmax(1) == labels).float().mean().item()
            return track_accuracy, (logits.argmax(1) == target).float().mean().item()
        return score


class StepCounter(nn.Module):
    """The one trainable parameter of a task whose head is fitted in closed form, which nothing changes:
    DDP refuses to wrap a module without one (the RBF SVM holds buffers only, a stats net has no
    weights), and the placeholder optimizer (FittedClassifier.configure_optimizers) steps it. Not in
    the state dict, so checkpoints hold what they held before it."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        pass

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        pass


def checked_class_parents(class_parents: dict | None, class_names: list[str], multilabel: bool) -> dict | None:
    """The tree over a multi-label model's classes (class name -> its parent class, None at the top: the data
    module's `class_parents`), kept in the hyperparameters so mgr.predict rolls answers up from the checkpoint
    alone; None, as in checkpoints written before it: no tree."""
    if class_parents is None:
        return None
    names = set(class_names)
    if not multilabel or not set(class_parents) <= names or not set(class_parents.values()) <= names | {None}:
        raise MGRError(f"class_parents must be null or, for a multilabel model, map classes to parent classes "
                       f"(or null) among {class_names}; got {class_parents!r}.")
    return dict(class_parents)


def load_model(ckpt_path, checkpoint: dict | None = None) -> GenreClassifier:
    """Build mgr's task from a checkpoint alone (read once: pass `checkpoint` if already read). Its
    weights are all finite (read_checkpoint refuses others), and the model its hyperparameters ask
    for is sized before it is built (check_model_size)."""
    checkpoint = checkpoint if checkpoint is not None else read_checkpoint(ckpt_path)
    try:
        check_model_size(checkpoint["hyper_parameters"], ckpt_path)
        model = GenreClassifier(**checkpoint["hyper_parameters"])
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError, ArithmeticError) as e:  # an infinite length, a zero Hz
        raise MGRError(f"{ckpt_path} does not fit mgr's GenreClassifier: {first_line(e)}") from None
    return model
