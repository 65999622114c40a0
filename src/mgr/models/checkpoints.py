"""Reading and writing checkpoint files, apart from building models. Every checkpoint mgr reads
goes through `read_checkpoint`: mgr.eval, predict and embed, `GenreClassifier.load_from_checkpoint`
and, through the `CheckpointIO` plugin of every mgr trainer, Lightning's resume and test. It loads
with weights_only=True (tensors and plain values only: no code runs), refuses any checkpoint that
names a class outside mgr, and brings a checkpoint of the 2026-11 layout into today's. A URL is
read only with its `#sha256=` digest: fetched into a local cache and checked first (Lightning itself
would unpickle a remote file with weights_only=False). `save_atomically` writes a checkpoint whole
or not at all. Weights that are not all finite (a run that diverged) are neither written nor read
(mgr.models.finite). mgr.models.sizing sizes the model a checkpoint's hyperparameters ask for
before `load_model` builds it.

Old checkpoints: until 2026-11 every architecture was its own LightningModule
(`mgr_model` named the class: CNN, CRNN, StatsLinearSVM, ...) with the net's
settings beside the task's and the weights at the top level. They load for
mgr.eval, mgr.predict and mgr.embed and give the same outputs: their settings
move into `net` (and the SVM's into `head`), their weights under `encoder.`.
Resuming training from one is refused (its optimizer state follows the old
parameter order).
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from mgr import MGRError
from mgr.models.finite import first_non_finite, lower_lr_advice

CHECKPOINT_TAG = "GenreClassifier"  # checkpoint["mgr_model"] of mgr's task

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
    that it names nothing to build but mgr's own task. `ckpt_path`: a file, or an http(s) URL
    ending in #sha256=<digest>."""
    path = local_checkpoint(ckpt_path)
    return checked(load_plain_values(path), path)


def checked(checkpoint, path: Path) -> dict:
    """The contents of the checkpoint file `path`, checked (see read_checkpoint) and upgraded."""
    if not isinstance(checkpoint, dict):
        raise MGRError(f"{path} is not an mgr checkpoint (it holds a {type(checkpoint).__name__}).")
    _refuse_foreign_code(checkpoint, path)
    _refuse_non_finite(checkpoint, path)
    return upgrade(checkpoint)


def load_plain_values(path: Path):
    """torch.load with weights_only=True (no code runs), every failure one sentence naming `path`."""
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
        raise MGRError(f"{path} cannot be read as a checkpoint of plain values: {first_line(e)}") from None
    except Exception as e:  # not a torch file at all, or a damaged one (torn by a full disk, truncated)
        raise MGRError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {first_line(e)}); "
                       "it may be truncated: use another checkpoint of the run.") from None
    return checkpoint


def local_checkpoint(ckpt_path: str | Path) -> Path:
    """The local file of `ckpt_path`: a path as it is; an http(s) URL with `#sha256=<hex digest>`
    downloaded once into the checkpoint cache (MGR_CHECKPOINT_CACHE, else ~/.cache/mgr/checkpoints)
    and checked against its digest. Any other URL is refused."""
    text = str(ckpt_path)
    scheme = urlparse(text).scheme
    if "://" not in text or len(scheme) < 2:  # a path (a Windows drive letter is no scheme)
        return Path(text).expanduser()
    url, fragment = urldefrag(text)
    digest = fragment.removeprefix("sha256=").lower() if fragment.startswith("sha256=") else ""
    if scheme not in ("http", "https") or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise MGRError(f"Refused to read the checkpoint {text}: mgr reads a checkpoint URL only over http(s) and "
                       "with its SHA-256 digest (sha256sum prints it), as <url>#sha256=<64 hex digits>, quoted for "
                       "Hydra: \"ckpt_path='<url>#sha256=<digest>'\"; or download it yourself and pass the file.")
    from mgr.remote import fetch, verify

    cache = Path(os.environ.get("MGR_CHECKPOINT_CACHE") or Path.home() / ".cache" / "mgr" / "checkpoints")
    target = cache / f"{digest}.ckpt"
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        fetch(url, target.with_name(f"{digest}.download"))
        verify(target.with_name(f"{digest}.download"), f"sha256:{digest}")  # deletes it on a mismatch
        target.with_name(f"{digest}.download").rename(target)
    return target


def save_atomically(checkpoint: dict, path: str | Path) -> None:
    """torch.save into a temporary file beside `path`, synced, then renamed over it: a reader sees
    the old file or the new one, never a torn one, also where the temporary directory is on another
    file system (Lightning's own save then copies). A full disk leaves no file and is one sentence;
    so are weights that are not all finite (the run diverged)."""
    path = Path(path)
    bad = first_non_finite(checkpoint.get("state_dict") or {})
    if bad is not None:  # never a checkpoint that eval, predict or a resume would have to refuse
        optimizer = (checkpoint.get("hyper_parameters") or {}).get("optimizer")
        raise MGRError(f"Training diverged: at epoch {checkpoint.get('epoch')}, step {checkpoint.get('global_step')} "
                       f"the weights hold NaN or infinite values (first: {bad}), so mgr did not write {path}; "
                       f"{lower_lr_advice(optimizer)}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash
        finally:
            os.close(directory)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            free = shutil.disk_usage(path.parent).free / 1e6
            raise MGRError(f"Cannot write the checkpoint {path}: the disk holding {path.parent} is full "
                           f"({free:.0f} MB free); free some space and resume with ckpt_path=last.") from None
        raise MGRError(f"Cannot write the checkpoint {path} ({e.strerror or e}).") from None


class CheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint reading and writing, through mgr's: every trainer mgr builds uses it,
    so a resume or a test of a checkpoint path reads as mgr.eval does and every save is atomic."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options.")
        save_atomically(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        path = local_checkpoint(path)
        contents = load_plain_values(path)
        # ddp_spawn hands the trained weights back to the main process as a bare state dict (tensors,
        # and the plain values of a module's extra state, such as the probe's choice; nothing to name
        # code): that needs no mgr checkpoint's checks.
        if isinstance(contents, dict) and contents and all(isinstance(v, torch.Tensor) or str(k).endswith("._extra_state")
                                                           for k, v in contents.items()):
            return contents
        return checked(contents, path)


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


def _refuse_non_finite(checkpoint: dict, path: Path) -> None:
    bad = first_non_finite(checkpoint.get("state_dict") or {})
    if bad is not None:
        raise MGRError(f"{path} holds NaN or infinite weights (first: {bad}): the run that wrote it diverged; use "
                       "a checkpoint saved before that, or train again with a lower optimizer.lr.")


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


# --- the size of the model a checkpoint asks for ---------------------------------------------
def first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
