"""The checkpoints a run resumes from, by name: checkpoints/last*.ckpt (`ckpt_path=last`; mgr.entry's
resume line offers it where there is one), and hpc_ckpt_<n>.ckpt in the run directory, as Lightning
names the checkpoints a SLURM job saves before it is requeued (mgr.utils.preemption writes them under
submitit). Read by mgr.run_directory; apart, so that it, which Hydra loads at start-up, imports no Lightning."""

from __future__ import annotations

import re
from pathlib import Path


def last_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints/last*.ckpt, oldest first: `ckpt_path=last` resumes from the newest."""
    return sorted((run_dir / "checkpoints").glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)


def hpc_checkpoints(run_dir: Path) -> dict[int, Path]:
    """The run's hpc_ckpt_<n>.ckpt by their number n, as Lightning numbers the checkpoints it saves
    before SLURM requeues a job, and resumes from the highest."""
    return {int(m[1]): p for p in run_dir.glob("hpc_ckpt_*.ckpt") if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", p.name))}


def next_hpc_checkpoint(run_dir: Path) -> Path:
    """Where the next checkpoint before a requeue goes: numbered after the run's others, as Lightning does."""
    return run_dir / f"hpc_ckpt_{max(hpc_checkpoints(run_dir), default=0) + 1}.ckpt"
