"""Reading checkpoints, apart from building models: `read_checkpoint` loads a file
with weights_only=True (tensors and plain values only, no code runs), refuses any
checkpoint that names a class outside mgr, and brings a checkpoint of the
2026-11 layout into today's; `load_model` then builds the task from its
hyperparameters and loads its weights.

Old checkpoints: until 2026-11 every architecture was its own LightningModule
(`mgr_model` named the class: CNN, CRNN, StatsLinearSVM, ...) with the net's
settings beside the task's and the weights at the top level. They load for
mgr.eval, mgr.predict and mgr.embed and give the same outputs: their settings
move into `net` (and the SVM's into `head`), their weights under `encoder.`.
Resuming training from one is refused (its optimizer state follows the old
parameter order).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from mgr import MGRError
from mgr.models.task import CHECKPOINT_TAG, GenreClassifier

# The 2026-11 class names: the net they are today and settings that name its variant.
OLD_CLASSES: dict[str, tuple[str, dict]] = {
    "CNN": ("cnn", {}), "CNN3": ("belov_cnn", {}), "CNN5": ("cnn5", {}), "CNNLSTMParallel": ("cnn_lstm_parallel", {}),
    "CRNN": ("crnn", {}), "CRNNArtist": ("crnn_artist", {}), "FCN": ("fcn", {}), "Musicnn": ("musicnn", {}),
    "ShortChunkCNN": ("short_chunk_cnn", {}), "ShortChunkResNet": ("short_chunk_cnn", {"block": "res"}),
    "StatsLinearSVM": ("stats", {}), "MFCCSVM": ("stats", {}),
}
TASK_SETTINGS = ("class_names", "feature", "sample_rate", "chunk_seconds", "optimizer", "scheduler",
                 "track_aggregation", "vote_threshold")


def read_checkpoint(ckpt_path: str | Path) -> dict:
    """A checkpoint's contents in today's layout, loaded with weights_only=True, after checking
    that it names nothing to build but mgr's own task."""
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise MGRError(f"Checkpoint {path} does not exist; pass ckpt_path=<run dir>/checkpoints/<name>.ckpt.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
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
    if not isinstance(checkpoint, dict):
        raise MGRError(f"{path} is not an mgr checkpoint (it holds a {type(checkpoint).__name__}).")
    _refuse_foreign_code(checkpoint, path)
    return upgrade(checkpoint)


def _refuse_foreign_code(checkpoint: dict, path: Path) -> None:
    for named in _names_to_instantiate(checkpoint):
        known = isinstance(named, str) and (named in (CHECKPOINT_TAG, *OLD_CLASSES) or named.startswith("mgr."))
        if named is not None and not known:
            raise MGRError(
                f"Refused to load {path}: it names {named!r} to instantiate, and mgr builds only its own "
                "classes; use only checkpoints written by mgr.train."
            )
    name = checkpoint.get("mgr_model")
    if name != CHECKPOINT_TAG and name not in OLD_CLASSES:
        raise MGRError(f"{path} is not an mgr checkpoint (model {name!r}).")


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


def upgrade(checkpoint: dict) -> dict:
    """A checkpoint of the 2026-11 layout in today's (see the module docstring); others as they are."""
    old_class = checkpoint.get("mgr_model")
    if old_class not in OLD_CLASSES:
        return checkpoint
    net_name, variant = OLD_CLASSES[old_class]
    settings = dict(checkpoint.get("hyper_parameters") or {})
    hparams = {k: settings.pop(k) for k in TASK_SETTINGS if k in settings}
    if net_name == "stats":
        hparams["head"] = {"name": "linear_svm", "C": settings.pop("C", 1.0),
                           "passes": settings.pop("fit_passes", 4), "max_iter": settings.pop("max_iter", 10000)}
    hparams["net"] = {"name": net_name, **variant, **settings}
    state = {}
    for key, value in (checkpoint.get("state_dict") or {}).items():
        if key.startswith("head."):
            state[key] = value
        elif key.startswith(("frontend.", "input_norm.")):
            if not (net_name == "stats" and key.startswith("input_norm.")):  # the SVM never used it
                state[f"encoder.{key}"] = value
        else:
            state[f"encoder.net.{key}"] = value
    return {**checkpoint, "mgr_model": CHECKPOINT_TAG, "hyper_parameters": hparams, "state_dict": state,
            "mgr_upgraded_from": old_class}


def load_model(ckpt_path: str | Path, checkpoint: dict | None = None) -> GenreClassifier:
    """Build mgr's task from a checkpoint alone (read once: pass `checkpoint` if already read)."""
    checkpoint = checkpoint if checkpoint is not None else read_checkpoint(ckpt_path)
    try:
        model = GenreClassifier(**checkpoint["hyper_parameters"])
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as e:
        raise MGRError(f"{ckpt_path} does not fit mgr's GenreClassifier: {_first_line(e)}") from None
    return model


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
