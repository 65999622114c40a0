"""Feature frontends by name: `feature.name` in conf/feature/*.yaml."""

from __future__ import annotations

from torch import nn

from mgr import MGRError
from mgr.features.augment import NO_SPECTROGRAM, SpecAugment
from mgr.features.base import Frontend
from mgr.features.chroma import ChromaFrontend
from mgr.features.constant_q import CQTFrontend, VQTFrontend
from mgr.features.descriptors import DescriptorFrontend
from mgr.features.spectrogram import GammatoneFrontend, MelFrontend, MFCCFrontend, STFTFrontend
from mgr.features.tempogram import TempogramFrontend

FRONTENDS: dict[str, type[Frontend]] = {
    "stft": STFTFrontend,
    "mel": MelFrontend,
    "mfcc": MFCCFrontend,
    "cqt": CQTFrontend,
    "vqt": VQTFrontend,
    "gammatone": GammatoneFrontend,
    "chroma": ChromaFrontend,
    "tempogram": TempogramFrontend,
    "descriptors": DescriptorFrontend,
}


def build_frontend(feature: dict) -> Frontend:
    """Build from plain config values: {'name': 'mel', 'sample_rate': 22050, ...}."""
    feature = dict(feature)
    name = feature.pop("name", None)
    if feature.get("backend") == "torchaudio":  # the torch backend's name in checkpoints before 2026-12
        feature["backend"] = "torch"
    if name not in FRONTENDS:
        raise MGRError(f"Unknown feature name {name!r}; available: {', '.join(sorted(FRONTENDS))}.")
    try:
        return FRONTENDS[name](**feature)
    except TypeError as e:
        raise MGRError(f"Bad setting for feature={name}: {e}.") from None


def build_augment(augment: dict | None, n_bins: int | None, n_frames: int | None) -> nn.Module:
    """Training-time augmentation of the feature map from `augment` config values; identity when empty."""
    augment = dict(augment or {})
    name = augment.pop("name", None)
    if name is None:
        return nn.Identity()
    if n_bins is None:  # an encoder without a feature map (a pretrained one)
        raise MGRError(NO_SPECTROGRAM.format(name))
    if name != "specaugment":
        raise MGRError(f"Unknown augment name {name!r}; available: specaugment.")
    try:
        return SpecAugment(n_bins, n_frames, **augment)
    except TypeError as e:
        raise MGRError(f"Bad setting for augment=specaugment: {e}.") from None


__all__ = ["FRONTENDS", "Frontend", "build_augment", "build_frontend"]
