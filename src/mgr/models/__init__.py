from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from mgr import MGRError
from mgr.models.base import GenreClassifier
from mgr.models.cnn import CNN
from mgr.models.cnn3 import CNN3
from mgr.models.cnn5 import CNN5
from mgr.models.cnn_lstm_parallel import CNNLSTMParallel
from mgr.models.crnn import CRNN
from mgr.models.crnn_artist import CRNNArtist
from mgr.models.fcn import FCN
from mgr.models.stats_linear_svm import StatsLinearSVM
from mgr.models.musicnn import Musicnn
from mgr.models.short_chunk_cnn import ShortChunkCNN
from mgr.models.short_chunk_resnet import ShortChunkResNet

ARCHITECTURES = (CNN, CNN3, CNN5, CNNLSTMParallel, CRNN, CRNNArtist, FCN, StatsLinearSVM, Musicnn, ShortChunkCNN,
                 ShortChunkResNet)
MODELS: dict[str, type[GenreClassifier]] = {cls.__name__: cls for cls in ARCHITECTURES}
OLD_NAMES = {"MFCCSVM": "StatsLinearSVM"}  # names in checkpoints written before 2026-12


def read_checkpoint(ckpt_path: str | Path) -> dict:
    """Load a checkpoint's contents with `weights_only=True`: tensors and plain values only, no code runs."""
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise MGRError(f"Checkpoint {path} does not exist; pass ckpt_path=<run dir>/checkpoints/<name>.ckpt.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch refuses any function or class outside its allowlist before calling it.
        named = re.findall(r"GLOBAL ([\w.]+)", str(e))
        if named:
            raise MGRError(
                f"Refused to load {path}: it names {', '.join(dict.fromkeys(named))}, code that a checkpoint of "
                "plain values never holds; use only checkpoints written by mgr.train."
            ) from None
        raise MGRError(f"{path} cannot be read as a checkpoint of plain values: {_first_line(e)}") from None
    except Exception as e:  # not a torch file at all, or a damaged one
        raise MGRError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {_first_line(e)}).") from None


def model_class(checkpoint: dict, ckpt_path: str | Path) -> type[GenreClassifier]:
    """The mgr architecture a checkpoint asks for; a checkpoint naming any class outside mgr is refused."""
    for named in _names_to_instantiate(checkpoint):
        known = isinstance(named, str) and (named in MODELS or named in OLD_NAMES or named.startswith("mgr."))
        if named is not None and not known:
            raise MGRError(
                f"Refused to load {ckpt_path}: it names {named!r} to instantiate, and mgr builds only its own "
                "classes; use only checkpoints written by mgr.train."
            )
    name = checkpoint.get("mgr_model")
    name = OLD_NAMES.get(name, name) if isinstance(name, str) else name
    cls = MODELS.get(name) if isinstance(name, str) else None
    if cls is None or not cls.__module__.startswith("mgr."):
        raise MGRError(f"{ckpt_path} is not an mgr checkpoint (model {name!r}; known: {', '.join(MODELS)}).")
    return cls


def _names_to_instantiate(checkpoint: dict) -> list:
    """Every class or function the checkpoint names for building something: mgr's own key, Lightning
    CLI's instantiator keys, and Hydra `_target_`s anywhere in the stored hyperparameters."""
    names = [checkpoint.get("mgr_model")]
    stack = [checkpoint.get("hyper_parameters"), checkpoint.get("datamodule_hyper_parameters")]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            names += [v for k, v in node.items() if k in ("_target_", "_instantiator", "_class_path")]
            stack += list(node.values())
        elif isinstance(node, (list, tuple)):
            stack += list(node)
    return names


def load_model(ckpt_path: str | Path, map_location: str = "cpu") -> GenreClassifier:
    """Restore any mgr model from its checkpoint alone; only classes of mgr are ever built."""
    cls = model_class(read_checkpoint(ckpt_path), ckpt_path)
    try:
        return cls.load_from_checkpoint(Path(ckpt_path).expanduser(), map_location=map_location, weights_only=True)
    except (TypeError, KeyError, RuntimeError, ValueError) as e:
        raise MGRError(f"{ckpt_path} does not fit mgr's {cls.__name__}: {_first_line(e)}") from None


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


__all__ = [*(cls.__name__ for cls in ARCHITECTURES), "MODELS", "GenreClassifier", "load_model", "model_class", "read_checkpoint"]
