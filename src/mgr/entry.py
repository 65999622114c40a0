"""What every entry point shares: its Hydra main with mgr's own --help (mgr.help), a config checked
before any work (mgr.schema), user errors as one sentence without a traceback, required keys and
config instantiation. The test report is mgr.test_report."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shlex
import signal
import socket
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

from omegaconf import DictConfig, OmegaConf

from mgr import MGRError
from mgr.utils.run_checkpoints import last_checkpoints

log = logging.getLogger("mgr")


def command(config_name: str, run: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """The `main()` of `python -m mgr.<command>`: Hydra's main around `run` (a @task) with the config
    conf/<config_name>.yaml; `--help` prints the command's own options (mgr.help), and a config that
    does not compose (an unknown option or key, a value of the wrong type) is one `mgr: error:` line.
    Hydra prints its composition errors itself unless HYDRA_FULL_ERROR is set, so mgr sets it to see
    them; a user who set it gets Hydra's full traceback, as Hydra documents."""
    import hydra

    @hydra.main(version_base="1.3", config_path="pkg://mgr.conf", config_name=config_name)
    def hydra_main(cfg: DictConfig) -> Any:
        return run(cfg)

    def main() -> Any:
        if any(arg in ("--help", "-h") for arg in sys.argv[1:]):
            from mgr.help import help_text

            print(help_text(config_name))
            return None
        from mgr.schema import config_error

        full_error_asked = "HYDRA_FULL_ERROR" in os.environ
        os.environ["HYDRA_FULL_ERROR"] = "1"
        try:
            return hydra_main()
        except Exception as e:  # a multirun's failed job (its MGRError, once all jobs ran), or the config's
            error = e if isinstance(e, MGRError) else None if full_error_asked else config_error(e)
            if error is None:
                raise
            print(f"mgr: error: {error}", file=sys.stderr)
            sys.exit(1)
        finally:
            if not full_error_asked:
                os.environ.pop("HYDRA_FULL_ERROR", None)

    return main


def task(fn: Callable[[DictConfig], Any] | None = None, *, settings: type | None = None) -> Callable:
    """Wrap a Hydra task (`@task`, or `@task(settings=S)`): first the config's own top-level keys are
    checked against the annotations of the dataclass `settings` that lists them (mgr.schema.check_settings)
    and its `_target_` nodes against their signatures (mgr.schema.check_targets); an MGRError ends the
    run with its one-sentence message and exit code 1, or, in a multirun, ends the job as failed and lets
    the others run (Hydra raises the first failure once all have run)."""
    if fn is None:
        return functools.partial(task, settings=settings)

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig) -> Any:
        # A job told to stop (SIGTERM, Ctrl-C) ends the process once it has saved and returned: in a
        # multirun, Hydra would start the next job (mgr.utils.preemption).
        with exit_when_told_to_stop(cfg):
            return run_job(fn, cfg, settings)

    return wrapper


def run_job(fn: Callable[[DictConfig], Any], cfg: DictConfig, settings: type | None) -> Any:
    from mgr.environment import write_environment
    from mgr.schema import check_settings, check_targets
    from mgr.utils.allocator import keep_freed_memory

    keep_freed_memory()
    _quiet_warnings()
    failed = True
    try:
        if settings is not None:
            check_settings(cfg, settings)
        check_targets(cfg)  # before any work: a wrong value costs nothing
        write_environment(cfg.paths.output_dir)
        result = fn(cfg)
        failed = False
        return result
    except Exception as e:
        error = _user_error(e)
        if error is None:
            raise
        print(f"mgr: error: {error}", file=sys.stderr)
        if _in_multirun():  # Hydra records the job as failed and runs the sweep's other jobs
            raise error from None
        sys.exit(1)
    finally:
        finish_wandb(failed)  # also after a failure, so the next multirun job gets its own W&B run


@contextlib.contextmanager
def exit_when_told_to_stop(cfg: DictConfig) -> Iterator[None]:
    """Run one job; if SIGTERM or Ctrl-C told the process to stop meanwhile, end the process once the
    job has returned or raised (its error is then the stop's consequence), with 128 + the signal's
    number and one line naming the job, how to resume it, and, in a multirun, that the later jobs were
    not started. Hydra records a job's Exception as a failure and starts the next job; SystemExit ends
    its sweep (mgr.utils.preemption)."""
    with recording_stops() as stops:
        try:
            yield
        except BaseException:
            if stops.first() is None:
                raise
            end_process(cfg, stops.first(), finished=False)
        if stops.first() is not None:
            end_process(cfg, stops.first(), finished=True)


class StopSignals:
    """The signals among `counted` that this process receives, as Python's C handler writes their
    numbers to a socket (signal.set_wakeup_fd) before any Python handler runs."""

    def __init__(self, counted: set[signal.Signals]):
        self.counted = counted
        self.received: list[signal.Signals] = []
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.writer.setblocking(False)

    def first(self) -> signal.Signals | None:
        with contextlib.suppress(BlockingIOError, OSError):
            while numbers := self.reader.recv(512):
                self.received += [signal.Signals(n) for n in numbers if n in self.counted]
        return self.received[0] if self.received else None

    def close(self) -> None:
        self.first()  # what the socket holds, before it closes
        self.reader.close()
        self.writer.close()


@contextlib.contextmanager
def recording_stops() -> Iterator[StopSignals]:
    """The job's stops, recorded as they arrive: an error may follow a stop at any moment, even inside
    Lightning's SIGTERM handler (torch reports a DataLoader worker killed by the same `pkill` from its
    SIGCHLD handler), and Hydra takes an error for a failed job. SIGTERM counts where its default
    would end the process (it then ends the job as Ctrl-C does: end_job_on_sigterm); a process that
    set its own handler keeps it (submitit's ignores SIGTERM: each of its jobs is a process of its own).
    Ctrl-C counts where Python raises KeyboardInterrupt for it."""
    default_sigterm = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    counted = {signal.SIGTERM} if default_sigterm else set()
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        counted.add(signal.SIGINT)
    stops = StopSignals(counted)
    in_main_thread = threading.current_thread() is threading.main_thread()  # only it may handle signals
    if in_main_thread:
        previous_fd = signal.set_wakeup_fd(stops.writer.fileno(), warn_on_full_buffer=False)
        if default_sigterm:
            signal.signal(signal.SIGTERM, end_job_on_sigterm)
    try:
        yield stops
    finally:
        if in_main_thread:
            signal.set_wakeup_fd(previous_fd)
            if default_sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
        stops.close()


def end_job_on_sigterm(signum: int, frame) -> None:
    """SIGTERM outside Lightning's loops (data preparation, calibration) ends the job where it is, as
    Ctrl-C does, so that mgr can say what stopped. Within them Lightning's own handler calls this one
    after its own, and its loops stop where they can (CheckpointOnSigterm saves last.ckpt there)."""
    if signal.getsignal(signal.SIGTERM) is end_job_on_sigterm:
        raise SystemExit(128 + signum)


def end_process(cfg: DictConfig, signum: signal.Signals, finished: bool) -> None:
    if hasattr(signal, "SIGCHLD"):  # the process ends: torch's reports of its killed DataLoader workers would cut the line
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        print(f"mgr: stopped: {stopped_job_line(cfg, signum, finished)}", file=sys.stderr)
    finally:  # whatever strikes meanwhile (another killed worker's error), the process ends: no next job
        raise SystemExit(128 + signum) from None


def stopped_job_line(cfg: DictConfig, signum: signal.Signals, finished: bool) -> str:
    """What stopped which job, what was kept of it, and how to go on: resume it from its last
    checkpoint, or run it again; in a multirun, the same command runs the whole sweep again."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = HydraConfig.get() if HydraConfig.initialized() else None  # None: a task called as a function
    run_dir = Path(cfg.paths.output_dir)
    how = "Ctrl-C" if signum == signal.SIGINT else signum.name
    multirun = hydra is not None and hydra.mode == RunMode.MULTIRUN
    job = f"job {hydra.job.num} of the multirun ({run_dir})" if multirun else f"the run in {run_dir}"
    overrides = list(hydra.overrides.task) if hydra is not None else []
    resume = None if finished else resume_command(cfg, overrides, run_dir)
    if finished:
        line = f"{how} came as {job} finished (its results are complete)"
    elif resume:
        line = f"{how} stopped {job}; resume it with: {resume}"
    else:
        line = f"{how} stopped {job} before it saved a checkpoint to resume from"
    if multirun:
        line += ("; the jobs after it were not started: the same command runs the whole sweep again in a new sweep "
                 "directory, the finished jobs included (narrow the swept values to run only those left)")
    elif not finished and not resume:
        line += ": run the same command again"
    return line + "."


def resume_command(cfg: DictConfig, overrides: list[str], run_dir: Path) -> str | None:
    """`python -m mgr.<task> <the job's overrides> ckpt_path=last hydra.run.dir=<run_dir>`, where the run
    saved a last checkpoint (mgr.run_directory reads it there); None where it did not."""
    if not last_checkpoints(run_dir):
        return None
    kept = [o for o in overrides if not o.lstrip("+~").startswith("ckpt_path=")]
    words = ["python", "-m", f"mgr.{cfg.get('task_name', 'train')}", *kept, "ckpt_path=last", f"hydra.run.dir={run_dir}"]
    return " ".join(shlex.quote(w) for w in words)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def finish_wandb(failed: bool) -> None:
    """Close the active W&B run, so the next job of a multirun starts its own. wandb is looked up,
    not imported: a run without a W&B logger never loads it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)


def _user_error(e: BaseException | None) -> MGRError | None:
    """The MGRError behind `e` (Hydra's instantiate wraps errors raised while building an
    object, a model that rejects its settings, in an InstantiationException), or one made from
    a required config value (`???`) left unset, such as data.root of data=folder."""
    from omegaconf.errors import MissingMandatoryValue

    while e is not None and not isinstance(e, MGRError):
        if isinstance(e, MissingMandatoryValue):
            key = getattr(e, "full_key", None) or "a required setting"
            return MGRError(f"{key} is missing; set {key}=... (see python -m mgr.<task> --help).")
        if type(e).__name__ == "ProcessRaisedException":  # a ddp_spawn rank's error, as its traceback's text
            return _error_of_rank(str(e))
        e = e.__cause__
    return e


def _error_of_rank(traceback_text: str) -> MGRError | None:
    """The MGRError a spawned DDP rank raised, from the last line of its traceback
    (`mgr.<module>.<Class>: <message>`); None for any other error."""
    import importlib

    last = traceback_text.strip().splitlines()[-1] if traceback_text.strip() else ""
    name, _, message = last.partition(": ")
    module, _, cls = name.rpartition(".")
    if not module.startswith("mgr") or not message:
        return None
    try:
        raised = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError):
        return None
    return MGRError(message) if isinstance(raised, type) and issubclass(raised, MGRError) else None


def _quiet_warnings() -> None:
    # Advice that does not apply to small CPU runs, or that mgr handles itself.
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(lambda r: "litlogger" not in r.getMessage())
    for message in (
        ".*isinstance.treespec, LeafSpec.*",
        ".*does not have many workers.*",
        ".*The number of training batches.*is smaller than the logging interval.*",
        ".*Checkpoint directory.*exists and is not empty.*",
        # A probe's frozen encoder is kept in eval mode on purpose (mgr.encoders.pretrained): data=folder's default.
        ".*module\\(s\\) in eval mode at the start of training.*",
    ):
        warnings.filterwarnings("ignore", message=message)


def require(cfg: DictConfig, *keys: str, usage: str) -> None:
    """One sentence, not Hydra's MissingMandatoryValue, when a required (`???`) key is not given."""
    for key in keys:
        if OmegaConf.is_missing(cfg, key):
            raise MGRError(f"{key} is missing; run {usage}.")


def instantiate_dict(group: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` entry of a group like `callbacks` or `logger`."""
    from hydra.utils import instantiate

    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]
