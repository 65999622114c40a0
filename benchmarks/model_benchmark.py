"""Every model of the zoo on equal terms: parameters, CPU (or GPU) training
throughput on log-mel, and test accuracy on synth after a fixed small budget.

    python benchmarks/model_benchmark.py [--epochs 3] [--models belov_cnn fcn ...] [--device cpu] [--throughput-only]

Throughput: forward + backward + Adam step on random 3 s chunks at 22.05 kHz,
batch 32, default model and mel settings (n_fft 2048, hop 512, 128 mels).
Accuracy: `python -m mgr.train model=<name> trainer.max_epochs=<epochs>` on the
default synth dataset (160 training tracks, 2 random 3 s chunks each per
epoch, 20 test tracks, chance 0.2), without early stopping, best checkpoint
by val/loss. Prints one Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from mgr.models import GenreClassifier

ZOO = ["cnn", "belov_cnn", "cnn5", "cnn_lstm_parallel", "crnn", "crnn_artist", "fcn", "short_chunk_cnn",
       "short_chunk_resnet", "musicnn", "stats_linear_svm"]
# FCN's time pools need 1280 frames (29.7 s); on 3 s chunks (130 frames) its time pools are cut to 2.
EXTRA = {"fcn": ["model.pools=[[2,2],[2,2],[2,2],[3,2],[4,2]]"]}


def build(name: str):
    with initialize_config_module("mgr.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}", "feature=mel", *EXTRA.get(name, [])])
    return GenreClassifier.from_config(cfg, [str(i) for i in range(5)])  # synth's 22.05 kHz, 3 s chunks


def throughput(name: str, device: str, batch: int, steps: int) -> tuple[int, float | None]:
    model = build(name).to(device).train()
    params = sum(p.numel() for p in model.parameters())
    wave = torch.randn(batch, model.chunk_samples, device=device)
    if name == "stats_linear_svm":  # no gradient training: time the statistics of one batch instead
        start = time.perf_counter()
        for _ in range(steps):
            with torch.no_grad():
                model.embed(wave)
        return params, batch * steps / (time.perf_counter() - start)
    target = torch.randint(0, 5, (batch,), device=device)
    optimizer = torch.optim.Adam(model.parameters())

    def step():
        loss = torch.nn.functional.cross_entropy(model(wave), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return params, batch * steps / (time.perf_counter() - start)


def train_and_test(name: str, epochs: int, data_dir: Path) -> tuple[dict, float]:
    with tempfile.TemporaryDirectory() as cwd:
        command = [sys.executable, "-m", "mgr.train", f"model={name}", f"trainer.max_epochs={epochs}",
                   "~callbacks.early_stopping", "trainer.enable_progress_bar=false", f"paths.data_dir={data_dir}",
                   *EXTRA.get(name, [])]
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
        (metrics_file,) = Path(cwd).glob("logs/train/runs/*/metrics.json")
        return json.loads(metrics_file.read_text()), wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=ZOO)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--data-dir", default="data", help="where synth is generated once and cached")
    parser.add_argument("--throughput-only", action="store_true", help="skip the training runs")
    args = parser.parse_args()
    data_dir = Path(args.data_dir).resolve()
    print(f"| model | params | train chunks/s ({args.device}, mel) | train + test wall | test acc (chunk) "
          f"| test acc (track) | test macro-F1 (track) |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        params, speed = throughput(name, args.device, args.batch_size, args.steps)
        if args.throughput_only:
            print(f"| {name} | {params:,} | {speed:.1f} | | | | |", flush=True)
            continue
        metrics, wall = train_and_test(name, args.epochs, data_dir)
        print(f"| {name} | {params:,} | {speed:.1f} | {wall / 60:.1f} min | {metrics['test/acc']:.3f} "
              f"| {metrics['test/track_acc']:.3f} | {metrics['test/track_f1']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
