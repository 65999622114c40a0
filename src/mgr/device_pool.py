"""hydra/launcher=pool: a multirun's jobs side by side on one node, each on its own GPU, group of
GPUs or share of the CPU cores.

Two existing pieces do the work. Hydra's joblib launcher runs as many jobs at once as the pool has
slots, each in a worker process that it keeps for the next job. `DevicePool`, a Hydra callback, sizes
that launcher when the sweep starts and, in each job, gives the worker process a slot of the pool:
lock files in the sweep directory, one per slot, so the job processes share the pool without a
server. A worker keeps its slot for all its jobs (CUDA reads CUDA_VISIBLE_DEVICES once, when a
process first asks it for devices), and the OS frees the slot when the worker ends.

The slot is set early enough: before a job starts, its process only composes the config (which
imports torch through mgr's schemas, but asks CUDA nothing: tests/test_pool_launcher.py checks it),
so Lightning sees only the slot's GPUs. loky sets the workers' OMP/MKL thread variables when it
starts them, before torch loads its thread pools, and the slot sets torch's threads again.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict, read_write

from mgr import MGRError

log = logging.getLogger("mgr.device_pool")

POOL_FOLDER = ".device_pool"  # in the sweep directory: the slots, their lock files, the failed jobs


class JobFailed(MGRError):
    """One failed job of a multirun, as one line: its number, overrides and the error's last line."""


@dataclass(frozen=True)
class Slot:
    """A place for one job: the GPUs it sees (their CUDA_VISIBLE_DEVICES names; none: the CPU) and its
    share of the node's cores as threads."""

    index: int
    gpus: tuple[str, ...]
    threads: int

    def environment(self) -> dict[str, str]:
        threads = str(self.threads)
        return {"CUDA_VISIBLE_DEVICES": ",".join(self.gpus), "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}

    def __str__(self) -> str:
        where = f"GPU {','.join(self.gpus)}" if self.gpus else "the CPU"
        return f"slot {self.index}: {where}, {self.threads} thread{'s' if self.threads > 1 else ''}"


def device_slots(gpus: Sequence[str], jobs_per_gpu: int = 1, gpus_per_job: int = 1, cpu_jobs: int = 2,
                 cpus: int = 1) -> list[Slot]:
    """The pool: groups of `gpus_per_job` of the `gpus`, each shared by `jobs_per_gpu` jobs, or, without
    GPUs, `cpu_jobs` jobs on the CPU; every slot gets an equal share of the `cpus` cores as threads.
    Slots go round the groups first, so a sweep smaller than the pool spreads over all GPUs."""
    for name, value in (("jobs_per_gpu", jobs_per_gpu), ("gpus_per_job", gpus_per_job), ("cpu_jobs", cpu_jobs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise MGRError(f"hydra.callbacks.pool.{name}={value!r} must be a whole number >= 1.")
    if gpus_per_job > len(gpus) > 0:
        raise MGRError(f"hydra.callbacks.pool.gpus_per_job={gpus_per_job} is more than the {len(gpus)} GPUs "
                       f"({','.join(gpus)}) of this node; lower it or set CUDA_VISIBLE_DEVICES.")
    if gpus:
        groups = [tuple(gpus[i:i + gpus_per_job]) for i in range(0, len(gpus) - gpus_per_job + 1, gpus_per_job)]
        if idle := gpus[len(groups) * gpus_per_job:]:
            log.warning("GPU %s stays idle: %d GPUs do not divide into groups of gpus_per_job=%d.",
                        ",".join(idle), len(gpus), gpus_per_job)
        jobs_per_group = jobs_per_gpu
    else:
        groups, jobs_per_group = [()], cpu_jobs
    size = len(groups) * jobs_per_group
    threads = max(1, cpus // size)
    return [Slot(i, groups[i % len(groups)], threads) for i in range(size)]


def visible_gpus(count: int | None = None) -> list[str]:
    """The GPUs the pool shares out, named as CUDA_VISIBLE_DEVICES names them: the first `count` of those
    this process sees (all when `count` is None). A count above what torch sees names GPUs 0..count-1
    (where CUDA_VISIBLE_DEVICES is unset): a test fakes a node's GPUs with it."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [g.strip() for g in listed.split(",") if g.strip()] if listed is not None else None
    if count is None:
        import torch

        count = torch.cuda.device_count()  # NVML's count where it can: this process sets up no CUDA context
    if names is None:
        names = [str(i) for i in range(count)]
    if count > len(names):
        raise MGRError(f"hydra.callbacks.pool.gpus={count}, but CUDA_VISIBLE_DEVICES={listed} names "
                       f"{len(names)}; give at most {len(names)}.")
    return names[:count]


def node_cpus() -> int:
    """The cores this process may run on (a SLURM allocation or taskset gives fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def claim_slot(slots: Sequence[Slot], folder: Path, poll_s: float = 0.5):
    """A free slot of the pool in `folder`, waiting until one frees up, and the lock that holds it.
    The lock lasts as long as the process that took it: the OS frees it when that process ends."""
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for slot in slots:
            lock = FileLock(str(folder / f"slot-{slot.index}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            return slot, lock
        time.sleep(poll_s)


# The slot this process holds, per pool folder: its CUDA is set up for it, so it keeps it for its next jobs.
_held: dict[str, tuple[Slot, Any]] = {}


def slot_of_this_process(folder: Path) -> Slot:
    if str(folder) not in _held:
        pool = json.loads((folder / "slots.json").read_text())
        slots = [Slot(s["index"], tuple(s["gpus"]), s["threads"]) for s in pool]
        _held[str(folder)] = claim_slot(slots, folder)
    return _held[str(folder)][0]


def use_slot(slot: Slot) -> None:
    """Point this process at the slot's GPUs and threads, before the job's code sets up CUDA."""
    torch = sys.modules.get("torch")
    wanted = ",".join(slot.gpus)
    if torch is not None and torch.cuda.is_initialized() and os.environ.get("CUDA_VISIBLE_DEVICES") != wanted:
        raise RuntimeError(f"CUDA was set up in this job's process before the device pool gave it {slot}: "
                           "something the process ran before its first job asked CUDA for devices.")
    os.environ.update(slot.environment())
    import torch

    torch.set_num_threads(slot.threads)  # torch is loaded by now: its variables alone would come too late


def last_line(error: BaseException) -> str:
    """`module.Type: <the message's last line>`, as a traceback ends (the type kept with a message of
    several lines)."""
    kind = type(error).__qualname__
    if type(error).__module__ != "builtins":
        kind = f"{type(error).__module__}.{kind}"
    lines = str(error).strip().splitlines()
    return f"{kind}: {lines[-1]}" if lines else kind


def failed_jobs(folder: Path) -> list[str]:
    """The lines of the failed jobs of a sweep so far, in job order."""
    files = sorted((folder / "failed").glob("*.txt"), key=lambda p: int(p.stem))
    return [p.read_text().strip() for p in files]


def report_failed_jobs(folder: Path) -> None:
    if lines := failed_jobs(folder):
        title = f"mgr: {len(lines)} job{'s' if len(lines) > 1 else ''} of the sweep failed (tracebacks in their logs):"
        print(title, *(f"  {line}" for line in lines), sep="\n", file=sys.stderr)


class DevicePool(Callback):
    """Hydra callback of hydra/launcher=pool: in the main process it sizes the joblib launcher to the
    pool; in each job it gives the job's process a slot and turns a failure into one line."""

    def __init__(self, gpus: int | None = None, jobs_per_gpu: int = 1, gpus_per_job: int = 1, cpu_jobs: int = 2,
                 cpus: int | None = None) -> None:
        self.settings = dict(gpus=gpus, jobs_per_gpu=jobs_per_gpu, gpus_per_job=gpus_per_job, cpu_jobs=cpu_jobs,
                             cpus=cpus)

    def slots(self) -> list[Slot]:
        settings = dict(self.settings)
        return device_slots(visible_gpus(settings.pop("gpus")), cpus=settings.pop("cpus") or node_cpus(), **settings)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        slots = self.slots()
        folder = Path(str(config.hydra.sweep.dir)) / POOL_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "slots.json").write_text(json.dumps([asdict(s) for s in slots], indent=1))
        (folder / "swept_keys.json").write_text(json.dumps(swept_keys(config)))
        with read_write(config.hydra.launcher), open_dict(config.hydra.launcher):
            config.hydra.launcher.n_jobs = len(slots)  # one worker process per slot
            config.hydra.launcher.batch_size = 1  # a job to a worker as it frees up, never several at once
            config.hydra.launcher.inner_max_num_threads = slots[0].threads  # loky sets the workers' thread variables
        log.info("Device pool: %d jobs at once; %s", len(slots), "; ".join(map(str, slots)))
        # Hydra calls no callback after a sweeper raises for a failed job: the list comes when the process ends.
        atexit.register(report_failed_jobs, folder)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        slot = slot_of_this_process(Path(str(config.hydra.sweep.dir)) / POOL_FOLDER)
        use_slot(slot)
        log.info("Device pool %s", slot)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN or job_return.status != JobStatus.FAILED:
            return
        try:
            job_return.return_value  # noqa: B018 (a failed job's return value raises its error)
        except Exception as e:
            error = e
        folder = Path(str(config.hydra.sweep.dir)) / POOL_FOLDER
        swept = json.loads((folder / "swept_keys.json").read_text())
        line = failure_line(config.hydra.job.num, list(config.hydra.overrides.task), swept, error)
        log.error(line, exc_info=None if isinstance(error, MGRError) else error)
        (folder / "failed").mkdir(exist_ok=True)
        (folder / "failed" / f"{config.hydra.job.num}.txt").write_text(line)
        # The error goes back to the main process pickled: some exceptions do not unpickle, a line does.
        job_return.return_value = JobFailed(line)


def swept_keys(config: DictConfig) -> list[str]:
    """The settings a sweep varies: those given several values on the command line, and the
    parameters of a sweeper that has its own (Optuna's hydra.sweeper.params)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    keys = [o.key_or_group for o in overrides if o.is_sweep_override()]
    return keys + [str(k) for k in (config.hydra.sweeper.get("params") or {}) if str(k) not in keys]


def failure_line(num: int, overrides: Sequence[str], swept: Sequence[str], error: BaseException) -> str:
    """`Job <num> (<its values of the swept settings>) failed: <the error's last line>`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    own = [o.input_line for o in OverridesParser.create().parse_overrides(list(overrides)) if o.key_or_group in swept]
    return f"Job {num} ({' '.join(own or overrides)}) failed: {last_line(error)}"
