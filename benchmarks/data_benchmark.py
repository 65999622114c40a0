"""Data pipeline throughput on 30 s clips:

(a) waveform cache build, in audio-hours decoded per minute, per number of workers;
(b) training loader, in 3 s chunks/s (batch 32, 22.05 kHz): random chunks read from
    the cache versus the same chunks decoded from the audio files on the fly;
(c) with --on-device: today's loader (DataLoader over RandomChunks, as the data module's, at
    0 and 1 worker) against data.on_device's sampler (mgr.data.device_chunks: batches gathered
    by index from the cache held in memory, in this process), the same epoch of the same cache
    (int16, the default) at the same batch size;
(d) with --end-to-end: `python -m mgr.train` on the synth data, data.on_device=false against
    auto (the default), wall time of each whole run.

    python benchmarks/data_benchmark.py [--clips 48] [--format mp3] [--workers 0 2] [--on-device] [--end-to-end] [--repeats 5]

The clips are generated (noise + tones, 44.1 kHz stereo, like FMA's MP3s), so
no dataset is needed; the work per file is that of a real 30 s clip.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from mgr.data.audio import load_audio
from mgr.data.cache import WaveformCache

# torch is imported inside the functions: the cache's decoding workers (spawned)
# import this script again and should start as fast as under mgr.train.

SOURCE_RATE, RATE, CLIP_SECONDS, CHUNK_SECONDS, BATCH = 44100, 22050, 30.0, 3.0, 32


class DecodeOnTheFly:
    """What a loader without a cache does: decode and resample the whole file for every chunk."""

    def __init__(self, files: list[str], chunk: int):
        self.files, self.chunk = files, chunk

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        import torch

        from mgr.data.chunking import crop

        wave = load_audio(self.files[i], RATE)
        start = int(torch.randint(0, max(len(wave) - self.chunk, 0) + 1, ()).item())
        return crop(wave, start, self.chunk), 0, i


def make_clips(folder: Path, n: int, fmt: str) -> list[str]:
    rng = np.random.default_rng(0)
    t = np.arange(int(CLIP_SECONDS * SOURCE_RATE)) / SOURCE_RATE
    files = []
    for i in range(n):
        mono = 0.2 * np.sin(2 * np.pi * rng.uniform(80, 800) * t) + 0.05 * rng.standard_normal(len(t))
        stereo = np.stack([mono, 0.8 * mono], axis=1).astype(np.float32)
        path = folder / f"clip{i:03d}.{fmt}"
        sf.write(str(path), stereo, SOURCE_RATE, format=fmt.upper())
        files.append(str(path))
    return files


def loader_rate(dataset, workers: int, batches: int) -> tuple[float, float]:
    """Chunks/s of a shuffled DataLoader over `dataset` (batches_rate's two passes, on the CPU)."""
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    first, second = batches_rate(loader, batches, torch.device("cpu"))
    return first, second


def batches_rate(loader, batches: int, device, passes: int = 2) -> list[float]:
    """Chunks/s of `loader` (one of the data module's: a DataLoader or DeviceChunks) over `batches`
    batches in each of `passes` passes, each batch moved to `device` as Lightning moves it: the first
    pass after the first batch (worker start-up, or the samples' placement and checksums, excluded),
    then the others."""
    import torch
    from pytorch_lightning.utilities import move_data_to_device

    it = iter(loader)
    next(it)
    rates = []
    for _ in range(passes):
        start, n = time.perf_counter(), 0
        for _ in range(batches):
            batch = next(it, None)
            if batch is None:
                it = iter(loader)
                batch = next(it)
            n += len(move_data_to_device(batch, device)[1])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        rates.append(n / (time.perf_counter() - start))
    return rates


def on_device_section(cache: WaveformCache, files: list[str], workers: list[int], batches: int, device: str,
                      repeats: int) -> None:
    """(c): today's loader against the device sampler, over the same RandomChunks epoch, batches delivered to
    `device` (on a GPU: today's with pinned memory, the sampler's from the GPU's memory). Each loader is
    timed over a first pass and then `repeats` more; the table gives the first and the median of the rest
    (one pass of a fast loader lasts milliseconds on the CPU, so a single one is noise)."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from mgr.data.datasets import RandomChunks
    from mgr.data.device_chunks import DeviceChunks, ResidentSamples

    chunk = int(CHUNK_SECONDS * RATE)
    epoch = RandomChunks(cache, list(range(len(files))), [0] * len(files), chunk, chunks_per_track=64, stored=True)
    home = torch.device(device)
    print(f"\n(c) {len(epoch)} chunks of {CHUNK_SECONDS:g} s an epoch, batch {BATCH}, {batches} batches a pass, "
          f"{cache.dtype} cache, on {home}, torch threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}\n")
    print(f"| loader | workers | chunks/s, first pass | chunks/s, median of {repeats} more |\n|---|---|---|---|")

    def timed(loader) -> tuple[float, float]:
        rates = batches_rate(loader, batches, home, passes=1 + repeats)
        return rates[0], float(np.median(rates[1:]))

    rates = {}
    for w in workers:
        loader = DataLoader(epoch, batch_size=BATCH, sampler=RandomSampler(epoch), num_workers=w,
                            persistent_workers=w > 0, pin_memory=home.type == "cuda")
        rates[w] = timed(loader)
        print(f"| today's (DataLoader over RandomChunks) | {w} | {rates[w][0]:.0f} | {rates[w][1]:.0f} |")
    ours = timed(DeviceChunks(ResidentSamples(cache, home), epoch, BATCH, True, cache))
    print(f"| data.on_device (DeviceChunks) | none | {ours[0]:.0f} | {ours[1]:.0f} |")
    for w, (first, later) in rates.items():
        print(f"| ratio to today's at {w} workers | | {ours[0] / first:.1f}x | {ours[1] / later:.1f}x |")


def end_to_end_section(folder: Path, overrides: list[str], repeats: int) -> None:
    """(d): a whole mgr.train run with today's loader, then with the default (data.on_device=auto), the
    pair run `repeats` times in turn so that a change of the machine's load falls on both."""
    print(f"\n(d) python -m mgr.train {' '.join(overrides)} (each run in a fresh interpreter, the synth data and "
          "its cache made by a first run not timed)\n")
    paths = [f"paths.data_dir={folder / 'data'}", f"paths.log_dir={folder / 'logs'}"]

    def train(setting: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mgr.train", *overrides, f"data.on_device={setting}", *paths],
                       check=True, capture_output=True, cwd=folder)
        return time.perf_counter() - start

    train("false")  # generates and decodes the data
    print("| pair | data.on_device=false, wall s | auto, wall s | ratio auto / false |\n|---|---|---|---|")
    ratios = []
    for i in range(repeats):
        today, ours = train("false"), train("auto")
        ratios.append(ours / today)
        print(f"| {i + 1} | {today:.1f} | {ours:.1f} | {ratios[-1]:.3f} |")
    print(f"| median | | | {np.median(ratios):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--format", default="mp3", choices=["mp3", "wav", "flac"])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--on-device", action="store_true", help="(c): today's loader against data.on_device's")
    parser.add_argument("--on-device-workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--device", default="cpu", help="(c)'s device: cpu, or cuda to measure a GPU's")
    parser.add_argument("--repeats", type=int, default=5,
                        help="(c): timed passes after the first, of which the median is given; (d): pairs of runs")
    parser.add_argument("--skip-decode", action="store_true", help="leave out (b)'s decoding on the fly")
    parser.add_argument("--end-to-end", nargs="*", metavar="OVERRIDE",
                        help="(d): mgr.train with these overrides (none: data=synth trainer.max_epochs=2), "
                             "data.on_device=false against auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "clips").mkdir()
        files = make_clips(tmp / "clips", args.clips, args.format)
        hours = args.clips * CLIP_SECONDS / 3600
        print(f"{args.clips} clips of {CLIP_SECONDS:g} s, {args.format}, {SOURCE_RATE} Hz stereo -> {RATE} Hz mono\n")
        print("| cache build workers | wall s | files/s | audio-hours per minute |\n|---|---|---|---|")
        cache = None
        for w in args.workers:
            start = time.perf_counter()
            cache = WaveformCache.build(files, RATE, tmp / f"cache{w}", "bench", num_workers=w)
            wall = time.perf_counter() - start
            print(f"| {w} | {wall:.1f} | {args.clips / wall:.1f} | {hours / (wall / 60):.2f} |")
        from mgr.data.datasets import RandomChunks

        chunk = int(CHUNK_SECONDS * RATE)
        # Many chunks per track per epoch, so an epoch is long enough to time.
        cached = RandomChunks(cache, list(range(len(files))), [0] * len(files), chunk, chunks_per_track=64)
        print("\n| loader | loader workers | chunks/s, first pass | chunks/s, steady |\n|---|---|---|---|")
        for w in args.workers:
            cached_rates = loader_rate(cached, w, args.batches)
            print(f"| waveform cache | {w} | {cached_rates[0]:.0f} | {cached_rates[1]:.0f} |")
            if args.skip_decode:
                continue
            decode_rates = loader_rate(DecodeOnTheFly(files * 64, chunk), w, max(2, args.batches // 4))
            print(f"| decode on the fly | {w} | {decode_rates[0]:.1f} | {decode_rates[1]:.1f} |")
            print(f"| speed-up | {w} | {cached_rates[0] / decode_rates[0]:.0f}x | {cached_rates[1] / decode_rates[1]:.0f}x |")
        if args.on_device:
            on_device_section(cache, files, args.on_device_workers, args.batches, args.device, args.repeats)
        if args.end_to_end is not None:
            (tmp / "run").mkdir()
            end_to_end_section(tmp / "run", args.end_to_end or ["data=synth", "trainer.max_epochs=2"], args.repeats)


if __name__ == "__main__":
    main()
