"""The librosa + scikit-learn classic reference on one fold of a suite task: what mgr's classic
baseline (experiment=suite/classic) is held to.

    python benchmarks/suite/reference.py --task long --fold 0 [--root data/suite] [--clips 3 0]

The fold is mgr's own (data.folds=5 data.fold=K, data.split_seed 0: mgr.data.splits.group_folds through
the folder source), so its test tracks are the ones mgr.train tests on that fold.

**The reference**, at 22.05 kHz mono as data=folder decodes: every clip, computed on its own as mgr's
frontends compute a chunk (centred 2048-sample frames, hop 512, zero-padded at the clip's ends), gives
per frame 20 MFCCs (of a 128-band mel in dB, floored 80 dB below the clip's peak, as librosa and mgr
do), 7 spectral contrast bands, 12 chroma bins (chroma_stft, tuning fixed at A440 as mgr's chroma),
zero-crossing rate and spectral centroid; `+bw+rolloff` adds spectral bandwidth and roll-off. The clip
is the mean and standard deviation of each over its frames (82 or 86 values), standardised on the
training clips, classified by an RBF SVM. C (0.1 to 1000) and gamma (0.001 to 0.1) are chosen on the
validation clips' accuracy (ties: smaller C, then smaller gamma); the SVM stays fitted on the training
split alone, as every mgr model is trained on train and selected on val.

**Clip/track protocol.** A clip protocol of S seconds describes every clip of S seconds at mgr's
evaluation starts (mgr.data.chunking.chunk_starts) by its own statistics, trains the SVM on all clips
of the training tracks, scores every clip (clip metrics) and each track by the mean of its clips' SVM
decision values (track metrics). `--clips 0`: one statistics vector over the whole track. Everything is
deterministic (the decoder, librosa's features, libsvm without probability estimates): one run per row.
On the realmusic benchmark's split (2026-12-02, benchmarks/RESULTS.md) mgr's classic baseline
(`data.train_chunks_per_track=even`) gave exactly this reference's 3 s figures.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from mgr import MGRError
from mgr.data.audio import load_audio
from mgr.data.chunking import chunk_starts, cut
from mgr.data.sources.folder import FolderSource
from mgr.data.splits import SPLITS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build import DEFAULT_ROOT, FOLDS, SPLIT_SEED, TASKS  # noqa: E402  (the suite's own settings)

BASE_FEATURES = ("mfcc", "contrast", "chroma", "zcr", "centroid")
EXTRA_FEATURES = ("bandwidth", "rolloff")
FEATURE_SETS = {"base": BASE_FEATURES, "+bw+rolloff": BASE_FEATURES + EXTRA_FEATURES}
N_FFT, HOP = 2048, 512
C_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)
GAMMA_GRID = (0.001, 0.003, 0.01, 0.03, 0.1)


@functools.lru_cache
def mel_filters(sr: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=128, dtype=np.float32)


def frame_features(y: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    """librosa's frame features of a waveform, each [k, frames] (frame t centred on sample t * HOP)."""
    import librosa

    magnitude = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP))
    power = magnitude**2
    # librosa.feature.melspectrogram(S=power), with its filter bank built once and a BLAS product (its einsum is slow)
    mel_db = librosa.power_to_db(mel_filters(sr) @ power)  # top_db 80, as mgr
    return {
        "mfcc": librosa.feature.mfcc(S=mel_db, n_mfcc=20),
        "contrast": librosa.feature.spectral_contrast(S=magnitude, sr=sr, n_fft=N_FFT, hop_length=HOP),
        # tuning fixed at A440 as mgr's chroma: an estimate per clip would move the bins clip by clip
        "chroma": librosa.feature.chroma_stft(S=power, sr=sr, n_fft=N_FFT, hop_length=HOP, tuning=0.0),
        "zcr": librosa.feature.zero_crossing_rate(y, frame_length=N_FFT, hop_length=HOP),
        "centroid": librosa.feature.spectral_centroid(S=magnitude, sr=sr, n_fft=N_FFT, hop_length=HOP),
        "bandwidth": librosa.feature.spectral_bandwidth(S=magnitude, sr=sr, n_fft=N_FFT, hop_length=HOP),
        "rolloff": librosa.feature.spectral_rolloff(S=magnitude, sr=sr, n_fft=N_FFT, hop_length=HOP),
    }


def clip_statistics(wave: np.ndarray, sr: int, clip: int) -> dict[str, np.ndarray]:
    """Per feature, [clips, 2 * k]: the mean and std over time of each of its rows, every clip of
    `clip` samples at evaluation's starts (chunk_starts, zero-padded as `cut`) computed on its own
    as mgr's frontends compute a chunk; clip=0: the whole track as one clip."""
    clips = [wave] if clip == 0 else cut(wave, chunk_starts(len(wave), clip), clip).numpy()
    per_clip = [frame_features(np.ascontiguousarray(c), sr) for c in clips]
    return {name: np.stack([np.concatenate([f[name].mean(1), f[name].std(1)]) for f in per_clip])
            for name in per_clip[0]}


def select(stats: dict[str, np.ndarray], features: tuple[str, ...]) -> np.ndarray:
    """[clips, dims]: the chosen features' means, then their standard deviations."""
    means = [stats[f][:, : stats[f].shape[1] // 2] for f in features]
    stds = [stats[f][:, stats[f].shape[1] // 2 :] for f in features]
    return np.concatenate(means + stds, axis=1)


def fit_and_score(x: dict, y: dict, clip_track: dict) -> dict:
    """The grid over C and gamma on validation clips; test metrics of the chosen SVM (fitted on train)."""
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    scaler = StandardScaler().fit(x["train"])
    z = {k: scaler.transform(v) for k, v in x.items()}
    best = None
    for c in C_GRID:
        for gamma in GAMMA_GRID:
            svm = SVC(C=c, gamma=gamma, kernel="rbf").fit(z["train"], y["train"])
            acc = accuracy_score(y["val"], svm.predict(z["val"]))
            if best is None or acc > best[0]:  # strictly better: ties keep the smaller C and gamma
                best = (acc, c, gamma, svm)
    val_acc, c, gamma, svm = best
    out = {"C": c, "gamma": gamma, "val_clip_acc": val_acc}
    for split in ("val", "test"):
        scores = svm.decision_function(z[split])
        tracks, where = np.unique(clip_track[split], return_inverse=True)
        track_scores = np.zeros((len(tracks), scores.shape[1]))
        np.add.at(track_scores, where, scores)
        track_y = np.zeros(len(tracks), dtype=int)
        track_y[where] = y[split]
        clip_pred = svm.classes_[scores.argmax(1)]
        track_pred = svm.classes_[track_scores.argmax(1)]  # the mean's argmax: the sum's
        out[f"{split}_clip_acc"] = accuracy_score(y[split], clip_pred)
        out[f"{split}_clip_f1"] = f1_score(y[split], clip_pred, average="macro")
        out[f"{split}_track_acc"] = accuracy_score(track_y, track_pred)
        out[f"{split}_track_f1"] = f1_score(track_y, track_pred, average="macro")
    return out




def fold_of(manifest: Path, fold: int):
    """The manifest's tracks and mgr's split of fold `fold`; one clear error where build has not written it."""
    if not manifest.is_file():
        raise MGRError(f"{manifest} does not exist; run python benchmarks/suite/build.py first.")
    source = FolderSource(str(manifest))
    tracks = source.list()
    return tracks, source.split(tracks, None, SPLIT_SEED, FOLDS, fold)

def reference(manifest: Path, fold: int, clips: list[float], sample_rate: int = 22050) -> list[dict]:
    """The table rows: one per clip protocol and feature set (see the module docstring)."""
    try:
        import librosa  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as e:
        raise MGRError(f"The reference needs librosa and scikit-learn ({e}); pip install '.[test]'.") from None
    tracks, splits = fold_of(manifest, fold)
    start = time.perf_counter()
    per_track = defaultdict(dict)  # track index -> {(feature set, clip seconds): [clips, dims]}
    for split in SPLITS:
        for i in splits[split]:
            wave = load_audio(tracks.files[i], sample_rate)
            for seconds in clips:
                stats = clip_statistics(wave, sample_rate, int(round(seconds * sample_rate)))
                for name, chosen in FEATURE_SETS.items():
                    per_track[i][name, seconds] = select(stats, chosen)
    feature_seconds = time.perf_counter() - start
    rows = []
    for seconds in clips:
        for name in FEATURE_SETS:
            t0 = time.perf_counter()
            stats = {s: [per_track[i][name, seconds] for i in splits[s]] for s in SPLITS}
            x = {s: np.concatenate(stats[s]) for s in SPLITS}
            clip_track = {s: np.repeat(splits[s], [len(v) for v in stats[s]]) for s in SPLITS}
            y = {s: np.asarray(tracks.labels)[clip_track[s]] for s in SPLITS}
            row = fit_and_score(x, y, clip_track)
            rows.append({"clips": f"{seconds:g} s" if seconds else "whole track", "features": name,
                         "dims": x["train"].shape[1], "train_clips": len(x["train"]), **row,
                         "fit_seconds": time.perf_counter() - t0})
    print_table(rows, tracks, splits, feature_seconds, time.perf_counter() - start)
    return rows


def print_table(rows: list[dict], tracks, splits: dict, feature_seconds: float, total_seconds: float) -> None:
    counts = "/".join(str(len(splits[s])) for s in SPLITS)
    print(f"{len(tracks.class_names)} classes, {counts} train/val/test tracks; "
          "RBF SVM, C and gamma chosen on val clips")
    print("| clips | features | dims | train clips | C | gamma | val clip acc | test clip acc | test clip F1 "
          "| test track acc | test track F1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clips']} | {r['features']} | {r['dims']} | {r['train_clips']} | {r['C']:g} | {r['gamma']:g} "
              f"| {r['val_clip_acc']:.3f} | {r['test_clip_acc']:.3f} | {r['test_clip_f1']:.3f} "
              f"| {r['test_track_acc']:.3f} | {r['test_track_f1']:.3f} |")
    print(f"wall time: {total_seconds:.0f} s ({feature_seconds:.0f} s decoding and librosa features, "
          f"{total_seconds - feature_seconds:.0f} s SVM grids)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the suite's folder (default: %(default)s)")
    parser.add_argument("--task", choices=[t.name for t in TASKS], required=True)
    parser.add_argument("--fold", type=int, choices=range(FOLDS), required=True, help="the test fold, 0 to 4")
    parser.add_argument("--clips", type=float, nargs="+", default=[3.0, 0.0],
                        help="clip lengths in seconds, 0 for whole tracks (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        reference(args.root.expanduser().resolve() / f"{args.task}.csv", args.fold, args.clips)
    except MGRError as e:
        print(f"mgr: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
