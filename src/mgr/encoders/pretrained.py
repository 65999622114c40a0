"""The encoder of a probe (`model=probe encoder=<name>`): a pretrained backbone of BACKBONES as
an mgr encoder, waveform [B, samples at the data's rate] -> embeddings [B, embedding_dim].

It resamples the waveform to the backbone's rate, runs the backbone and combines its layers:
`layer=<int>` one layer (negative counts from the last), `mean` the mean of all, `weighted` a
learned softmax-weighted sum (the SUPERB/MARBLE practice; the weights start equal), `all` every
layer side by side (of any widths: [B, sum of widths]), for a head that uses them apart (the
`select` head chooses its layer on validation, mgr.models.heads.ProbeSelectionHead).
`embedding_layers` says which layers the embedding holds, in order, and how wide each is.
`descriptors=true` adds one more part after the layers: `descriptors`, the classic baseline's chunk
statistics (`feature=descriptors` with net `stats`: mean and std over time of MFCCs, spectral
contrast, chroma, ZCR and centroid, 82 values), computed at the data's rate, so that a head can
join them to a pretrained layer (fusion: the `select` head's `fuse`). `descriptors=auto` (every
conf/encoder's) computes them where the head fuses them: the `select` head, model=probe's default,
does unless told `fuse: []`; a trained head (linear, mlp) gets the encoder's layers alone.

Frozen (the default): no gradients, always in eval mode, and its weights are kept out of the
checkpoint, which holds their sha256 (`weights_sha256`) instead; a model built with a stored
hash loads only weights of that hash. `finetune=true` trains the backbone too, at `lr_scale`
times the head's learning rate (GenreClassifier.configure_optimizers), and the checkpoint then
holds its weights.

A frozen encoder is a fixed function of the chunk, so mgr.train computes its layers once per chunk
(`cache_embeddings=true`, the default; mgr.data.embeddings) and feeds the probe those: `forward`
takes either a waveform [B, T] or the cached layers [B, len(layer_indices), D] (`layer=all` or the
descriptors: the layers side by side, [B, 1, sum of widths], as `cached_input` has the data module
feed them).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mgr import MGRError
from mgr.encoders import BACKBONES
from mgr.encoders.resample import Resampler
from mgr.features import build_frontend
from mgr.features.augment import NO_SPECTROGRAM
from mgr.features.descriptors import bands_below_nyquist
from mgr.nets.stats import TimeStatistics

ALL = "all"
DESCRIPTORS = "descriptors"  # the name of the descriptor statistics' layer
LAYER_CHOICES = ("mean", "weighted", ALL)
# Settings that change no layer's values: where the weights were read from, and how they are probed.
NOT_IN_IDENTITY = {"wheel", "cache_dir", "weights", "layer", "finetune", "lr_scale", "cache_embeddings"}


def weights_sha256(files: list[Path]) -> str:
    """One sha256 over the weight files, each by name and content."""
    digest = hashlib.sha256()
    for path in files:
        file_digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                file_digest.update(block)
        digest.update(f"{Path(path).name}\0{file_digest.hexdigest()}\n".encode())
    return digest.hexdigest()


class PretrainedEncoder(nn.Module):
    # No feature map: mgr.train sizes its spectrogram augmentation by these (augment=none only).
    n_bins = n_frames = None

    def __init__(self, settings: dict, sample_rate: int, chunk_seconds: float, head_fuses_descriptors: bool = False):
        super().__init__()
        settings = dict(settings)
        name = settings.pop("name", None)
        self.layer = settings.pop("layer", "mean")
        self.finetune = bool(settings.pop("finetune", False))
        self.lr_scale = float(settings.pop("lr_scale", 0.1))
        self.cache_embeddings = bool(settings.pop("cache_embeddings", True))
        descriptors = settings.pop(DESCRIPTORS, False)
        if descriptors not in (True, False, "auto"):
            raise MGRError(f"encoder.descriptors={descriptors!r}; give true, false or auto (where the head fuses them).")
        descriptors = head_fuses_descriptors if descriptors == "auto" else descriptors
        expected_sha256 = settings.pop("weights_sha256", None)
        if name not in BACKBONES:
            raise MGRError(f"Unknown encoder.name={name!r}; choose one of {', '.join(BACKBONES)}.")
        self.chunk_samples = int(round(chunk_seconds * sample_rate))
        self.backbone = BACKBONES[name](**settings)
        sha256 = weights_sha256(self.backbone.weight_files)
        if expected_sha256 is not None and sha256 != expected_sha256 and not self.finetune:
            raise MGRError(f"The weights of encoder {name} ({', '.join(map(str, self.backbone.weight_files))}) are "
                           "not the ones this model was trained on (their sha256 differs); give the weights it was "
                           "trained with (encoder.weights in the checkpoint's hyperparameters).")
        # As built, so a checkpoint rebuilds this encoder and verifies its weights.
        self.settings = {"name": name, **settings, "layer": self.layer, "finetune": self.finetune,
                         "lr_scale": self.lr_scale, "cache_embeddings": self.cache_embeddings, DESCRIPTORS: descriptors,
                         "weights_sha256": sha256}
        self.resample = Resampler(sample_rate, self.backbone.sample_rate)
        self.descriptor_statistics = DescriptorStatistics(sample_rate, self.chunk_samples) if descriptors else None
        self._check_layer(self.backbone.layer_dims)
        self.embedding_dim = sum(width for _, width in self.embedding_layers)
        if not self.finetune:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
            self.register_state_dict_post_hook(_drop_frozen_weights)
            self.register_load_state_dict_pre_hook(_keep_frozen_weights)

    def _check_layer(self, dims: list[int]) -> None:
        """Refuse a `layer` the backbone's layers (of widths `dims`) cannot give; `weighted` gets its weights."""
        if isinstance(self.layer, int) and not isinstance(self.layer, bool):
            if not -len(dims) <= self.layer < len(dims):
                raise MGRError(f"encoder.layer={self.layer} is out of range: this encoder has {len(dims)} layers "
                               f"(0 to {len(dims) - 1}, or negative from the last).")
            return
        if self.layer not in LAYER_CHOICES:
            raise MGRError(f"encoder.layer={self.layer!r}; give a layer number or one of {', '.join(LAYER_CHOICES)}.")
        if self.layer == ALL:
            return
        if len(set(dims)) > 1:
            raise MGRError(f"encoder.layer={self.layer} combines layers of equal width only, and this encoder's "
                           f"differ ({dims}); choose one layer (encoder.layer=<0..{len(dims) - 1}>) or all of them "
                           "side by side (encoder.layer=all).")
        if self.layer == "weighted":
            self.layer_weights = nn.Parameter(torch.zeros(len(dims)))

    def train(self, mode: bool = True) -> "PretrainedEncoder":
        super().train(mode)
        if not self.finetune:  # no dropout or batch statistics: a frozen encoder is a fixed function
            self.backbone.eval()
        return self

    @property
    def layer_dims(self) -> list[int]:
        """The width of every layer `layers` gives: the backbone's, then the descriptor statistics' if asked for."""
        extra = [self.descriptor_statistics.width] if self.descriptor_statistics is not None else []
        return [*self.backbone.layer_dims, *extra]

    @property
    def backbone_indices(self) -> list[int]:
        """The backbone's layers (of `layers`) this encoder combines (`layer`), in order."""
        n = len(self.backbone.layer_dims)
        return list(range(n)) if isinstance(self.layer, str) else [self.layer % n]

    @property
    def layer_indices(self) -> list[int]:
        """The layers (of `layers`) this encoder uses, in order: the backbone's, then the descriptors'."""
        return self.backbone_indices + list(range(len(self.backbone.layer_dims), len(self.layer_dims)))

    @property
    def side_by_side(self) -> bool:
        """Whether the cached layers reach forward side by side ([B, 1, sum of widths]): every layer, or
        the descriptors beside the backbone's, are of unequal widths and cannot be stacked."""
        return self.layer == ALL or self.descriptor_statistics is not None

    @property
    def embedding_layers(self) -> list[tuple[int | str, int]]:
        """What the embedding holds, in order: (layer number, or `mean`/`weighted`/`descriptors`, width) of each part."""
        dims = self.layer_dims
        if self.layer in ("mean", "weighted"):
            parts = [(self.layer, dims[0])]
        else:
            parts = [(i, dims[i]) for i in self.backbone_indices]
        return parts + [(DESCRIPTORS, dims[i]) for i in self.layer_indices[len(self.backbone_indices):]]

    def cached_input(self, store) -> tuple[object, list[int]]:
        """What the data module feeds this encoder from the embedding cache `store` (its `use_embeddings`):
        a store and the layers of it to stack per chunk. The stacking needs equal widths, so layers of
        unequal widths (`side_by_side`) come as the one layer of a `LayersSideBySide` view."""
        if self.side_by_side:
            return LayersSideBySide(store, self.layer_indices), [0]
        return store, self.layer_indices

    @property
    def identity(self) -> dict:
        """What determines the backbone's outputs, for the embedding cache's key: its name, its settings
        but the places its weights were read from, and the weights' hash; `descriptors` where asked
        for (so the caches made before it existed keep their keys)."""
        return {k: v for k, v in self.settings.items()
                if k not in NOT_IN_IDENTITY and (k != DESCRIPTORS or v)}

    def layers(self, wave: torch.Tensor) -> list[torch.Tensor]:
        """Every layer (`layer_dims`) on a waveform [B, T] at the data's rate: [B, layer_dims[i]] each."""
        with torch.set_grad_enabled(self.finetune and torch.is_grad_enabled()):
            layers = list(self.backbone(self.resample(wave)))
        if self.descriptor_statistics is not None:
            layers.append(self.descriptor_statistics(wave))
        return layers

    def forward(self, x: torch.Tensor, augment: nn.Module | None = None) -> torch.Tensor:
        if augment is not None and not isinstance(augment, nn.Identity):
            raise MGRError(NO_SPECTROGRAM.format(""))
        if x.dim() == 3:  # cached layers [B, len(layer_indices), D], or side by side [B, 1, sum of widths]
            widths = [self.layer_dims[i] for i in self.layer_indices]
            parts = list(x.flatten(1).split(widths, dim=1) if self.side_by_side else x.unbind(1))
        else:
            layers = self.layers(x)
            parts = [layers[i] for i in self.layer_indices]
        backbone, descriptors = parts[:len(self.backbone_indices)], parts[len(self.backbone_indices):]
        if self.layer == "mean":
            backbone = [torch.stack(backbone).mean(0)]
        elif self.layer == "weighted":
            backbone = [torch.einsum("l,lbd->bd", torch.softmax(self.layer_weights, 0), torch.stack(backbone))]
        return torch.cat(backbone + descriptors, dim=1)


class DescriptorStatistics(nn.Module):
    """The classic baseline's descriptor of a chunk (model=stats_rbf_svm feature=descriptors, at the
    feature's default settings, but only the contrast octaves below the data's Nyquist frequency, so that
    it works at any rate): the mean and std over time of each descriptor row, [B, width]."""

    def __init__(self, sample_rate: int, chunk_samples: int):
        super().__init__()
        self.frontend = build_frontend({"name": DESCRIPTORS, "sample_rate": sample_rate,
                                        "n_bands": bands_below_nyquist(sample_rate)})
        with torch.no_grad():
            _, _, n_bins, n_frames = self.frontend(torch.zeros(1, chunk_samples)).shape
        self.statistics = TimeStatistics(n_bins, n_frames)
        self.width = self.statistics.embedding_dim

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.statistics(self.frontend(wave))


class LayersSideBySide:
    """An embedding cache (mgr.data.embeddings.ChunkEmbeddings) seen as having one layer: each row's
    `layers` concatenated. It answers what the cache's datasets ask of a store (`rows`, `layer(0)[row]`),
    so a chunk's layers of unequal widths reach the model as [1, sum of widths]."""

    def __init__(self, store, layers: list[int]):
        self.store, self.layers = store, list(layers)

    def rows(self, items):
        return self.store.rows(items)

    def layer(self, i: int) -> "LayersSideBySide":
        if i != 0:
            raise IndexError(f"the layers side by side are layer 0 only, not {i}")
        return self

    def __getitem__(self, row) -> np.ndarray:
        return np.concatenate([self.store.layer(j)[row] for j in self.layers])


def _drop_frozen_weights(module: PretrainedEncoder, state_dict: dict, prefix: str, local_metadata) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "backbone.")]:
        del state_dict[key]


def _keep_frozen_weights(module: PretrainedEncoder, state_dict: dict, prefix: str, *args) -> None:
    # The checkpoint holds no frozen weights: keep the verified ones loaded from disk.
    for key, value in module.backbone.state_dict().items():
        state_dict.setdefault(f"{prefix}backbone.{key}", value)
