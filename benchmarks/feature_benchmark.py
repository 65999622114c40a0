"""Feature throughput: mgr's frontends on batches of 30 s clips versus librosa
computing the same feature clip by clip on the CPU, as the seed reports did.

    python benchmarks/feature_benchmark.py [--device cuda] [--clips 16] [--features mel cqt ...] [--repeats 10]

Prints a Markdown table: clips/s of each frontend and backend, librosa's
clips/s, and the speed-up.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mgr.features import build_frontend

SR = 22050
CLIP_SECONDS = 30


def librosa_reference(name: str, source: str | None):
    import librosa

    db = lambda p: librosa.power_to_db(p, top_db=80.0)  # noqa: E731
    return {
        "stft": lambda x: db(np.abs(librosa.stft(x, n_fft=2048, hop_length=512)) ** 2),
        "mel": lambda x: db(librosa.feature.melspectrogram(y=x, sr=SR)),
        "mfcc": lambda x: librosa.feature.mfcc(y=x, sr=SR, n_mfcc=20),
        "cqt": lambda x: librosa.amplitude_to_db(np.abs(librosa.cqt(x, sr=SR)), top_db=80.0),
        "vqt": lambda x: librosa.amplitude_to_db(np.abs(librosa.vqt(x, sr=SR)), top_db=80.0),
        "chroma": lambda x: (librosa.feature.chroma_cqt(y=x, sr=SR, tuning=0.0) if source == "cqt"
                             else librosa.feature.chroma_stft(y=x, sr=SR, tuning=0.0)),
        "tempogram": lambda x: librosa.feature.tempogram(y=x, sr=SR),
    }.get(name)


def clips_per_second(fn, n_clips: int, repeats: int = 10) -> float:
    """Throughput of the fastest of `repeats` calls (after a warm-up): the minimum is the
    figure least disturbed by other processes (as timeit advises)."""
    fn()  # warm-up (kernels, caches, numba)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n_clips / best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clips", type=int, default=16, help="clips per batch")
    parser.add_argument("--features", nargs="+",
                        default=["stft", "mel", "mfcc", "cqt", "vqt", "gammatone", "chroma", "chroma:cqt", "tempogram"])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per figure, after a warm-up; the fastest counts")
    parser.add_argument("--no-librosa", action="store_true")
    parser.add_argument("--floor", action="store_true",
                        help="also time the two steps no STFT can skip: the FFT of every frame, and writing a fresh output")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    clips = (0.1 * rng.standard_normal((args.clips, SR * CLIP_SECONDS))).astype(np.float32)
    batch = torch.from_numpy(clips).to(args.device)
    print(f"torch threads: {torch.get_num_threads()}, device: {args.device}, batch: {args.clips} x {CLIP_SECONDS} s at {SR} Hz")
    print("| feature | backend | device | mgr clips/s | librosa clips/s | speed-up |")
    print("|---|---|---|---|---|---|")
    for spec in args.features:
        name, _, source = spec.partition(":")
        reference = None if args.no_librosa else librosa_reference(name, source or None)
        lib_rate = clips_per_second(lambda: [reference(c) for c in clips[:4]], 4, args.repeats) if reference else None
        backends = [None] if name == "gammatone" else ["nnaudio", "torch"]
        for backend in backends:
            settings = {"name": name, "sample_rate": SR, **({"backend": backend} if backend else {}),
                        **({"source": source} if source else {})}
            frontend = build_frontend(settings).to(args.device)

            def run():
                with torch.no_grad():
                    frontend(batch)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()

            rate = clips_per_second(run, args.clips, args.repeats)
            lib = f"{lib_rate:.1f}" if lib_rate else "n/a"
            ratio = f"{rate / lib_rate:.1f}x" if lib_rate else "n/a"
            print(f"| {spec} | {backend or 'nnaudio'} | {args.device} | {rate:.1f} | {lib} | {ratio} |", flush=True)
    if args.floor:
        print_floor(batch)


def print_floor(batch: torch.Tensor, n_fft: int = 2048, hop: int = 512) -> None:
    """The lower bound of any STFT frontend here: rfft of all frames (in L2-sized blocks, as
    mgr does), and the first write of a fresh [clips, n_fft // 2 + 1, frames] output (the
    kernel zeroes every new page)."""
    frames = batch.unfold(-1, n_fft, hop)
    n_clips, n_frames = frames.shape[:2]

    def fft_only():
        for clip in frames:
            for s in range(0, n_frames, 256):
                torch.fft.rfft(clip[s : s + 256])

    def fresh_output():
        torch.empty(n_clips, n_fft // 2 + 1, n_frames, device=batch.device).fill_(1.0)

    print(f"floor: rfft of the frames alone {clips_per_second(fft_only, n_clips):.1f} clips/s; "
          f"writing a fresh STFT-sized output alone {clips_per_second(fresh_output, n_clips):.1f} clips/s")


if __name__ == "__main__":
    main()
