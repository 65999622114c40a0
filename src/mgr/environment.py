"""The software and hardware behind a run, written into its directory (environment.json)
and into its W&B config, so the environment of a published number can be rebuilt."""

from __future__ import annotations

import functools
import json
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

# Distribution names as pip knows them: what decides a number (torch, the frontends, the
# training loop, the metrics) and what reads the data and configs.
PACKAGES = ("torch", "torchaudio", "nnAudio", "pytorch-lightning", "torchmetrics", "hydra-core", "omegaconf",
            "wandb", "numpy", "scipy", "scikit-learn", "soundfile", "soxr", "librosa")


@functools.lru_cache(maxsize=1)  # the same for every job of a multirun in this process
def environment() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mgr": mgr_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "command": " ".join(sys.argv),
    }


def launched_rank() -> int:
    """This process's rank as its launcher set it (torchrun's RANK, srun's SLURM_PROCID, ...), read from the
    variables in the order Lightning's rank_zero_only reads them, without importing Lightning; 0 alone."""
    import os

    return int(next((os.environ[k] for k in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
                     if k in os.environ), "0"))


def write_environment(run_dir: str | Path) -> None:
    """environment.json in the run directory, by one process: the ranks a cluster starts share it."""
    if launched_rank() != 0:
        return
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    Path(run_dir, "environment.json").write_text(json.dumps(environment(), indent=2))


def mgr_version() -> dict:
    """mgr's version and git commit. setuptools-scm writes both into the version at install
    time (0.1.devN+g<commit>, .d<date> when the tree had changes); a source checkout (an
    editable install) asks git, since its files may have moved on since the install."""
    version = _version("mgr")
    found = re.search(r"\+g([0-9a-f]{7,40})", version or "")
    commit, dirty = (found.group(1) if found else None), bool(re.search(r"\.d\d{8}", version or ""))
    source = Path(__file__).resolve().parent
    try:
        top = _git(source, "rev-parse", "--show-toplevel")
        if top and Path(top, "src", "mgr").resolve() == source:
            commit = _git(source, "rev-parse", "HEAD")
            dirty = bool(_git(source, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        pass  # no git here: keep what the install recorded
    return {"version": version, "commit": commit, "uncommitted_changes": dirty}


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    return done.stdout.strip() if done.returncode == 0 else ""


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
