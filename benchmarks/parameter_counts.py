"""Parameters of every model config (conf/model) on the default feature and data (log-mel,
128 bins, 3 s at 22.05 kHz), for 10 classes, counted over all of the model's parameters.

    python benchmarks/parameter_counts.py
"""

from __future__ import annotations

from importlib.resources import files

from hydra import compose, initialize_config_module

from mgr.models import GenreClassifier

CONFIGS = sorted(p.name[:-5] for p in files("mgr.conf").joinpath("model").iterdir() if p.name.endswith(".yaml"))

if __name__ == "__main__":
    print("| model config | parameters |\n|---|---|")
    with initialize_config_module("mgr.conf", version_base="1.3"):
        for name in CONFIGS:
            model = GenreClassifier.from_config(compose("train", overrides=[f"model={name}"]), [str(i) for i in range(10)])
            print(f"| {name} | {sum(p.numel() for p in model.parameters()):,} |")
