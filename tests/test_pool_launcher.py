"""hydra/launcher=pool (mgr.device_pool): a multirun's jobs side by side, each on its own slot of the
node's GPUs or CPU cores. The slots are computed from a GPU count the tests fake; the sweeps run on
the CPU."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from conftest import NO_PLOTS, tiny
from mgr import MGRError
from mgr.device_pool import DevicePool, Slot, claim_slot, device_slots, failure_line, visible_gpus

FOUR_GPUS = ["0", "1", "2", "3"]


def test_without_gpus_the_jobs_share_the_cores_as_threads():
    slots = device_slots([], cpu_jobs=2, cpus=2)
    assert slots == [Slot(0, (), 1), Slot(1, (), 1)]
    assert slots[0].environment() == {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert [s.threads for s in device_slots([], cpu_jobs=3, cpus=16)] == [5, 5, 5]


def test_one_job_per_gpu():
    slots = device_slots(FOUR_GPUS, cpus=16)
    assert [s.gpus for s in slots] == [("0",), ("1",), ("2",), ("3",)]
    assert {s.threads for s in slots} == {4}
    assert slots[2].environment()["CUDA_VISIBLE_DEVICES"] == "2"


def test_jobs_per_gpu_2_puts_two_jobs_on_every_gpu_spreading_the_first_four():
    slots = device_slots(FOUR_GPUS, jobs_per_gpu=2, cpus=16)
    assert [s.gpus for s in slots] == [("0",), ("1",), ("2",), ("3",)] * 2
    assert [s.index for s in slots] == list(range(8)) and {s.threads for s in slots} == {2}


def test_gpus_per_job_2_gives_each_ddp_job_a_pair():
    assert [s.environment()["CUDA_VISIBLE_DEVICES"] for s in device_slots(FOUR_GPUS, gpus_per_job=2, cpus=8)] == \
        ["0,1", "2,3"]
    both = device_slots(FOUR_GPUS, jobs_per_gpu=2, gpus_per_job=2, cpus=8)
    assert [s.gpus for s in both] == [("0", "1"), ("2", "3")] * 2 and {s.threads for s in both} == {2}


def test_gpus_left_over_by_gpus_per_job_are_named(caplog):
    with caplog.at_level(logging.WARNING, logger="mgr.device_pool"):
        slots = device_slots(FOUR_GPUS, gpus_per_job=3, cpus=4)
    assert [s.gpus for s in slots] == [("0", "1", "2")]
    assert "GPU 3 stays idle" in caplog.text


@pytest.mark.parametrize("settings, words", [
    ({"gpus_per_job": 8}, "gpus_per_job=8 is more than the 4 GPUs"),
    ({"jobs_per_gpu": 0}, "jobs_per_gpu=0 must be a whole number >= 1"),
    ({"cpu_jobs": 1.5}, "cpu_jobs=1.5 must be a whole number >= 1"),
])
def test_impossible_pools_are_one_sentence(settings, words):
    with pytest.raises(MGRError, match=re.escape(words)):
        device_slots(FOUR_GPUS, cpus=4, **settings)


def test_the_gpus_are_those_this_process_sees(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert visible_gpus() == ["2", "5"]  # the pool hands out the node's GPUs by the names the user gave
    assert visible_gpus(1) == ["2"]
    with pytest.raises(MGRError, match=r"gpus=3, but CUDA_VISIBLE_DEVICES=2,5 names 2"):
        visible_gpus(3)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus() == ["0", "1"]
    assert visible_gpus(4) == FOUR_GPUS  # a node's GPUs faked on a CPU machine


def test_the_pool_of_the_launcher_settings_with_a_faked_gpu_count(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    slots = DevicePool(gpus=4, jobs_per_gpu=2, gpus_per_job=2, cpus=8).slots()
    assert [s.environment()["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0,1", "2,3", "0,1", "2,3"]
    assert DevicePool(gpus=0, cpu_jobs=2, cpus=2).slots() == [Slot(0, (), 1), Slot(1, (), 1)]


def test_the_launcher_option_composes_with_the_pool_callback():
    from hydra import compose, initialize_config_module

    with initialize_config_module("mgr.conf", version_base="1.3"):
        hydra = compose("train", overrides=["hydra/launcher=pool"], return_hydra_config=True).hydra
    assert hydra.launcher._target_.endswith("JoblibLauncher")
    assert hydra.callbacks.pool._target_ == "mgr.device_pool.DevicePool"
    assert hydra.callbacks.pool.jobs_per_gpu == 1 and hydra.callbacks.pool.gpus is None


def test_a_job_takes_a_free_slot_and_waits_while_none_is(tmp_path):
    slots = device_slots(["0", "1"], cpus=2)
    first, first_lock = claim_slot(slots, tmp_path)
    second, _ = claim_slot(slots, tmp_path)
    assert (first.gpus, second.gpus) == (("0",), ("1",))
    got = []
    waiting = threading.Thread(target=lambda: got.append(claim_slot(slots, tmp_path, poll_s=0.05)[0]))
    waiting.start()
    waiting.join(0.5)
    assert not got  # both GPUs busy: the third job waits
    first_lock.release()
    waiting.join(10)
    assert got == [first]  # and takes GPU 0 as it frees up


def test_a_slot_is_held_by_another_process_until_that_process_ends(tmp_path):
    slots = device_slots([], cpu_jobs=2, cpus=2)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, filelock; lock = filelock.FileLock(sys.argv[1]); "
                               "lock.acquire(); print('held', flush=True); sys.stdin.read()",
                               str(tmp_path / "slot-0.lock")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        slot, lock = claim_slot(slots, tmp_path)
        assert slot.index == 1
        lock.release()
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert claim_slot(slots, tmp_path)[0].index == 0  # the OS freed it with the process


# What a job's process does before the pool gives it its slot: Hydra composes the job's config (which
# imports mgr.conf, so mgr's schemas, features and nets, so torch) and loads the task (mgr.train).
# CUDA reads CUDA_VISIBLE_DEVICES once, when first asked for a device count, so none of it may ask.
BEFORE_THE_SLOT = """
import torch, traceback
asked = []
count = torch._C._cuda_getDeviceCount
torch._C._cuda_getDeviceCount = lambda: asked.append(traceback.format_stack()) or count()
from hydra import compose, initialize_config_module
with initialize_config_module("mgr.conf", version_base="1.3"):
    compose("train", overrides=["hydra/launcher=pool"], return_hydra_config=True)
import mgr.train, mgr.device_pool
print(len(asked), "".join(asked[0]) if asked else "")
torch.cuda.is_available()
print(len(asked))
"""


def test_a_job_process_sets_up_no_cuda_before_the_pool_gives_it_its_gpus():
    done = subprocess.run([sys.executable, "-c", BEFORE_THE_SLOT], capture_output=True, text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr[-3000:]
    assert lines[0] == "0 ", done.stdout  # where CUDA was asked, if it was
    assert lines[-1] == "1"  # the spy sees CUDA asked


def test_a_failed_job_is_one_line_of_its_swept_values():
    error = ValueError("first line\nthe last line")
    line = failure_line(3, ["model=cnn", "data.batch_size=16", "model.dropout=1.5"], ["model.dropout"], error)
    assert line == "Job 3 (model.dropout=1.5) failed: ValueError: the last line"


# The job's log lines: "[2026-12-07 14:59:09,014][logger][LEVEL] - message".
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def job_span(job: Path) -> tuple[datetime, datetime, str]:
    """When the job got its slot, when it wrote its last log line, and which slot it got."""
    (log_file,) = job.glob("*.log")
    lines = log_file.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "Device pool slot" in line)
    stamps = [datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f") for line in lines[start:] if (m := STAMP.match(line))]
    return stamps[0], stamps[-1], lines[start].split("Device pool ")[1]


def most_at_once(spans: list[tuple[datetime, datetime, str]]) -> int:
    """The most jobs running at one time: the count at some job's start, when the count rises."""
    return max(sum(start <= instant < end for start, end, _ in spans) for instant, _, _ in spans)


@pytest.mark.slow
def test_four_jobs_run_two_at_a_time_on_two_cores_and_a_failing_one_stops_none(run_mgr, tmp_path):
    # model.dropout=1.5 fails inside job 3, when the model is built.
    proc = run_mgr("train", "-m", "hydra/launcher=pool", "hydra.callbacks.pool.cpus=2", *tiny(), "debug=limit",
                   *NO_PLOTS, "model.dropout=0.1,0.2,0.3,1.5", check=False)
    assert proc.returncode != 0
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    assert [(sweep / str(n) / "metrics.json").exists() for n in range(4)] == [True, True, True, False]
    report = proc.stderr.split("1 job of the sweep failed")[1]
    assert "Job 3 (model.dropout=1.5) failed: ValueError: dropout probability has to be between 0 and 1" in report
    spans = [job_span(sweep / str(n)) for n in range(4)]
    assert most_at_once(spans) == 2, spans
    assert {slot for _, _, slot in spans} == {"slot 0: the CPU, 1 thread", "slot 1: the CPU, 1 thread"}


@pytest.mark.slow
def test_optuna_runs_its_trials_side_by_side_each_its_own_wandb_run(run_mgr, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no W&B login: the runs log offline
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    overrides = [o for o in tiny() if not o.startswith(("feature.n_mels", "data.batch_size"))]
    run_mgr("train", "hparams_search=optuna", "hydra/launcher=pool", "hydra.callbacks.pool.cpus=2",
            "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2",
            *overrides, "debug=limit", *NO_PLOTS, "logger=wandb")
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    assert yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_value"] > 0
    assert most_at_once([job_span(sweep / str(n)) for n in range(2)]) == 2
    runs = [list((sweep / str(n)).glob("wandb/offline-run-*/run-*.wandb")) for n in range(2)]
    assert [len(r) for r in runs] == [1, 1] and runs[0][0].name != runs[1][0].name
