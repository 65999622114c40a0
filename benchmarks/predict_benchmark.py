"""Throughput of mgr.predict in audio-minutes per second on a folder of 30 s files.

    python benchmarks/predict_benchmark.py [--ckpt best.ckpt] [--files 24] [--device cuda] [--overlap 0.5 0.0]

Runs `mgr.predict.predict_files`, the loop behind `python -m mgr.predict`
(decoding in background threads, chunking, batched inference, per-file
aggregation), after one warm-up file. Without --ckpt it uses the default model
and feature of `mgr.train` (CRNN, log-mel, 22.05 kHz, 3 s chunks) with untrained
weights (--model cnn for the CNN): the speed does not depend on the weights. The folder holds synth tracks
as the files users have: WAV 44.1 kHz stereo, MP3 44.1 kHz stereo, FLAC 48 kHz
mono, OGG/Vorbis 22.05 kHz mono, in turn. "decode only" is load_audio on every
file (decode + downmix + resample), the floor that no model can beat.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from mgr.data import synth_audio
from mgr.data.audio import load_audio
from mgr.predict import find_audio_files, predict_files

FORMATS = [("wav", "WAV", "PCM_16", 44100, 2), ("mp3", "MP3", None, 44100, 2),
           ("flac", "FLAC", "PCM_16", 48000, 1), ("ogg", "OGG", "VORBIS", 22050, 1)]


def write_folder(folder: Path, n_files: int, seconds: float) -> None:
    for i in range(n_files):
        ext, fmt, subtype, rate, channels = FORMATS[i % len(FORMATS)]
        wave = soxr.resample(synth_audio.render_track(i % 5, i, seconds), synth_audio.RENDER_RATE, rate).astype(np.float32)
        if channels == 2:
            wave = np.stack([wave, 0.8 * wave], axis=1)
        sf.write(str(folder / f"{i:03d}.{ext}"), wave, rate, format=fmt, subtype=subtype)


def default_model(name: str):
    from hydra import compose, initialize_config_module

    from mgr.models import GenreClassifier

    with initialize_config_module("mgr.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}"])
    return GenreClassifier.from_config(cfg, sorted(synth_audio.CLASSES))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt", help="a checkpoint; default: --model with mgr.train's defaults, untrained")
    parser.add_argument("--model", default="crnn", help="model config to build when no --ckpt is given")
    parser.add_argument("--folder", help="audio to label; default: --files generated files of --seconds")
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--overlap", type=float, nargs="+", default=[0.5, 0.0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--decode-threads", type=int, default=2)
    args = parser.parse_args()

    if args.ckpt:
        from mgr.models import load_model

        model = load_model(args.ckpt)
    else:
        model = default_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or tmp)
        if not args.folder:
            write_folder(folder, args.files, args.seconds)
        paths = find_audio_files([str(folder)])
        rate = model.hparams.sample_rate
        start = time.perf_counter()
        minutes = sum(len(load_audio(p, rate)) for p in paths) / rate / 60
        decode_s = time.perf_counter() - start
        list(predict_files(model, paths[:1], device=args.device))  # warm-up: kernels, caches, allocator
        h = model.hparams
        print(f"{len(paths)} files, {minutes:.1f} audio-minutes; {model.architecture} {h.feature['name']} at {rate} Hz, "
              f"{h.chunk_seconds:g} s chunks; torch threads {torch.get_num_threads()}\n")
        print("| model | feature | device | overlap | batch | decode only (audio-min/s) | predict (audio-min/s) | chunks/s |")
        print("|---|---|---|---|---|---|---|---|")
        for overlap in args.overlap:
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            results = list(predict_files(model, paths, overlap, args.batch_size, args.device, args.decode_threads))
            seconds = time.perf_counter() - start
            assert all(r.error is None for r in results)
            chunks = sum(r.chunks for r in results)
            print(f"| {model.architecture} | {h.feature['name']} | {args.device} | {overlap:g} | {args.batch_size} "
                  f"| {minutes / decode_s:.1f} | {minutes / seconds:.1f} | {chunks / seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
