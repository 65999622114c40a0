"""A run stopped by SIGTERM mid-training saves last.ckpt; `ckpt_path=last` in the same run
directory continues at the right epoch, with its optimizer state and its W&B run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import NO_PLOTS, mgr_in_process, tiny


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
    deadline = time.time() + 300
    while not (last.exists() and _epoch(last) >= 2) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert "Stopped by SIGTERM" in output, output[-3000:]
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
