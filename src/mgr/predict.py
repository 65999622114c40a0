"""Label audio files with a trained model: python -m mgr.predict ckpt_path=best.ckpt inputs=[song.mp3,music/]

Needs the checkpoint only: it holds the sample rate, chunk length, feature
settings and class names. Several checkpoints, ckpt_path=[a.ckpt,b.ckpt] (the
folds' or seeds' models, of the same classes, rate and chunk length), label as
one model: each chunk gets the mean of their probabilities (mgr.models.ensemble),
and the chunks are combined by the first checkpoint's rule.

Each file is decoded to mono at the model's rate
(mgr.data.audio.load_audio, as the waveform cache is) and cut by
mgr.data.chunking.chunk_starts: the fewest evenly spaced chunks from the first
sample to the last that are at most (1 - overlap) of a chunk apart, a file
shorter than one chunk zero-padded to it. The chunks are combined as the
checkpoint's track metrics combined them (mgr.models.aggregation.TrackAggregation;
`track_aggregation=...` overrides): the softmax of the mean chunk logits (the
default), the mean chunk probabilities, or with majority_vote the share of the
voting chunks per genre. overlap=0 cuts the chunks evaluation cuts
(EvenChunks), so a file of a test split gets the scores its track-level test
score was computed from; the default 0.5 lets neighbouring chunks share at
least half a chunk (about twice as many chunks).

A multi-label model (task=multilabel) answers every genre whose probability is at or above its
threshold (chosen on validation, kept in the checkpoint), most probable first, with its probability;
with min_confidence, a file is `unknown` when no genre is above its threshold, or the most probable
of those answered is below min_confidence. A model trained on a genre tree (FMA's genres_all: its
`class_parents`) answers up the tree: each genre's probability is the max of its own and its
descendants', and a genre is answered when it is at or above its threshold or a descendant is
answered, so every answered genre's parent is answered (mgr.data.genre_tree); the probabilities
written are those rolled up.

A file with no sample above the floor at which the waveform cache drops silent
files (mgr.data.cache.SILENCE_PEAK, -80 dBFS) is marked `silent`, not labelled. A
path that is not a regular file (a FIFO, a device, a symlink loop) is listed as
failed with its reason, found by stat before anything opens it.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig

from mgr import MGRError
from mgr.data.audio import DecodeError, has_audio_name, load_audio
from mgr.data.cache import SILENCE_PEAK
from mgr.data.chunking import chunk_starts, cut
from mgr.data.genre_tree import rolled_answers
from mgr.entry import command, require, task

log = logging.getLogger("mgr.predict")

EXIT_SOME_FAILED = 2
UNKNOWN = "unknown"  # the answer for a file whose top probability is below min_confidence


@dataclass
class FilePrediction:
    path: str
    seconds: float = 0.0
    chunks: int = 0
    # In the order of the model's class names; with majority_vote, the share of the voting chunks.
    probabilities: list[float] = field(default_factory=list)
    error: str | None = None
    silent: bool = False  # no sample above the floor the waveform cache drops silent files at: not labelled
    unknown: bool = False  # answered `unknown` (below min_confidence, or novel with novelty=true), probabilities kept
    # Its chunks' mean novelty score (mgr.models.novelty), where the model has a fitted detector, and
    # whether that is above the detector's threshold: unlike the training data.
    novelty: float | None = None
    novel: bool = False
    # A multi-label model's answers: the classes at or above their thresholds, most probable first (None: multi-class).
    tags: list[int] | None = None

    @property
    def status(self) -> str:
        return "failed" if self.error else "silent" if self.silent else "unknown" if self.unknown else "ok"

    def genre(self, class_names: list[str]) -> str:
        """The answer: the most probable genre (a multi-label model's: its answers, `;`-separated), or
        `unknown`; empty for a failed or silent file."""
        if not self.probabilities:
            return ""
        if self.unknown:
            return UNKNOWN
        if self.tags is not None:
            return ";".join(name for name, _ in self.answers(class_names))
        return self.top(class_names, 1)[0][0]

    def answers(self, class_names: list[str]) -> list[tuple[str, float]]:
        """A multi-label model's answers with their probabilities, most probable first."""
        return [(class_names[i], float(self.probabilities[i])) for i in self.tags or []]

    def top(self, class_names: list[str], k: int) -> list[tuple[str, float]]:
        order = np.argsort(-np.asarray(self.probabilities), kind="stable")[:k]  # ties: class order
        return [(class_names[i], float(self.probabilities[i])) for i in order]


def find_audio_files(inputs: Iterable[str]) -> list[Path]:
    """Files as given, folders searched recursively for audio names (symlinked folders are not
    entered). Nothing is opened here: a missing path, a FIFO or a symlink loop is kept, so that
    decoding reports it as failed with its reason."""
    found: dict[str, Path] = {}  # real path -> path as shown: ordered, each file once
    for item in inputs:
        path = Path(item).expanduser()
        files = sorted(p for p in path.rglob("*") if has_audio_name(p) and not p.is_dir()) if path.is_dir() else [path]
        for p in files:
            found.setdefault(os.path.realpath(p), p)  # Path.resolve raises on a symlink loop; realpath keeps it
    return list(found.values())


def chunk_outputs(model, wave: np.ndarray, overlap: float, batch_size: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits [n_chunks, n_classes] of one waveform, chunks cut as the module docstring says, and the
    chunks' embeddings [n_chunks, D] from the same pass where the model has a fitted novelty detector
    (None otherwise: an ensemble, or a checkpoint without one)."""
    with_embeddings = model.novelty.fitted and model.forwards_its_head
    starts = chunk_starts(len(wave), model.chunk_samples, overlap)
    logits, embeddings = [], []
    for i in range(0, len(starts), batch_size):
        batch = cut(wave, starts[i : i + batch_size], model.chunk_samples).to(device, non_blocking=True)
        batch_logits, batch_embeddings = model.embedded_logits(batch) if with_embeddings else (model(batch), None)
        logits.append(batch_logits.float().cpu())
        embeddings.append(batch_embeddings)
    return torch.cat(logits), torch.cat(embeddings).float() if with_embeddings else None


def _decode(path: Path, sample_rate: int) -> np.ndarray | str:
    try:
        return load_audio(path, sample_rate)  # refuses what is not a regular file before opening it
    except DecodeError as e:
        return str(e)
    except Exception as e:  # an unreadable file must not stop the others
        return f"cannot read: {type(e).__name__}: {e}"


def _decoded(paths: list[Path], sample_rate: int, threads: int) -> Iterator[tuple[Path, np.ndarray | str]]:
    """Decode a few files ahead of the model in threads (libsndfile and soxr release the GIL)."""
    with ThreadPoolExecutor(max(1, threads)) as pool:
        pending, todo = deque(), iter(paths)
        for path in todo:
            pending.append((path, pool.submit(_decode, path, sample_rate)))
            if len(pending) > 2 * threads:
                break
        while pending:
            path, future = pending.popleft()
            following = next(todo, None)
            if following is not None:
                pending.append((following, pool.submit(_decode, following, sample_rate)))
            yield path, future.result()


@torch.inference_mode()
def predict_files(model, paths: list[Path], overlap: float = 0.5, batch_size: int = 32,
                  device: torch.device | str = "cpu", decode_threads: int = 2,
                  min_confidence: float | None = None, novelty: bool = False) -> Iterator[FilePrediction]:
    """One FilePrediction per path, in order; a file that cannot be decoded gets its reason in `error`,
    one whose top (calibrated) probability is below `min_confidence`, or with `novelty` one the model's
    novelty detector calls novel, is `unknown`."""
    device = torch.device(device)
    model.eval().to(device)
    sample_rate = model.hparams.sample_rate
    for path, wave in _decoded(paths, sample_rate, decode_threads):
        if isinstance(wave, str):
            yield FilePrediction(str(path), error=wave)
            continue
        if np.abs(wave).max() < SILENCE_PEAK:  # a model labels silence with confidence: say what it is
            yield FilePrediction(str(path), len(wave) / sample_rate, silent=True)
            continue
        logits, embeddings = chunk_outputs(model, wave, overlap, batch_size, device)
        (probabilities,) = model.track_aggregation.probabilities(logits, torch.zeros(len(logits), dtype=torch.long), 1)
        probabilities, tags = answered_tags(model, probabilities)
        score = None if embeddings is None else model.novelty.file_score(embeddings)
        novel = score is not None and model.novelty.is_novel(score)
        yield FilePrediction(str(path), len(wave) / sample_rate, len(logits), probabilities.tolist(),
                             unknown=is_unknown(probabilities, tags, min_confidence) or (novelty and novel), tags=tags,
                             novelty=score, novel=novel)


def answered_tags(model, probabilities: torch.Tensor) -> tuple[torch.Tensor, list[int] | None]:
    """A file's probabilities and a multi-label model's answers for it: the classes at or above their
    thresholds, most probable first, both rolled up the model's class tree where it has one
    (mgr.data.genre_tree.ClassHierarchy.roll_up); the answers are None for a multi-class model."""
    if not getattr(model, "multilabel", False):
        return probabilities, None
    probabilities, answered = rolled_answers(model, probabilities)
    return probabilities, [int(i) for i in torch.argsort(probabilities, descending=True, stable=True) if answered[i]]


def is_unknown(probabilities: torch.Tensor, tags: list[int] | None, min_confidence: float | None) -> bool:
    """Whether a file is answered `unknown`: its most probable answer is below min_confidence (a multi-label
    model's: it has no answer, or its most probable one is below it); never without min_confidence."""
    if min_confidence is None:
        return False
    if tags is None:
        return probabilities.max().item() < min_confidence
    return not tags or probabilities[tags[0]].item() < min_confidence


SILENT = f"no sample above {20 * math.log10(SILENCE_PEAK):.0f} dBFS; not labelled"


def format_row(p: FilePrediction, class_names: list[str], top_k: int, width: int) -> str:
    if p.error:
        return f"  {p.path:{width}s}  FAILED: {p.error}"
    minutes, seconds = divmod(round(p.seconds, 1), 60)  # 59.96 s shows as 1:00.0, not 0:60.0
    length = f"{int(minutes):3d}:{seconds:04.1f}"
    if p.silent:
        return f"  {p.path:{width}s}  {length}  {'':6s}  SILENT: {SILENT}"
    shown = p.top(class_names, top_k) if p.tags is None else p.answers(class_names)
    genres = "  ".join(f"{name} {prob:.2f}" for name, prob in shown) or "no genre above its threshold"
    return f"  {p.path:{width}s}  {length}  {p.chunks:6d}  {unknown_reason(p)}{genres}"


def unknown_reason(p: FilePrediction) -> str:
    """Why a file is answered `unknown`, for its printed row; empty for one answered."""
    if not p.unknown:
        return ""
    return f"UNKNOWN, unlike the training data (novelty {p.novelty:.2f}): " if p.novel else "UNKNOWN, below min_confidence: "


def write_outputs(predictions: list[FilePrediction], class_names: list[str], top_k: int, run_dir: Path,
                  provenance: dict) -> tuple[Path, Path]:
    """predictions.csv (one row per file, a probability column per class, and the checkpoints of
    `provenance`, ;-separated) and predictions.json (`provenance` and the files)."""
    csv_path, json_path = run_dir / "predictions.csv", run_dir / "predictions.json"
    checkpoints = ";".join(provenance.get("checkpoints", []))
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "status", "genre", "probability", "seconds", "chunks", *class_names, "novelty",
                         "error", "checkpoints"])
        for p in predictions:
            path = os.path.realpath(p.path)  # the run directory is elsewhere: no relative paths
            if p.error:
                writer.writerow([path, "failed", "", "", "", "", *[""] * len(class_names), "", p.error, checkpoints])
            elif p.silent:
                writer.writerow([path, "silent", "", "", f"{p.seconds:.2f}", "", *[""] * len(class_names), "", "",
                                 checkpoints])
            else:  # `probability`: the top one, also where the answer is unknown
                (_, prob), = p.top(class_names, 1)
                writer.writerow([path, p.status, p.genre(class_names), f"{prob:.4f}", f"{p.seconds:.2f}", p.chunks,
                                 *(f"{q:.4f}" for q in p.probabilities),
                                 "" if p.novelty is None else f"{p.novelty:.4f}", "", checkpoints])
    files = [
        {
            "path": os.path.realpath(p.path),
            "status": p.status,
            "error": p.error,
            "seconds": p.seconds,
            "chunks": p.chunks,
            "genre": p.genre(class_names) or None,
            "top": [{"genre": g, "probability": q} for g, q in p.top(class_names, top_k)] if p.probabilities else [],
            **({} if p.tags is None else {"answers": [{"genre": g, "probability": q} for g, q in p.answers(class_names)]}),
            "probabilities": dict(zip(class_names, p.probabilities)),
            "novelty": p.novelty,
            "novel": p.novel,
        }
        for p in predictions
    ]
    json_path.write_text(json.dumps({**provenance, "class_names": class_names, "files": files}, indent=2))
    return csv_path, json_path


@dataclass(frozen=True)
class PredictSettings:
    """conf/predict.yaml's own keys (explained there), checked before any work (mgr.schema.check_settings);
    their ranges are checked in predict()."""

    ckpt_path: str | list[str]
    inputs: str | list[str]
    top_k: int
    overlap: float
    track_aggregation: Optional[str]
    vote_threshold: Optional[float]
    min_confidence: Optional[float]
    novelty: bool
    batch_size: int
    device: str
    decode_threads: int


@task(settings=PredictSettings)
def predict(cfg: DictConfig) -> list[FilePrediction]:
    from mgr.models.calibration import temperatures
    from mgr.restore import checkpoint_provenance, load_trained_model, resolve_device

    require(cfg, "ckpt_path", "inputs", usage="python -m mgr.predict ckpt_path=<best>.ckpt inputs=[song.mp3,music/]")
    inputs = list(cfg.inputs) if isinstance(cfg.inputs, (list, ListConfig)) else [str(cfg.inputs)]
    if not 0 <= cfg.overlap < 1:
        raise MGRError(f"overlap={cfg.overlap} must be at least 0 and below 1 (the fraction of a chunk shared).")
    if cfg.batch_size < 1 or cfg.top_k < 1:
        raise MGRError("batch_size and top_k must be at least 1.")
    min_confidence = checked_min_confidence(cfg.get("min_confidence"))
    device = resolve_device(cfg.device)
    model = load_trained_model(cfg, ensemble=True)
    novelty = checked_novelty(cfg.get("novelty", False), model)
    checkpoints = checkpoint_provenance(cfg)
    paths = find_audio_files(str(i) for i in inputs)
    if not paths:
        raise MGRError(f"No audio files found in {', '.join(map(str, inputs))}; pass files or folders holding audio.")
    names, h = model.class_names, model.hparams
    print(f"\n{len(paths)} file(s), {model.architecture} of {', '.join(checkpoints['checkpoints'])}: "
          f"{len(names)} genres, {h.chunk_seconds:g} s chunks at {h.sample_rate} Hz, overlap {cfg.overlap:g}, "
          f"{model.track_aggregation}, {calibration_note(model)}, on {device}", flush=True)
    width = min(max(len(str(p)) for p in paths), 60)
    listed = f"top {cfg.top_k} genres"
    if model.multilabel:  # rolled up a genre tree, a parent may be answered below its own threshold
        listed = ("genres answered, rolled up the genre tree" if getattr(model, "class_parents", None)
                  else "genres at or above their thresholds")
    print(f"  {'file':{width}s}  {'length':>8s}  {'chunks':>6s}  {listed}", flush=True)
    predictions = []
    for p in predict_files(model, paths, cfg.overlap, cfg.batch_size, device, cfg.decode_threads, min_confidence,
                           novelty):
        predictions.append(p)
        print(format_row(p, names, cfg.top_k, width), flush=True)
    run_dir = Path(cfg.paths.output_dir)
    provenance = {**checkpoints, "model": model.architecture, "sample_rate": h.sample_rate,
                  "chunk_seconds": h.chunk_seconds, "overlap": cfg.overlap, **model.track_aggregation.as_dict(),
                  "temperature": temperatures(model), "min_confidence": min_confidence, "novelty": novelty,
                  **novelty_provenance(model),
                  **({"thresholds": dict(zip(names, model.thresholds or []))} if model.multilabel else {})}
    csv_path, json_path = write_outputs(predictions, names, cfg.top_k, run_dir, provenance)
    counts = {s: sum(p.status == s for p in predictions) for s in ("ok", "unknown", "silent", "failed")}
    silent = f", {counts['silent']} silent" if counts["silent"] else ""
    reasons = []
    if min_confidence is not None:
        reasons.append(f"below min_confidence={min_confidence:g}")
    if novelty:
        reasons.append(f"{sum(p.novel and p.unknown for p in predictions)} of them unlike the training data")
    unknown = f", {counts['unknown']} unknown ({'; '.join(reasons)})" if reasons else ""
    print(f"Labelled {counts['ok']} file(s){unknown}{silent}, {counts['failed']} failed; {csv_path.name} and {json_path.name} "
          f"in {run_dir}", flush=True)
    return predictions


def calibration_note(model) -> str:
    """The temperature the probabilities are computed at (a multi-label model's: per tag; an ensemble's:
    its members'), for the header line."""
    from mgr.models.calibration import describe, is_calibrated

    members = getattr(model, "members", None)
    if members is not None:
        return "probabilities at the members' temperatures " + ", ".join(f"{m.temperature:.3g}" for m in members)
    return f"probabilities at {describe(model.temperature)}" + ("" if is_calibrated(model) else " (uncalibrated)")


def checked_novelty(value: bool, model) -> bool:
    """novelty: true needs a checkpoint with a fitted novelty detector (mgr.train's novelty=true, the
    default since 2026-12-07; an ensemble has none)."""
    if value and not model.novelty.fitted:
        raise MGRError("novelty=true needs a checkpoint whose training fitted a novelty detector (mgr.train with "
                       "novelty=true, the default since 2026-12-07; not several checkpoints at once): this one has "
                       "none. Train it again, or predict with novelty=false.")
    return value


def novelty_provenance(model) -> dict:
    """The novelty detector's threshold, for predictions.json (nothing where the model has none)."""
    return {"novelty_threshold": float(model.novelty.threshold)} if model.novelty.fitted else {}


def checked_min_confidence(value) -> float | None:
    """min_confidence: null (answer every file) or a probability in (0, 1]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise MGRError(f"min_confidence={value!r} must be null (answer every file) or a probability above 0 and at "
                       "most 1 (files whose top probability is below it are answered `unknown`); mgr.eval's "
                       "risk_coverage in metrics.json shows what each value costs.")
    return float(value)


def predict_command(cfg: DictConfig) -> None:
    if any(p.error for p in predict(cfg)):
        sys.exit(EXIT_SOME_FAILED)


main = command("predict", predict_command)


if __name__ == "__main__":
    main()
