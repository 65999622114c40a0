"""A run stopped by SIGTERM mid-training saves last.ckpt and exits 143 with one line that says how to
resume; `ckpt_path=last` in the same run directory continues at the right epoch, with its optimizer
state and its W&B run. A multirun told to stop (SIGTERM, Ctrl-C) starts no further job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from omegaconf import OmegaConf

from conftest import NO_PLOTS, mgr_in_process, tiny, wait_until
from mgr.entry import task


def _epoch(path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


@pytest.mark.slow
def test_sigterm_then_resume_from_last(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # W&B offline: no login here
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run_dir = tmp_path / "run"
    common = [*tiny(epochs=1000), "logger=many", f"hydra.run.dir={run_dir}",
              f"paths.data_dir={data_dir}", f"paths.log_dir={tmp_path / 'logs'}"]
    mgr_in_process("train", *tiny(), "debug=fast_dev_run", *NO_PLOTS, cwd=tmp_path, data_dir=data_dir)  # data and cache first
    proc = subprocess.Popen([sys.executable, "-m", "mgr.train", *common], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    wait_until(lambda: last.exists() and _epoch(last) >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert "Stopped by SIGTERM" in output, output[-3000:]
    assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]  # not 0: whoever sent it sees the run stopped
    assert f"mgr: stopped: SIGTERM stopped the run in {run_dir}; resume it with: python -m mgr.train " in output
    assert f"ckpt_path=last hydra.run.dir={run_dir}." in output
    stopped_at = _epoch(last)
    assert 2 <= stopped_at < 999
    first_wandb = sorted((run_dir / "wandb").glob("offline-run-*"))

    # The resume needs no signal: in this process (HOME as above).
    resumed = mgr_in_process("train", *common, "ckpt_path=last", f"trainer.max_epochs={stopped_at + 3}", cwd=tmp_path,
                             data_dir=data_dir)
    log = resumed.stdout + resumed.stderr
    assert f"Restoring states from the checkpoint path at {last}" in log
    assert _epoch(last) == stopped_at + 2  # continued, did not start again at epoch 0
    assert (run_dir / "metrics.json").exists()
    run_ids = {p.name.rsplit("-", 1)[-1] for p in (run_dir / "wandb").glob("offline-run-*")}
    assert len(first_wandb) == 1 and run_ids == {first_wandb[0].name.rsplit("-", 1)[-1]}


def _ctrl_c_reaches_it() -> None:
    # As in a terminal: a shell without job control (CI runs its jobs in the background) starts its
    # children with SIGINT ignored, and a Python started so never raises KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def interruptible():
    """This process answers Ctrl-C as in a terminal (Python's KeyboardInterrupt), whatever it inherited."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, inherited)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stopped_multirun_starts_no_further_job(stop, tmp_path, data_dir):
    """The signal goes to the whole process group, as `pkill -f mgr.train` or Ctrl-C in a terminal send it,
    DataLoader workers included: their death failed the job's teardown, and Hydra, taking that for a
    failed job, started the next one."""
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mgr.train", "-m", *tiny(epochs=1000), *NO_PLOTS, "seed=1,2,3", "data.on_device=false",
         "data.num_workers=2", f"hydra.sweep.dir={sweep}", f"paths.data_dir={data_dir}", f"paths.log_dir={tmp_path / 'logs'}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        preexec_fn=_ctrl_c_reaches_it)
    last = sweep / "0" / "checkpoints" / "last.ckpt"
    try:
        wait_until(last.exists, proc)  # training: the first epoch has ended
        os.killpg(proc.pid, stop)
        output = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:  # a sweep that goes on is not left running
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + stop, output[-3000:]
    assert last.exists()
    assert not (sweep / "1").exists(), output[-3000:]
    how = "Ctrl-C" if stop == signal.SIGINT else "SIGTERM"
    assert f"mgr: stopped: {how} stopped job 0 of the multirun ({sweep / '0'}); resume it with: " in output
    assert "the jobs after it were not started" in output


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_outside_the_trainer_ends_the_job_with_one_line(stop, tmp_path, capsys, interruptible):
    """Before training (data preparation, say): status 128 + the signal and the line, not a traceback
    that a multirun's next job would follow; the process's own handlers are back afterwards."""
    def preparing_data(cfg):
        os.kill(os.getpid(), stop)
        time.sleep(5)  # the handler runs at once; this is never reached

    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}})
    with pytest.raises(SystemExit) as stopped:
        task(preparing_data)(cfg)
    assert stopped.value.code == 128 + stop
    how = "Ctrl-C" if stop == signal.SIGINT else "SIGTERM"
    assert capsys.readouterr().err == (f"mgr: stopped: {how} stopped the run in {tmp_path} before it saved a checkpoint "
                                       "to resume from: run the same command again.\n")
    assert {s: signal.getsignal(s) for s in handlers} == handlers


def test_a_process_that_handles_sigterm_itself_keeps_its_handler(tmp_path):
    """submitit's jobs (hydra/launcher=slurm) ignore SIGTERM with a handler of their own, each job a
    process of its own: mgr leaves it so, and the job returns as before."""
    seen = []

    def training(cfg):
        os.kill(os.getpid(), signal.SIGTERM)
        return 0.5

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        assert task(training)(OmegaConf.create({"paths": {"output_dir": str(tmp_path)}})) == 0.5
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_sigterm_that_the_trainer_let_finish_still_ends_the_process(tmp_path, capsys):
    """Lightning's handler notes a SIGTERM after its loops' last check (the last test batch) and lets the
    stage finish: the job returns whole, and then the process ends, so that no next job starts."""
    def training(cfg):
        noting = signal.signal(signal.SIGTERM, lambda signum, frame: None)  # as Lightning's, during a stage
        os.kill(os.getpid(), signal.SIGTERM)
        signal.signal(signal.SIGTERM, noting)
        return 0.5

    with pytest.raises(SystemExit) as stopped:
        task(training)(OmegaConf.create({"paths": {"output_dir": str(tmp_path)}}))
    assert stopped.value.code == 128 + signal.SIGTERM
    assert capsys.readouterr().err == f"mgr: stopped: SIGTERM came as the run in {tmp_path} finished (its results are complete).\n"
