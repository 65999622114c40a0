"""A real-music benchmark built from Debian's packaged game soundtracks, and its classic
reference baseline.

    python benchmarks/realmusic.py build [--root data/realmusic]
    python benchmarks/realmusic.py reference [--root data/realmusic] [--clips 10 0]
    python benchmarks/realmusic.py run [--root data/realmusic] [--seeds 0 1 2] [--systems NAME ...]
        [--reference] [--out DIR] [-- mgr.train overrides for every run]
    python -m mgr.train data=folder data.root=data/realmusic/manifest.csv

**The task** is composer/source identification in the spirit of artist20: one class per
game, each game's soundtrack by one composer or one team, as the package's copyright file
says (debian/copyright of bookworm's packages, checked 2026-12):

| label | package (version, download) | game | composer / team | tracks | minutes |
|---|---|---|---|---|---|
| drascula | drascula-music (1.0+ds4-2, 36.4 MB) | Drascula: The Vampire Strikes Back | Alcachofa Soft S.L. (no composer named) | 23 | 42.5 |
| fillets-ng | fillets-ng-data (1.0.1-1.1, 70.6 MB) | Fish Fillets - Next Generation | not named (the game is ALTAR Interactive's) | 10 | 21.5 |
| freedroidrpg | freedroidrpg-data (1.0-1, 228.3 MB) | FreedroidRPG | the Freedroid dev team (the game's credits: girix8, pekpek, ...) | 16 | 48.6 |
| hyperrogue | hyperrogue-music (12.0q-1, 63.8 MB) | HyperRogue | Shawn Parrotte (9 tracks), Lincoln Domina (2), Will Savino (1) | 12 | 18.5 |
| singularity | singularity-music (007-2, 51.6 MB) | Endgame: Singularity | Max McCracken | 14 | 62.6 |
| supertux | supertux-data (0.6.3-2, 161.6 MB) | SuperTux | Marek Moeckel (the file's entry for data/music/*) | 40 | 93.3 |
| widelands | widelands-data (2:1.1-3, 381.4 MB) | Widelands | the Widelands Development Team; ingame_24-26 Stuart Marshall | 28 | 91.1 |

143 tracks, 378 minutes (6.3 h), split 84/31/28 tracks (train/val/test). The download is
994 MB (widelands-data alone 381 MB; about 20 s here), the built folder 348 MB (music and
copyright files only), the build about 3 minutes on 2 cores, most of it decoding every track.

`build` fetches the seven packages with `apt-get download` (no install, no root needed,
nothing written outside --root), unpacks each one's music folder and copyright file with
`dpkg-deb --fsys-tarfile | tar -x` into `<root>/.unpack-<label>`, decodes every candidate
file in full with mgr's decoder (soundfile), keeps the usable tracks as
`<root>/<label>/<path inside the music folder>` beside the package's `copyright`, records
what it kept and skipped in `<root>/<label>/tracks.json`, deletes the .deb and writes
`<root>/manifest.csv`. Re-running skips every class whose tracks.json is there; an
interrupted download or unpack starts that package again. What it skips, and why:

- tracks shorter than a minute (jingles, win/lose stingers, intros: too short to draw
  separate training and test excerpts from, and the issue asks for tracks of a minute or more);
- byte-identical copies: widelands' menu.ogg is ingame_14.ogg (a copy on two sides of the
  split would leak); of drascula-music only audio/ is read, its de/en/es/fr/it folders repeat it;
- files mgr's decoder refuses (mgr.data.audio.load_audio): three of hyperrogue's Will Savino
  tracks (caribbean, ivory, ocean) decode 104 frames short of their Ogg header's length,
  which it takes for truncation, so mgr.train would drop them as bad files anyway;
- everything outside each package's music folder (sound effects, speech).

Packages looked at and left out: xmoto-data (7 tracks of a minute or more), lincity-ng-data
(3, its music files have no extension), asc-music (3 MP3s), freeorion-data (1),
boswars-data (no music: speech and effect WAVs of at most 22 s), planetblupi-music-ogg
(10 files of 10 to 29 minutes, looped), warzone2100-music (two composers; 24 tracks of
5 to 14 minutes by one of them would outweigh every other class), nexuiz-music (one .pk3).

**The manifest** (`path,label,split,group`, paths relative to the CSV) lists whole tracks.
The group is the track, except that a game's variants of one piece share a group, so they
stay on one side: a stem differing only by `_old`/`_remix`/`_enhanced` or by a trailing
number from another track's stem (supertux: airship_2 and airship_remix, cave and cave_old,
forest/forest2/forest3, ghostforest/ghostforest2, voc-daytime/voc-daytime2). The split draws
whole groups per class, 60/20/20 (mgr.data.splits.group_split, seed 0, over rows sorted by
label and path: no dependence on file-system order or time).

**Clip/track protocol.** mgr cuts chunks itself: training draws random chunks of
data.chunk_seconds from each track, evaluation scores evenly spaced chunks that cover each
track (mgr.data.chunking.chunk_starts) and a track's score is the mean of its chunk logits.
`reference` uses the same cut: a clip protocol of S seconds describes every clip of S
seconds at the evaluation starts by its own statistics, trains the SVM on all clips of the
training tracks, scores every clip (clip metrics) and each track by the mean of its clips'
SVM decision values (track metrics). `--clips 0` is seed report 004's per-track protocol: one
statistics vector over the whole track. The issue's own trial used 10 s clips.

**The reference** (librosa + scikit-learn), at 22.05 kHz mono as data=folder decodes: every
clip, computed on its own as mgr's frontends compute a chunk (centred 2048-sample frames,
hop 512, zero-padded at the clip's ends), gives per frame 20 MFCCs (of a 128-band mel in dB,
floored 80 dB below the clip's peak, as librosa and mgr do), 7 spectral contrast bands,
12 chroma bins (chroma_stft, tuning fixed at A440 as mgr's chroma), zero-crossing rate and
spectral centroid; `+bw+rolloff` adds spectral bandwidth and roll-off. The clip is the mean
and standard deviation of each over its frames (82 or 86 values), standardised on the
training clips, classified by an RBF SVM. C (0.1 to 1000) and gamma (0.001 to 0.1) are
chosen on the validation clips' accuracy (ties: smaller C, then smaller gamma); the SVM
stays fitted on the training split alone, as every mgr model is trained on train and
selected on val, so mgr's own baseline can be held to it. Everything is deterministic (the
decoder, librosa's features, libsvm without probability estimates), so a seed changes
nothing and each figure is one run (refitting with the training clips in three random orders
and random_state 0-2, whole-track protocol, moved no test decision value by more than 3e-4
and no prediction).
It takes about 18 minutes for `--clips 3 10 0` on 2 shared cores, nearly all of it librosa.

**The comparison.** `run` trains each system of SYSTEMS (`--systems`, default all) with each
seed on the manifest's split, one `python -m mgr.train data=folder data.root=<root>/manifest.csv
seed=S <the system's overrides> <the overrides after -->` per run into `<out>/<system>/seed<S>`
(default out: `<root>/runs`; mgr.train's output in its output.log), seed by seed so that a
partial table has every system. It prints one markdown table, also written to `<out>/table.md`
(every run's figures in `<out>/results.json`): per system the test clip (chunk) and track
accuracy and macro-F1 of each run's metrics.json, mean ± sample std over the seeds, the number
of seeds and the mean wall seconds of a run (the whole mgr.train process, so the first run to
need them also decodes the audio into mgr's waveform cache and fills the probe's embedding
cache). `--reference` adds the reference's row (3 s clips, base features; deterministic, so one
run; its wall is the whole reference, both feature sets). A run is finished once its
metrics.json and wall_seconds.txt are there: a rerun reads it instead of training again (and
stops if it was trained with other overrides); an unfinished one starts again from scratch. A
failed run stops the comparison after printing the table of the runs before it.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from omegaconf import OmegaConf

from mgr import MGRError
from mgr.data.audio import DecodeError, is_audio_file, load_audio
from mgr.data.chunking import chunk_starts, cut
from mgr.data.sources import read_manifest
from mgr.data.splits import SPLITS, assigned_split, group_split

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "data" / "realmusic"
MIN_SECONDS = 60.0
FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
SPLIT_SEED = 0


@dataclass(frozen=True)
class Soundtrack:
    label: str
    package: str
    music_dir: str  # inside the package, without the leading ./


SOUNDTRACKS = (
    Soundtrack("drascula", "drascula-music", "usr/share/scummvm/drascula/audio"),
    Soundtrack("fillets-ng", "fillets-ng-data", "usr/share/games/fillets-ng/music"),
    Soundtrack("freedroidrpg", "freedroidrpg-data", "usr/share/freedroidrpg/data/sound/music"),
    Soundtrack("hyperrogue", "hyperrogue-music", "usr/share/hyperrogue/music"),
    Soundtrack("singularity", "singularity-music", "usr/share/games/singularity/music"),
    Soundtrack("supertux", "supertux-data", "usr/share/games/supertux2/music"),
    Soundtrack("widelands", "widelands-data", "usr/share/games/widelands/data/music"),
)


# ---------------------------------------------------------------- build

def fetch_deb(package: str, debs: Path) -> Path:
    """The package's .deb in `debs`, downloaded with `apt-get download` unless already there."""
    found = sorted(debs.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise MGRError("benchmarks/realmusic.py build needs apt-get and dpkg-deb (Debian or Ubuntu) "
                       "to fetch the game soundtrack packages.")
    partial = debs / ".partial"  # an interrupted download never looks finished
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    proc = subprocess.run(["apt-get", "download", package], cwd=partial, capture_output=True, text=True)
    got = sorted(partial.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or len(got) != 1:
        lines = [l for l in proc.stderr.splitlines() if l.startswith("E:")] or proc.stderr.splitlines() or ["no .deb"]
        raise MGRError(f"apt-get download {package} failed ({lines[-1].removeprefix('E: ')}); the benchmark "
                       "fetches Debian packages, so run apt-get update and check that the Debian archive is reachable.")
    target = debs / got[0].name
    got[0].rename(target)
    shutil.rmtree(partial)
    return target


def unpack(deb: Path, members: list[str], into: Path) -> None:
    """Extract `members` (paths inside the package) of `deb` into `into`, nothing else."""
    into.mkdir(parents=True)
    data = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tar = subprocess.run(["tar", "-x", "-C", str(into), *[f"./{m}" for m in members]], stdin=data.stdout,
                         capture_output=True, text=True)
    data.stdout.close()
    err = data.stderr.read().decode(errors="replace")
    if data.wait() != 0 or tar.returncode != 0:
        why = (tar.stderr if tar.returncode else err).strip()
        raise MGRError(f"Cannot unpack {', '.join(members)} from {deb.name} ({why}): a damaged download (delete it "
                       "and run build again) or a version of the package laid out unlike the one this script knows.")


def pieces(stems: list[str]) -> dict[str, str]:
    """The piece each stem belongs to: variants (`x_old`, `x_remix`, `x2` beside `x`) share one."""
    base = {s: re.sub(r"[_-]?(old|remix|enhanced)$", "", s, flags=re.I) for s in stems}
    known = set(base.values())
    for stem, b in base.items():
        unnumbered = re.sub(r"[_-]?\d+$", "", b)
        if unnumbered != b and unnumbered in known:
            base[stem] = unnumbered
    return base


def select_tracks(music: Path, min_seconds: float) -> tuple[list[dict], list[dict]]:
    """Decode every audio file below `music` (sorted by path): the usable tracks and the skipped ones."""
    kept, skipped, seen = [], [], {}
    for file in sorted(p for p in music.rglob("*") if is_audio_file(p)):
        rel = file.relative_to(music).as_posix()
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        if digest in seen:
            skipped.append({"path": rel, "reason": f"identical to {seen[digest]}"})
            continue
        seen[digest] = rel
        try:
            info = sf.info(str(file))
            seconds = len(load_audio(file, info.samplerate)) / info.samplerate  # decodes in full: validates
        except (DecodeError, RuntimeError) as e:  # sf.info raises LibsndfileError, a RuntimeError
            skipped.append({"path": rel, "reason": f"does not decode: {e}"})
            continue
        if seconds < min_seconds:
            skipped.append({"path": rel, "reason": f"{seconds:.1f} s, shorter than {min_seconds:g} s"})
            continue
        kept.append({"path": rel, "seconds": round(seconds, 3), "sample_rate": info.samplerate,
                     "channels": info.channels, "sha256": digest})
    group_of = pieces([Path(t["path"]).stem for t in kept])
    for t in kept:
        t["group"] = group_of[Path(t["path"]).stem]
    return kept, skipped


def build_class(root: Path, track: Soundtrack, min_seconds: float) -> dict:
    """One class folder `<root>/<label>/` with its tracks.json, fetched and unpacked unless done."""
    folder, record_file = root / track.label, root / track.label / "tracks.json"
    wanted = {"package": track.package, "music_dir": track.music_dir, "min_seconds": min_seconds}
    if record_file.is_file():
        record = json.loads(record_file.read_text())
        if {k: record.get(k) for k in wanted} == wanted:
            print(f"{track.label}: {len(record['tracks'])} tracks in {folder}, skipping {track.package}")
            return record
    deb = fetch_deb(track.package, root / "debs")
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True).stdout.strip()
    tmp = root / f".unpack-{track.label}"
    shutil.rmtree(tmp, ignore_errors=True)
    copyright_file = f"usr/share/doc/{track.package}/copyright"
    unpack(deb, [track.music_dir, copyright_file], tmp)
    kept, skipped = select_tracks(tmp / track.music_dir, min_seconds)
    shutil.rmtree(folder, ignore_errors=True)  # a class left half-moved by an interrupted run
    for t in kept:
        (folder / t["path"]).parent.mkdir(parents=True, exist_ok=True)
        (tmp / track.music_dir / t["path"]).rename(folder / t["path"])
    folder.mkdir(parents=True, exist_ok=True)
    (tmp / copyright_file).rename(folder / "copyright")
    record = {**wanted, "version": version, "deb": deb.name, "deb_bytes": deb.stat().st_size,
              "tracks": kept, "skipped": skipped}
    part = record_file.with_suffix(".json.part")
    part.write_text(json.dumps(record, indent=1))
    part.rename(record_file)  # written last: the class is complete
    deb.unlink()
    shutil.rmtree(tmp)
    minutes = sum(t["seconds"] for t in kept) / 60
    print(f"{track.label}: {track.package} {version} ({record['deb_bytes'] / 1e6:.1f} MB), "
          f"{len(kept)} tracks kept ({minutes:.1f} min), {len(skipped)} skipped")
    return record


def write_manifest(root: Path, records: dict[str, dict]) -> Path:
    """`<root>/manifest.csv`: every kept track, its label, split (whole groups, 60/20/20 per class) and group."""
    rows = sorted((f"{label}/{t['path']}", label, f"{label}/{t['group']}")
                  for label, record in records.items() for t in record["tracks"])
    labels = sorted({label for _, label, _ in rows})
    splits = group_split([labels.index(l) for _, l, _ in rows], [g for _, _, g in rows], FRACTIONS, SPLIT_SEED)
    split_of = {i: name for name, indices in splits.items() for i in indices}
    manifest, part = root / "manifest.csv", root / "manifest.csv.part"
    with open(part, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["path", "label", "split", "group"])
        out.writerows((path, label, split_of[i], group) for i, (path, label, group) in enumerate(rows))
    part.rename(manifest)
    return manifest


def build(root: Path, soundtracks=SOUNDTRACKS, min_seconds: float = MIN_SECONDS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    records = {t.label: build_class(root, t, min_seconds) for t in soundtracks}
    manifest = write_manifest(root, records)
    split_of = {row["path"]: row["split"] for row in csv.DictReader(manifest.read_text().splitlines())}
    print("\n| label | tracks | train/val/test | minutes | .deb MB |\n|---|---|---|---|---|")
    for label, record in records.items():
        counts = [sum(split_of[f"{label}/{t['path']}"] == s for t in record["tracks"]) for s in SPLITS]
        print(f"| {label} | {len(record['tracks'])} | {'/'.join(map(str, counts))} | "
              f"{sum(t['seconds'] for t in record['tracks']) / 60:.1f} | {record['deb_bytes'] / 1e6:.1f} |")
    print(f"\n{len(split_of)} tracks; manifest: {manifest}")
    return manifest


# ---------------------------------------------------------------- reference

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


def split_manifest(manifest: Path):
    """The manifest's tracks; one clear error where `build` has not written it."""
    if not manifest.is_file():
        raise MGRError(f"{manifest} does not exist; run python benchmarks/realmusic.py build first.")
    tracks = read_manifest(manifest)
    if tracks.given_splits is None:
        raise MGRError(f"{manifest} has no split column; the benchmark uses the manifest's split.")
    return tracks


def reference(manifest: Path, clips: list[float], sample_rate: int = 22050) -> list[dict]:
    """The table rows: one per clip protocol and feature set (see the module docstring)."""
    try:
        import librosa  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as e:
        raise MGRError(f"The reference needs librosa and scikit-learn ({e}); pip install '.[test]'.") from None
    tracks = split_manifest(manifest)
    splits = assigned_split(tracks.given_splits)
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


# ---------------------------------------------------------------- run

# name -> (what it is, its mgr.train overrides after data=folder data.root=<manifest> seed=S)
SYSTEMS = {
    "classic": ("mgr's classic baseline: descriptor statistics + RBF SVM",
                ["model=stats_rbf_svm", "feature=descriptors", "data.chunk_seconds=3",
                 "data.train_chunks_per_track=even"]),  # the reference's clips
    "default": ("the README's own-data command (defaults: recipe=small_data)", []),
    "plain": ("the default's net and input trained without its recipe", ["recipe=none", "model=cnn", "feature=mel64"]),
    "probe": ("linear probe on MSD musicnn embeddings",
              ["model=probe", "encoder=msd_musicnn", "trainer.max_epochs=30", "recipe=none"]),  # as measured
}
# The table's figures: their names in mgr's metrics.json, and in a reference row
METRICS = {"test/acc": "test_clip_acc", "test/f1": "test_clip_f1", "test/track_acc": "test_track_acc",
           "test/track_f1": "test_track_f1"}
REFERENCE_CLIPS = 3.0


def finished(run_dir: Path) -> bool:
    """Whether a run succeeded: wall_seconds.txt is written only then, after mgr.train's metrics.json."""
    return (run_dir / "metrics.json").is_file() and (run_dir / "wall_seconds.txt").is_file()


def train(run_dir: Path, overrides: list[str]) -> None:
    """One mgr.train run into `run_dir` (emptied first: what is there is an unfinished run), timed."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    output = run_dir / "output.log"
    start = time.perf_counter()
    with open(output, "w") as out:
        code = subprocess.run([sys.executable, "-m", "mgr.train", *overrides, f"hydra.run.dir={run_dir}"], stdout=out,
                              stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    if code != 0 or not (run_dir / "metrics.json").is_file():
        errors = [l.removeprefix("mgr: error: ").rstrip(".") for l in output.read_text(errors="replace").splitlines()
                  if l.startswith("mgr: error: ")]  # mgr's one-sentence errors; others are in the output
        why = f"exit {code}" + (f": {errors[-1]}" if errors else "")
        if code == 0:
            why = "exit 0 without a metrics.json: test=false?"
        raise MGRError(f"mgr.train failed in {run_dir} ({why}); see {run_dir / 'train.log'} and {output}.")
    (run_dir / "wall_seconds.txt").write_text(f"{wall:.1f}\n")


def read_run(run_dir: Path, seed: int, overrides: list[str]) -> dict:
    """A finished run's figures, if it was trained with `overrides` (its run directory aside)."""
    given = [o for o in OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "overrides.yaml"))
             if not o.startswith("hydra.run.dir=")]
    if given != overrides:
        raise MGRError(f"{run_dir} was trained with other overrides ({' '.join(given)}); "
                       "give another --out, or delete it to train it again.")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"seed": seed, **{k: metrics[k] for k in METRICS},
            "wall_seconds": float((run_dir / "wall_seconds.txt").read_text())}


def reference_run(manifest: Path, saved: Path) -> dict:
    """The reference's base-features row of REFERENCE_CLIPS clips as a run, computed once into `saved`."""
    if not saved.is_file():
        start = time.perf_counter()
        (row,) = [r for r in reference(manifest, [REFERENCE_CLIPS]) if r["features"] == "base"]
        run = {"seed": None, **{k: row[name] for k, name in METRICS.items()},
               "wall_seconds": time.perf_counter() - start}
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(run, indent=2))
    return json.loads(saved.read_text())


def results_table(results: dict[str, dict]) -> str:
    """Markdown: a row per system (`results`: name -> description and runs), mean ± sample std over its runs."""
    def cell(values: list[float]) -> str:
        return f"{np.mean(values):.3f}" + (f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else "")

    lines = ["| system | what | test clip acc | test clip F1 | test track acc | test track F1 | seeds | wall s/run |",
             "|---|---|---|---|---|---|---|---|"]
    for name, system in results.items():
        runs = system["runs"]
        figures = " | ".join(cell([r[k] for r in runs]) for k in METRICS)
        lines.append(f"| {name} | {system['description']} | {figures} | {len(runs)} "
                     f"| {np.mean([r['wall_seconds'] for r in runs]):.0f} |")
    return "\n".join(lines)


def run_benchmark(manifest: Path, systems: list[str], seeds: list[int], out: Path, extra: list[str],
                  with_reference: bool = False) -> dict[str, dict]:
    """Train every system with every seed (see the module docstring); the table's results."""
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise MGRError(f"No system named {', '.join(unknown)}; --systems chooses from {', '.join(SYSTEMS)}.")
    split_manifest(manifest)
    results = {}
    if with_reference:
        results["reference"] = {"description": f"librosa + scikit-learn reference ({REFERENCE_CLIPS:g} s clips, base "
                                               "features, RBF SVM)", "overrides": [],
                                "runs": [reference_run(manifest, out / "reference" / "run.json")]}
    jobs = [(seed, name) for seed in dict.fromkeys(seeds) for name in dict.fromkeys(systems)]
    try:
        for k, (seed, name) in enumerate(jobs, 1):
            description, own = SYSTEMS[name]
            overrides = ["data=folder", f"data.root={manifest}", f"seed={seed}", *own, *extra]
            run_dir, step = out / name / f"seed{seed}", f"[{k}/{len(jobs)}] {name} seed {seed}"
            done = finished(run_dir)
            if not done:
                print(f"{step} ...", flush=True)
                train(run_dir, overrides)
            run = read_run(run_dir, seed, overrides)
            print(f"{step}: {'finished before, ' if done else ''}test track acc {run['test/track_acc']:.3f}, "
                  f"{run['wall_seconds']:.0f} s", flush=True)
            system = results.setdefault(name, {"description": description, "overrides": own + extra, "runs": []})
            system["runs"].append(run)
    finally:  # also after a failed run: the runs before it
        if results:
            table = results_table(results)
            out.mkdir(parents=True, exist_ok=True)
            (out / "table.md").write_text(table + "\n")
            (out / "results.json").write_text(json.dumps(results, indent=2))
            print(f"\n{table}\n\ntable: {out / 'table.md'}, every run: {out / 'results.json'}")
    return results


# ---------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_cmd = commands.add_parser("build", help="fetch the soundtracks and write <root>/manifest.csv")
    build_cmd.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="benchmark folder (default: %(default)s)")
    ref = commands.add_parser("reference", help="the librosa + scikit-learn classic baseline on the manifest's split")
    ref.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="benchmark folder (default: %(default)s)")
    ref.add_argument("--clips", type=float, nargs="+", default=[10.0, 0.0],
                     help="clip lengths in seconds, 0 for whole tracks (default: %(default)s)")
    run_cmd = commands.add_parser("run", help="train each system with each seed on the manifest's split; one table")
    run_cmd.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="benchmark folder (default: %(default)s)")
    run_cmd.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="(default: %(default)s)")
    run_cmd.add_argument("--systems", nargs="+", default=list(SYSTEMS), metavar="NAME",
                         help=f"of {', '.join(SYSTEMS)} (default: all)")
    run_cmd.add_argument("--reference", action="store_true",
                         help=f"add the reference's row ({REFERENCE_CLIPS:g} s clips, base features)")
    run_cmd.add_argument("--out", type=Path, help="the runs' folder (default: <root>/runs)")
    run_cmd.add_argument("overrides", nargs="*", help="after --: mgr.train overrides for every run")
    args = parser.parse_args(argv)
    try:
        root = args.root.expanduser().resolve()
        if args.command == "build":
            build(root)
        elif args.command == "reference":
            reference(root / "manifest.csv", args.clips)
        else:
            out = args.out.expanduser().resolve() if args.out else root / "runs"
            run_benchmark(root / "manifest.csv", args.systems, args.seeds, out, args.overrides, args.reference)
    except MGRError as e:
        print(f"mgr: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
