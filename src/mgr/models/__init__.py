from __future__ import annotations

from pathlib import Path

import torch

from mgr import MGRError
from mgr.models.base import GenreClassifier
from mgr.models.cnn import CNN
from mgr.models.crnn import CRNN

MODELS: dict[str, type[GenreClassifier]] = {cls.__name__: cls for cls in (CNN, CRNN)}


def load_model(ckpt_path: str | Path, map_location: str = "cpu") -> GenreClassifier:
    """Restore any mgr model from its checkpoint alone; only classes of mgr are ever built."""
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise MGRError(f"Checkpoint {path} does not exist; pass ckpt_path=<run dir>/checkpoints/<name>.ckpt.")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    name = checkpoint.get("mgr_model")
    if name not in MODELS:
        raise MGRError(f"{path} is not an mgr checkpoint (model {name!r}; known: {', '.join(MODELS)}).")
    return MODELS[name].load_from_checkpoint(path, map_location=map_location)


def datamodule_hparams(ckpt_path: str | Path) -> dict:
    """The GenreDataModule arguments stored in a training checkpoint."""
    checkpoint = torch.load(Path(ckpt_path).expanduser(), map_location="cpu", weights_only=False)
    return dict(checkpoint.get("datamodule_hyper_parameters") or {})


__all__ = ["CNN", "CRNN", "MODELS", "GenreClassifier", "datamodule_hparams", "load_model"]
