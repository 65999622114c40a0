"""What mgr.eval, mgr.embed and mgr.predict restore from `cfg.ckpt_path`: the trained model
(combining a track's chunks as asked), the data it runs on, checked to fit it, and the device.
mgr.eval and mgr.predict also take a list of checkpoints, ckpt_path=[a.ckpt,b.ckpt]: their models
averaged (mgr.models.ensemble), the data and track aggregation those of the first.

Without a `data=...` override the data module is rebuilt from the values the checkpoint stores
(dataset, root, split, sample rate, chunking), so the checkpoint alone is enough. It reads the
dataset where the checkpoint says (a manifest's paths inside its folder, whatever the checkpoint
stores), but writes only where the user's paths say: the waveform cache
(and a probe encoder's converted weights) go to `paths.cache_dir`, and a generated dataset (synth),
which mgr writes on first use, is generated under `paths.data_dir` (a function of its stored
settings alone: the same tracks).
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig

from mgr import MGRError
from mgr.data import GenreDataModule
from mgr.data.sources import SOURCES, Source
from mgr.data.sources.synth import SynthSource
from mgr.models import Ensemble, GenreClassifier, load_model, read_checkpoint


def checkpoint_paths(cfg: DictConfig, ensemble: bool = False) -> list[str]:
    """cfg.ckpt_path as a list: one path, or Hydra's list of several when the entry point averages
    them (`ensemble`); a list elsewhere is one sentence."""
    value = cfg.ckpt_path
    paths = [str(p) for p in value] if isinstance(value, (list, ListConfig)) else [str(value)]
    if not paths:
        raise MGRError("ckpt_path=[] names no checkpoint; pass ckpt_path=<best>.ckpt.")
    if len(paths) > 1 and not ensemble:
        raise MGRError(f"ckpt_path names {len(paths)} checkpoints; only mgr.predict and mgr.eval average several "
                       "models: pass one.")
    return paths


def checkpoint_provenance(cfg: DictConfig) -> dict:
    """Which checkpoints a run's outputs come from: `checkpoints` (all of them, in order) and, when
    there is one, `checkpoint` (as before ensembles)."""
    paths = checkpoint_paths(cfg, ensemble=True)
    return {**({"checkpoint": paths[0]} if len(paths) == 1 else {}), "checkpoints": paths}


def load_trained_model(cfg: DictConfig, checkpoints: list[dict] | None = None,
                       ensemble: bool = False) -> GenreClassifier:
    """The model of cfg.ckpt_path (`checkpoints`: their contents, if already read), or with `ensemble`
    the average of the models of several (mgr.models.ensemble.Ensemble, checked to agree before any
    audio is decoded); its tracks combined by the entry point's track_aggregation / vote_threshold
    (None: the first checkpoint's)."""
    paths = checkpoint_paths(cfg, ensemble)
    checkpoints = checkpoints if checkpoints is not None else [read_checkpoint(p) for p in paths]
    members = [load_model(p, _encoder_cache_in_user_paths(cfg, c)) for p, c in zip(paths, checkpoints)]
    model = members[0] if len(members) == 1 else Ensemble.of(members, paths)
    model.set_track_aggregation(cfg.get("track_aggregation"), cfg.get("vote_threshold"))
    return model


def _encoder_cache_in_user_paths(cfg: DictConfig, checkpoint: dict) -> dict:
    """A probe's encoder settings may name the folder its weights are fetched and converted into
    (musicnn's `cache_dir`): the user's paths.cache_dir instead. The folder is no part of the
    encoder's identity (its weights are checked by their hash), so the model is the same."""
    hparams = checkpoint.get("hyper_parameters") or {}
    encoder = hparams.get("encoder")
    if not isinstance(encoder, dict) or "cache_dir" not in encoder:
        return checkpoint
    return {**checkpoint, "hyper_parameters": {**hparams, "encoder": {**encoder, "cache_dir": cfg.paths.cache_dir}}}


def restore(cfg: DictConfig, same_classes: bool = True,
            ensemble: bool = False) -> tuple[GenreClassifier, GenreDataModule]:
    """The trained model and a data module that fits it (not yet prepared: nothing decoded).
    `same_classes=False` lets the data have other classes (embeddings of other music); `ensemble`
    averages several checkpoints (see load_trained_model), the data that of the first."""
    paths = checkpoint_paths(cfg, ensemble)
    checkpoints = [read_checkpoint(p) for p in paths]  # read once, for the model and the data
    model = load_trained_model(cfg, checkpoints, ensemble)
    datamodule = _datamodule(cfg, paths[0], checkpoints[0])
    check_fits(model, datamodule, same_classes)
    return model, datamodule


def _datamodule(cfg: DictConfig, path: str, checkpoint: dict) -> GenreDataModule:
    if cfg.get("data"):
        from hydra.utils import instantiate

        return instantiate(cfg.data, _convert_="all")
    stored = checkpoint.get("datamodule_hyper_parameters")
    if not stored:
        raise MGRError(f"{path} does not say which data it was trained on; pass data=<group> "
                       "(e.g. data=folder data.root=...) to choose.")
    try:
        return GenreDataModule(**{**stored, **_settings_of_the_user(cfg, stored)})
    except TypeError as e:  # settings of another mgr version
        raise MGRError(f"{path} stores data settings this mgr cannot rebuild ({e}); "
                       "pass data=<group> to choose.") from None


def _settings_of_the_user(cfg: DictConfig, stored: dict) -> dict:
    """The stored data settings a checkpoint from someone else must not choose, replaced: where to
    write (the cache directory, and the root of a source that writes its dataset there, where
    data=synth puts it, conf/data/synth.yaml), and what to read (a manifest's paths stay inside its
    folder: only the user's data.allow_outside_root=true, with data=..., lets them out)."""
    settings = {"cache_dir": cfg.paths.cache_dir, "allow_outside_root": False}
    if isinstance(stored.get("source"), str) and issubclass(SOURCES.get(stored["source"], Source), SynthSource):
        settings["root"] = str(Path(cfg.paths.data_dir) / "synth")
    return settings


def check_fits(model: GenreClassifier, datamodule: GenreDataModule, same_classes: bool = True) -> None:
    """The model hears chunks of its own sample rate and length (and, unless told otherwise, knows
    the data's classes); else one sentence names every difference and the override that fixes it."""
    data, ours = datamodule.hparams, model.hparams
    differences = []
    if data.sample_rate != ours.sample_rate:
        differences.append(f"sample rate {data.sample_rate} Hz, the model's {ours.sample_rate} Hz "
                           f"(set data.sample_rate={ours.sample_rate})")
    if round(data.chunk_seconds * ours.sample_rate) != model.chunk_samples:  # at one rate: only the length counts
        differences.append(f"chunk length {data.chunk_seconds:g} s, the model's {ours.chunk_seconds:g} s "
                           f"(set data.chunk_seconds={ours.chunk_seconds:g})")
    if same_classes and datamodule.class_names != model.class_names:
        differences.append(f"classes {datamodule.class_names}, the model's {model.class_names} "
                           "(choose a dataset with the model's classes)")
    if differences:
        raise MGRError(f"The data does not fit the model: {'; '.join(differences)}.")


def resolve_device(name: str) -> torch.device:
    """device=auto|cpu|cuda|cuda:N; auto: a GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MGRError(f"device={name!r} is not a torch device; use auto, cpu or cuda.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MGRError(f"device={name} asks for a GPU, but torch finds none; use device=auto or device=cpu.")
    return device
