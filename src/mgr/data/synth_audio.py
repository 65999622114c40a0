"""A generated genre dataset: five classes that differ in tempo, rhythm, harmony,
timbre and noise colour, written as real WAV/FLAC/OGG files.

It is the default dataset so that anyone can run mgr without a download. Each
track draws its key, tempo, loudness, length and background noise at random, so
a class is a family of sounds rather than one template: an untrained model is at
chance, a small CNN learns it in minutes on a CPU.

Its multi-label variant (`multilabel=True`, data=synth_multilabel): every second track of a class
mixes in a second style, drawn at random from the others, 0 to 6 dB below the first, and carries
both labels; the labels are written as a manifest, `labels.csv` (path,labels), beside the files.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
from filelock import FileLock
from tqdm import tqdm

GENERATOR_VERSION = 1
RENDER_RATE = 22050
CLASSES = ("four_on_the_floor", "swing", "ambient_drone", "breakbeat", "distorted_rock")
# (extension, soundfile format, subtype); formats cycle over the tracks.
FORMATS = (("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS"))
FILE_RATES = (22050, 44100, 16000)
LABELS_MANIFEST = "labels.csv"  # the multi-label variant's labels, beside its files


def _noise(rng, n, colour: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**colour (0 white, 1 pink, 2 brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / f ** (colour / 2), n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _env(n, sr, decay: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (sr * decay))


def _tone(f0, dur, sr, partials, decay=None) -> np.ndarray:
    n = int(dur * sr)
    t = np.arange(n) / sr
    x = sum(a * np.sin(2 * np.pi * f0 * (k + 1) * t) for k, a in enumerate(partials) if f0 * (k + 1) < sr / 2)
    return x * (_env(n, sr, decay) if decay else 1.0)


def _kick(rng, sr):
    n = int(0.3 * sr)
    t = np.arange(n) / sr
    freq = 45 + 90 * np.exp(-t / 0.03)
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * _env(n, sr, 0.12)


def _snare(rng, sr):
    n = int(0.25 * sr)
    return 0.7 * _noise(rng, n, 0.3) * _env(n, sr, 0.06) + 0.4 * _tone(185, 0.25, sr, [1], 0.05)


def _hat(rng, sr, decay=0.025):
    n = int(0.15 * sr)
    return np.diff(_noise(rng, n + 1, 0.0)) * 0.5 * _env(n, sr, decay)


def _ride(rng, sr):
    n = int(0.6 * sr)
    t = np.arange(n) / sr
    metal = sum(np.sin(2 * np.pi * f * t) for f in (3127.0, 4711.0, 5903.0, 7219.0)) / 4
    return (0.5 * np.diff(_noise(rng, n + 1, 0.0)) + 0.6 * metal) * _env(n, sr, 0.25)


def _add(buf, event, t_sec, sr, gain=1.0):
    i = int(t_sec * sr)
    if i >= len(buf):
        return
    m = min(len(event), len(buf) - i)
    buf[i : i + m] += gain * event[:m]


def _beats(duration, bpm, rng):
    beat = 60.0 / bpm
    start = rng.uniform(0, beat)
    return start, beat, int((duration - start) / beat) + 1


SAW = [1 / k for k in range(1, 16)]
MELLOW = [1, 0.3, 0.1]


def _four_on_the_floor(rng, n, sr, root):
    dur = n / sr
    x = np.zeros(n)
    start, beat, count = _beats(dur, rng.uniform(118, 132), rng)
    for b in range(count):
        t = start + b * beat
        _add(x, _kick(rng, sr), t, sr)
        _add(x, _hat(rng, sr), t + beat / 2, sr, 0.5)
        _add(x, _tone(root / 2, beat / 2, sr, MELLOW, 0.15), t + beat / 2, sr, 0.5)
    return x


def _swing(rng, n, sr, root):
    dur = n / sr
    x = np.zeros(n)
    start, beat, count = _beats(dur, rng.uniform(140, 190), rng)
    walk = root / 2 * 2 ** (np.array([0, 3, 5, 7, 10, 12, 7, 5]) / 12)
    chord = root * 2 ** (np.array([0, 4, 7, 10, 14]) / 12)  # ninth chord
    for b in range(count):
        t = start + b * beat
        _add(x, _ride(rng, sr), t, sr, 0.35)
        if b % 2:  # swung eighth: the triplet's last third
            _add(x, _ride(rng, sr), t + 2 * beat / 3, sr, 0.2)
        _add(x, _tone(walk[rng.integers(len(walk))], beat, sr, [1, 0.5, 0.2], 0.3), t, sr, 0.8)
        if b % 4 == 1:
            for f in chord:
                _add(x, _tone(f, 1.5 * beat, sr, [1, 0.4, 0.3, 0.2, 0.1], 0.4), t + beat / 3, sr, 0.15)
    return x


def _ambient_drone(rng, n, sr, root):
    t = np.arange(n) / sr
    x = np.zeros(n)
    for ratio in (1, 1.5, 2, 2 ** (4 / 12) * 2):
        f = root / 2 * ratio
        for detune in (0.997, 1.003):
            x += sum(a * np.sin(2 * np.pi * f * detune * (k + 1) * t) for k, a in enumerate(SAW[:8])) * 0.15
    lfo = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 6.3))
    return x * lfo + 0.3 * _noise(rng, n, 1.0)


def _breakbeat(rng, n, sr, root):
    dur = n / sr
    x = np.zeros(n)
    start, beat, count = _beats(dur, rng.uniform(82, 98), rng)
    # 16th-note grid of one bar: kick and snare in a syncopated hip-hop pattern.
    kick = {0, 3, 10}
    snare = {4, 12}
    for b in range(0, count, 4):
        bar = start + b * beat
        for s in range(16):
            t = bar + s * beat / 4
            if s in kick:
                _add(x, _kick(rng, sr), t, sr)
                _add(x, _tone(root / 4, beat / 2, sr, MELLOW, 0.2), t, sr, 0.6)
            if s in snare:
                _add(x, _snare(rng, sr), t, sr, 0.8)
            if s % 2 == 0:
                _add(x, _hat(rng, sr, 0.015), t, sr, 0.25)
    return x


def _distorted_rock(rng, n, sr, root):
    dur = n / sr
    x = np.zeros(n)
    start, beat, count = _beats(dur, rng.uniform(150, 180), rng)
    riff = root / 2 * 2 ** (np.array([0, 0, 3, 5]) / 12)
    guitar = np.zeros(n)
    for b in range(count):
        t = start + b * beat
        f = riff[b % len(riff)]
        power = _tone(f, beat, sr, SAW) + _tone(f * 1.5, beat, sr, SAW)
        _add(guitar, power, t, sr)
        _add(x, _kick(rng, sr) if b % 2 == 0 else _snare(rng, sr), t, sr, 0.7)
        _add(x, _hat(rng, sr, 0.05), t + beat / 2, sr, 0.4)
    return x + 0.5 * np.tanh(4.0 * guitar / (np.abs(guitar).max() + 1e-9))


RENDERERS = dict(zip(CLASSES, (_four_on_the_floor, _swing, _ambient_drone, _breakbeat, _distorted_rock)))


def render_track(label: int, seed: int, seconds: float) -> np.ndarray:
    """Render one track of class `label` at RENDER_RATE; deterministic in (label, seed, seconds)."""
    rng = np.random.default_rng([GENERATOR_VERSION, label, seed])
    sr = RENDER_RATE
    n = int(seconds * sr)
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)  # random key
    x = RENDERERS[CLASSES[label]](rng, n, sr, root)
    x = x / (np.sqrt(np.mean(x**2)) + 1e-9)
    # Background noise of random colour and level, shared by all classes.
    x = x + 10 ** (rng.uniform(-30, -12) / 20) * _noise(rng, n, rng.uniform(0, 2))
    gain = 10 ** (rng.uniform(-12, -1) / 20)
    return (gain * 0.95 * x / np.abs(x).max()).astype(np.float32)


def render_mix(labels: list[int], seed: int, seconds: float, levels_db: list[float]) -> np.ndarray:
    """Tracks of the classes `labels` (each as render_track renders it), summed at `levels_db` relative to
    their own loudness, kept below full scale."""
    x = sum(10 ** (db / 20) * render_track(label, seed, seconds) for label, db in zip(labels, levels_db))
    return (x / max(1.0, np.abs(x).max() / 0.95)).astype(np.float32)


def generate(root: Path, tracks_per_class: int, seconds: tuple[float, float], seed: int,
             multilabel: bool = False) -> Path:
    """Write the dataset under `root` (once; reused when the same settings ask again).

    Returns the folder holding `<class>/<file>` (and, `multilabel`, the labels.csv of the mixes:
    see the module docstring). Written to a temporary folder and renamed at the end, so an
    interrupted generation is never mistaken for a dataset.
    """
    settings = {
        "version": GENERATOR_VERSION,
        "tracks_per_class": int(tracks_per_class),
        "seconds": [float(s) for s in seconds],
        "seed": int(seed),
        **({"multilabel": True} if multilabel else {}),  # the single-label settings as they always were
    }
    name = f"v{GENERATOR_VERSION}-seed{seed}-{tracks_per_class}x{seconds[0]:g}-{seconds[1]:g}s" + ("-mix" * multilabel)
    target = Path(root) / name
    if (target / "settings.json").exists():
        return target
    Path(root).mkdir(parents=True, exist_ok=True)
    # Parallel runs of a fresh sweep (the pool launcher's workers, DDP ranks) generate once: the others
    # wait for it here instead of each writing the whole dataset beside it.
    with FileLock(str(target) + ".lock"):
        if not (target / "settings.json").exists():
            _write(target, settings, tracks_per_class, seconds, seed, multilabel)
    return target


def _write(target: Path, settings: dict, tracks_per_class: int, seconds: tuple[float, float], seed: int,
           multilabel: bool) -> None:
    tmp = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(seed)
    jobs = [(c, i) for c in range(len(CLASSES)) for i in range(tracks_per_class)]
    manifest = []
    for c, i in tqdm(jobs, desc="Generating synth dataset", unit="file"):
        track_seed = int(rng.integers(2**31))
        length = rng.uniform(*seconds)
        labels = [c]
        if multilabel and i % 2:  # drawn only for the mixes: the single-label dataset's draws stay as they were
            labels.append(int((c + rng.integers(1, len(CLASSES))) % len(CLASSES)))
            audio = render_mix(labels, track_seed, length, [0.0, -rng.uniform(0, 6)])
        else:
            audio = render_track(c, track_seed, length)
        ext, fmt, subtype = FORMATS[i % len(FORMATS)]
        rate = FILE_RATES[(i // len(FORMATS)) % len(FILE_RATES)]
        audio = _resample(audio, rate)
        if i % 4 == 3:  # some stereo files, to exercise the downmix
            audio = np.stack([audio, 0.8 * audio], axis=1)
        path = tmp / CLASSES[c] / f"{'+'.join(CLASSES[k] for k in labels)}.{i:04d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), audio, rate, format=fmt, subtype=subtype)
        manifest.append((path.relative_to(tmp).as_posix(), ";".join(CLASSES[k] for k in labels)))
    if multilabel:
        write_labels(tmp / LABELS_MANIFEST, manifest)
    (tmp / "settings.json").write_text(json.dumps(settings, indent=2))
    try:
        tmp.rename(target)
    except OSError:  # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


def write_labels(path: Path, rows: list[tuple[str, str]]) -> None:
    """The manifest of a multi-label dataset: path (relative to it) and its labels, `;`-separated."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "labels"])
        writer.writerows(rows)


def _resample(audio: np.ndarray, rate: int) -> np.ndarray:
    if rate == RENDER_RATE:
        return audio
    import soxr

    return soxr.resample(audio, RENDER_RATE, rate, quality="HQ").astype(np.float32)
