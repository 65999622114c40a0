"""Training throughput (chunks/s) of each model with its default config and a
feature, forward + backward + optimizer step, on random chunks (3 s at 22.05 kHz unless told).

    python benchmarks/train_throughput.py [--device cuda] [--features mel stft mfcc] [--precision bf16]
                                          [--sample-rate 22050] [--chunk-seconds 3.0]
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from hydra import compose, initialize_config_module

from mgr.models import GenreClassifier

ZOO = ["cnn", "belov_cnn", "cnn5", "cnn_lstm_parallel", "crnn", "crnn_artist", "fcn", "short_chunk_cnn",
       "short_chunk_resnet", "musicnn"]  # the conf/model configs trained by gradient steps


def build(model: str, feature: str, backend: str, sample_rate: int, chunk_seconds: float):
    with initialize_config_module("mgr.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model}", f"feature={feature}", f"feature.backend={backend}",
                                          f"data.sample_rate={sample_rate}", f"data.chunk_seconds={chunk_seconds}"])
    return GenreClassifier.from_config(cfg, [str(i) for i in range(10)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=ZOO)
    parser.add_argument("--features", nargs="+", default=["mel"])
    parser.add_argument("--backends", nargs="+", default=["torch"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--precision", choices=["32", "bf16"], default="32")
    parser.add_argument("--sample-rate", type=int, default=22050)
    parser.add_argument("--chunk-seconds", type=float, default=3.0)
    args = parser.parse_args()
    print("| model | feature | backend | params | device | precision | batch | train chunks/s | frontend share |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, feature, backend in itertools.product(args.models, args.features, args.backends):
        model = build(name, feature, backend, args.sample_rate, args.chunk_seconds).to(args.device).train()
        optimizer = torch.optim.Adam(model.parameters())
        wave = torch.randn(args.batch_size, model.chunk_samples, device=args.device)
        target = torch.randint(0, 10, (args.batch_size,), device=args.device)
        autocast = torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16,
                                  enabled=args.precision == "bf16")

        def step():
            with autocast:
                loss = torch.nn.functional.cross_entropy(model(wave), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        def frontend():
            with torch.no_grad():
                model.encoder.frontend(wave)

        seconds = {}
        for label, fn in (("step", step), ("frontend", frontend)):
            fn()  # warm-up
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.steps):
                fn()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds[label] = (time.perf_counter() - start) / args.steps
        params = sum(p.numel() for p in model.parameters())
        print(f"| {name} | {feature} | {backend} | {params / 1e3:.0f} K | {args.device} | {args.precision} | {args.batch_size} "
              f"| {args.batch_size / seconds['step']:.1f} | {seconds['frontend'] / seconds['step']:.0%} |")


if __name__ == "__main__":
    main()
