"""Feature frontends by name: `feature.name` in conf/feature/*.yaml."""

from __future__ import annotations

from mgr import MGRError
from mgr.features.base import Frontend
from mgr.features.chroma import ChromaFrontend
from mgr.features.constant_q import CQTFrontend, VQTFrontend
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
}


def build_frontend(feature: dict) -> Frontend:
    """Build from plain config values: {'name': 'mel', 'sample_rate': 22050, ...}."""
    feature = dict(feature)
    name = feature.pop("name", None)
    if name not in FRONTENDS:
        raise MGRError(f"Unknown feature name {name!r}; available: {', '.join(sorted(FRONTENDS))}.")
    try:
        return FRONTENDS[name](**feature)
    except TypeError as e:
        raise MGRError(f"Bad setting for feature={name}: {e}.") from None


__all__ = ["FRONTENDS", "Frontend", "build_frontend"]
