"""Novelty detection (issue 25, "an honest unknown"): how far a chunk's embedding lies from the training
data, so that audio of a kind the model never saw (noise, speech) can be told apart from music of its
classes, which softmax confidence alone does poorly.

The score is Lee et al. 2018's ("A simple unified framework for detecting out-of-distribution samples"):
class-conditional Gaussians with one shared covariance, fitted on the training chunks' embeddings (the
input of the output layer, `model.embed`), and a chunk's squared Mahalanobis distance to the nearest
class mean. Here:

- The embeddings are standardised (each column by the training chunks' mean and standard deviation,
  the latter floored at SCALE_FLOOR of the median column's: `standardisation`) and projected on their
  first principal components, the fewest that keep EXPLAINED (99 %) of the variance and at most
  MAX_COMPONENTS, so a probe's ~2,600-wide embedding stores a few MB and the covariance is estimated
  in directions the training chunks fill (a direction they barely span would make any validation
  chunk that moves along it look novel).
- The covariance is scikit-learn's Ledoit-Wolf shrinkage estimate of the chunks' deviations from their
  own group's mean, inverted once (`precision`).
- The groups: a multi-class model's classes, each with at least MIN_CLASS_CHUNKS training chunks; the
  chunks of classes with fewer are pooled into one more group (a mean of a handful of chunks would be
  noise). Multi-label targets (rows of 0/1: a chunk belongs to several classes at once) make one group
  of all chunks: a single Gaussian.
- The score is the squared distance divided by the number of components, so scores of models of other
  widths are on one scale (a Gaussian chunk's is about 1). A file's score is the mean of its chunks'.
- `threshold` is the `quantile` (0.95) of the validation tracks' file scores: about 5 % of in-domain
  validation tracks would be called novel; a file is novel when its score is above it.

The detector keeps everything as buffers, so it lives in the checkpoint's state_dict (under `novelty.*`
once the task holds it as `model.novelty`). Until fitted its buffers are empty; loading a state dict
takes the shapes stored there, and a state dict without its keys (every checkpoint written before it)
leaves it unfitted rather than failing a strict load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

MAX_COMPONENTS = 256  # 256 x a probe's ~2,600 columns in float32: under 3 MB in the checkpoint
MIN_CLASS_CHUNKS = 10  # training chunks a class needs for a mean of its own (see the module docstring)
SCALE_FLOOR = 0.1  # of the median varying column's standard deviation: the least divisor (see standardisation)
EXPLAINED = 0.99  # of the standardised training chunks' variance that the principal components keep
REPORTED_QUANTILES = (0.5, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class NoveltyFit:
    components: int  # principal components kept
    groups: int  # Gaussians (class means) fitted
    train_chunks: int
    val_tracks: int
    quantile: float  # of the validation tracks' scores that the threshold is
    threshold: float
    val_track_quantiles: dict[str, float]  # the validation tracks' file scores at REPORTED_QUANTILES

    def as_dict(self) -> dict:
        """For metrics.json."""
        return asdict(self)

    def __str__(self) -> str:
        return (f"novelty threshold {self.threshold:.3g} (the {self.quantile:g} quantile of {self.val_tracks} "
                f"validation tracks), {self.groups} Gaussians in {self.components} components of "
                f"{self.train_chunks} training chunks")


class NoveltyDetector(nn.Module):
    """Class-conditional Gaussians with a shared covariance in a principal subspace of the embeddings
    (see the module docstring); `fit` sets it, `score` and `file_score` use it."""

    BUFFERS = ("mean", "scale", "components", "class_means", "precision", "threshold")

    def __init__(self):
        super().__init__()
        for name in self.BUFFERS:  # empty until fitted; sized by fit or by the state dict loaded
            self.register_buffer(name, torch.zeros(0))

    @property
    def fitted(self) -> bool:
        return self.components.numel() > 0

    # --- fitting -----------------------------------------------------------------
    @torch.no_grad()
    def fit(self, train_embeddings: torch.Tensor, train_labels: torch.Tensor, val_embeddings: torch.Tensor,
            val_tracks: torch.Tensor, quantile: float = 0.95) -> NoveltyFit:
        """Fit the Gaussians on the training chunks' embeddings [N, D] and labels (class indices [N], or
        multi-label rows [N, C]), then set the threshold to the `quantile` of the validation tracks' file
        scores (each the mean of its chunks' scores; `val_tracks` [M] names each validation chunk's track)."""
        if not 0 < quantile < 1:
            raise ValueError(f"quantile={quantile} must lie between 0 and 1.")
        if len(train_embeddings) < 2 or not len(val_embeddings):
            raise ValueError(f"a novelty detector needs at least 2 training chunks and 1 validation chunk "
                             f"(got {len(train_embeddings)} and {len(val_embeddings)}).")
        x = train_embeddings.detach().double().cpu()
        mean, scale = standardisation(x)
        z = (x - mean) / scale
        components = principal_components(z)
        projected = z @ components.T
        groups = group_of(train_labels.detach().cpu())
        class_means = torch.stack([projected[groups == g].mean(0) for g in groups.unique()])
        deviations = projected - class_means[torch.searchsorted(groups.unique(), groups)]
        precision = ledoit_wolf_precision(deviations)
        for name, value in (("mean", mean), ("scale", scale), ("components", components),
                            ("class_means", class_means), ("precision", precision)):
            self._buffers[name] = value.to(self.threshold.device, torch.float32)
        track_scores = file_scores(self.score(val_embeddings.to(self.threshold.device)).double().cpu(),
                                   val_tracks.detach().cpu())
        self._buffers["threshold"] = torch.quantile(track_scores, quantile).to(self.threshold.device, torch.float32)
        return NoveltyFit(len(components), len(class_means), len(x), len(track_scores), quantile,
                          float(self.threshold),
                          {f"{q:g}": float(torch.quantile(track_scores, q)) for q in REPORTED_QUANTILES})

    # --- scoring -----------------------------------------------------------------
    @torch.no_grad()
    def score(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Each chunk's squared Mahalanobis distance to the nearest class mean, per component: [N, D] -> [N]."""
        if not self.fitted:
            raise RuntimeError("the novelty detector is not fitted: fit it (fit_novelty) or load a fitted one.")
        projected = ((embeddings.to(self.mean) - self.mean) / self.scale) @ self.components.T
        distances = [((projected - centre) @ self.precision * (projected - centre)).sum(1)  # a group at a time:
                     for centre in self.class_means]  # [N, k] at most, however many chunks and groups
        return torch.stack(distances, 1).min(1).values / len(self.components)

    def file_score(self, embeddings: torch.Tensor) -> float:
        """A file's score: the mean of its chunks' scores (its chunks' embeddings [n_chunks, D])."""
        return self.score(embeddings).mean().item()

    def is_novel(self, file_score: float) -> bool:
        """Whether a file of this score is unlike the training data: above the threshold."""
        return file_score > self.threshold.item()

    # --- checkpoints -------------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        if not any(prefix + name in state_dict for name in self.BUFFERS):
            # A checkpoint from before novelty detection: no keys of ours, so unfitted, and nothing missing.
            for name in self.BUFFERS:
                self._buffers[name] = self._buffers[name].new_zeros(0)
            return
        for name in self.BUFFERS:  # sized by the fit: take the checkpoint's shapes
            if prefix + name in state_dict:
                self._buffers[name] = self._buffers[name].new_empty(state_dict[prefix + name].shape)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


def standardisation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each column's mean and scale: its standard deviation, but at least SCALE_FLOOR of the median varying
    column's. A column that barely varies on the training chunks (a ReLU unit alive in one chunk of
    hundreds) is not magnified to unit variance, where a validation chunk's small activation of it would
    count as a many-sigma event; a constant column stays zero after centring."""
    scale = x.std(0)
    varying = scale[scale > 0]
    floor = SCALE_FLOOR * varying.median().item() if len(varying) else 1.0
    return x.mean(0), scale.clamp(min=max(floor, torch.finfo(torch.float32).tiny))


def principal_components(z: torch.Tensor) -> torch.Tensor:
    """The first principal components [k, D] of centred rows `z` [N, D]: the fewest that keep EXPLAINED of
    their variance, at most MAX_COMPONENTS (N chunks span at most N - 1)."""
    _, singular, vt = torch.linalg.svd(z, full_matrices=False)
    variance = singular ** 2
    if not variance.sum() > 0:
        raise ValueError("the training chunks' embeddings are all the same: there is nothing to fit a novelty "
                         "detector on.")
    kept = int(torch.searchsorted(variance.cumsum(0) / variance.sum(), torch.tensor(EXPLAINED, dtype=variance.dtype))) + 1
    return vt[:min(kept, len(vt), MAX_COMPONENTS)]


def group_of(labels: torch.Tensor) -> torch.Tensor:
    """Each training chunk's Gaussian (see the module docstring): its class where the class has at least
    MIN_CLASS_CHUNKS chunks, one pooled group (-1) for the chunks of smaller classes; one group for all
    chunks of multi-label rows."""
    if labels.dim() != 1:
        return torch.zeros(len(labels), dtype=torch.long)
    labels = labels.long()
    classes, counts = labels.unique(return_counts=True)
    small = classes[counts < MIN_CLASS_CHUNKS]
    return torch.where(torch.isin(labels, small), torch.full_like(labels, -1), labels)


def ledoit_wolf_precision(deviations: torch.Tensor) -> torch.Tensor:
    """The inverse of the Ledoit-Wolf shrinkage covariance of `deviations` [N, k] (each chunk from its
    group's mean, so centred already)."""
    from sklearn.covariance import LedoitWolf

    estimate = LedoitWolf(assume_centered=True).fit(deviations.numpy())
    return torch.from_numpy(np.linalg.inv(estimate.covariance_))


def file_scores(chunk_scores: torch.Tensor, tracks: torch.Tensor) -> torch.Tensor:
    """Each track's score, the mean of its chunks' (in the order of the sorted track ids)."""
    ids, rows = tracks.unique(return_inverse=True)
    sums = torch.zeros(len(ids), dtype=chunk_scores.dtype).index_add_(0, rows, chunk_scores)
    return sums / torch.bincount(rows, minlength=len(ids)).to(chunk_scores.dtype)


# --- from a model and its data ---------------------------------------------------------------------
def fit_novelty(model, datamodule, device: torch.device, quantile: float = 0.95) -> tuple[NoveltyDetector, NoveltyFit]:
    """A NoveltyDetector fitted on `model`'s embeddings of the training split's chunks (one pass of the
    training loader: its crops) and thresholded on the validation split's tracks; returns it (on the
    CPU) with its fit. Under DDP every rank embeds its shards and fits on all of them, so all fit the same."""
    datamodule.setup("fit")
    from mgr.models.calibration import loader_outputs

    # model.embed: no training-time augmentation (training_step applies it), no dropout (eval mode).
    train, labels, _ = loader_outputs(model, datamodule, datamodule.train_dataloader(), device, model.embed)
    val, _, tracks = loader_outputs(model, datamodule, datamodule.val_dataloader(), device, model.embed)
    detector = NoveltyDetector()
    return detector, detector.fit(train, labels, val, tracks, quantile)
