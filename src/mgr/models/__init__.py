from __future__ import annotations

from pathlib import Path

import torch

from mgr import MGRError
from mgr.models.base import GenreClassifier
from mgr.models.cnn import CNN
from mgr.models.crnn import CRNN

MODELS: dict[str, type[GenreClassifier]] = {cls.__name__: cls for cls in (CNN, CRNN)}


def read_checkpoint(ckpt_path: str | Path) -> dict:
    """Load a checkpoint's contents with `weights_only=True`: tensors and plain values only, no code."""
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise MGRError(f"Checkpoint {path} does not exist; pass ckpt_path=<run dir>/checkpoints/<name>.ckpt.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise MGRError(f"{path} cannot be read as a checkpoint of plain values: {e}") from None


def load_model(ckpt_path: str | Path, map_location: str = "cpu") -> GenreClassifier:
    """Restore any mgr model from its checkpoint alone; only classes of mgr are ever built."""
    name = read_checkpoint(ckpt_path).get("mgr_model")
    if name not in MODELS:
        raise MGRError(f"{ckpt_path} is not an mgr checkpoint (model {name!r}; known: {', '.join(MODELS)}).")
    return MODELS[name].load_from_checkpoint(Path(ckpt_path).expanduser(), map_location=map_location)


__all__ = ["CNN", "CRNN", "MODELS", "GenreClassifier", "load_model", "read_checkpoint"]
