"""Heads fitted in closed form (FittedClassifier) under DDP and across a resume.

Under DDP (two gloo ranks on the CPU) every rank fits, and chooses, the head on every rank's training
chunks, each once (DistributedSampler's repeats left out), so both ranks hold the head the checkpoint
holds, fitted on the chunks one process fits on. A resumed run collects its head's passes again: its
head is fitted on as many passes as an uninterrupted run's. Each rank's head is read by SaveHeads, a
callback the runs are given by override (the spawned ranks import it from this file)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from conftest import NO_PLOTS, TINY_DATA, metrics_of, mgr_command, mgr_in_process, tiny
from hf_models import save_tiny
from mgr.models import load_model, read_checkpoint

DESCRIPTORS = ["feature=descriptors", "feature.n_fft=256", "feature.hop_length=128", "feature.n_mels=32",
               "feature.n_mfcc=13", "feature.n_bands=4"]
# Evaluation's chunks of every training track, the same in every epoch and every process: 61 of 1.1 s,
# an odd count, so DistributedSampler repeats one to give two ranks 31 each.
EVEN = [*TINY_DATA, "data.chunk_seconds=1.1", "data.train_chunks_per_track=even", "data.num_workers=0",
        "trainer.enable_progress_bar=false", *NO_PLOTS]


class SaveHeads(pl.Callback):
    """Each rank's head after each training epoch (fitted, and chosen on validation) and the number of
    training chunks it was fitted on: <out>/rank<r>_epoch<e>.pt."""

    def __init__(self, out: str):
        self.out = Path(out)

    def on_train_epoch_end(self, trainer, pl_module):
        head = {k: v.detach().cpu().clone() if torch.is_tensor(v) else v  # the probe's extra state: its choice
                for k, v in pl_module.head.state_dict().items()}
        self.out.mkdir(parents=True, exist_ok=True)
        torch.save({"head": head, "fitted_chunks": pl_module.fitted_chunks},
                   self.out / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.pt")


def save_heads(out: Path) -> list[str]:
    return ["+callbacks.save_heads._target_=test_fitted_ddp.SaveHeads", f"+callbacks.save_heads.out={out}"]


def saved(out: Path, rank: int, epoch: int) -> dict:
    return torch.load(out / f"rank{rank}_epoch{epoch}.pt", weights_only=False)


@pytest.fixture
def importable_here(monkeypatch):
    """The processes a test starts import SaveHeads from this file (and its imports)."""
    here = Path(__file__).parent
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(here), str(here.parent), os.environ.get("PYTHONPATH", "")]))


def check_ranks_hold_one_head(out: Path, run_dir_metrics: dict, one_process: dict) -> None:
    """Both ranks hold the head the checkpoint holds, fitted on the chunks one process fits on, each once."""
    rank0, rank1 = saved(out, 0, 0), saved(out, 1, 0)
    assert rank0["fitted_chunks"] == rank1["fitted_chunks"] == one_process["fitted_chunks"]
    # DistributedSampler repeats one chunk to even out the two ranks: left out, or the count above is one more.
    assert one_process["fitted_chunks"] % 2 == 1
    assert rank0["head"].keys() == rank1["head"].keys()
    for key, value in rank0["head"].items():
        assert torch.equal(value, rank1["head"][key]) if torch.is_tensor(value) else value == rank1["head"][key], key
    stored = read_checkpoint(run_dir_metrics["best_checkpoint"])["state_dict"]
    for key, value in rank0["head"].items():
        if torch.is_tensor(value):
            assert torch.equal(stored[f"head.{key}"].cpu(), value), key


@pytest.mark.slow
def test_two_ranks_fit_and_choose_the_rbf_svm_one_process_fits(tmp_path, data_dir, importable_here):
    """model=stats_rbf_svm under trainer=ddp_cpu (2 spawned gloo ranks): DDP refused to wrap a task
    without a trainable parameter; now both ranks hold the SVM the checkpoint holds, fitted on every
    training chunk once and chosen on every validation chunk, as one process fits and chooses it."""
    run = ["model=stats_rbf_svm", *DESCRIPTORS, *EVEN]
    (tmp_path / "one").mkdir()
    one = mgr_in_process("train", *run, *save_heads(tmp_path / "heads1"), cwd=tmp_path / "one", data_dir=data_dir)
    (tmp_path / "ddp").mkdir()
    ddp = mgr_command("train", *run, "trainer=ddp_cpu", *save_heads(tmp_path / "heads2"), cwd=tmp_path / "ddp",
                      data_dir=data_dir)
    one_process = saved(tmp_path / "heads1", 0, 0)
    check_ranks_hold_one_head(tmp_path / "heads2", metrics_of(ddp), one_process)

    # The same SVM as one process's: the same C and gamma, the same decisions (to libsvm's tolerance: the
    # chunks come in another order) on inputs where it decides something, its support vectors.
    heads = [load_model(metrics_of(proc)["best_checkpoint"]).head.eval() for proc in (one, ddp)]
    assert [(float(h.chosen_C), float(h.gamma)) for h in heads[1:]] == [(float(heads[0].chosen_C),
                                                                          float(heads[0].gamma))]
    assert heads[1].support_vectors.shape == heads[0].support_vectors.shape
    inputs = heads[0].support_vectors * heads[0].scale + heads[0].mean
    with torch.no_grad():
        torch.testing.assert_close(heads[1](inputs), heads[0](inputs), rtol=0, atol=1e-3)


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory) -> Path:
    return save_tiny("hubert", tmp_path_factory.mktemp("hubert"))


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["spawn", "torchrun"])
def test_two_ranks_choose_the_probe_one_process_chooses(launcher, tmp_path, data_dir, hubert_dir, importable_here):
    """The probe's `select` head under ddp_spawn (trainer=ddp_cpu, which pickles the model and its tiny
    HuBERT, parametrized convolution and all, into each rank) and plain ddp (torchrun's 2 workers): both
    ranks hold the choice the checkpoint holds, fitted on every training chunk once, as one process chooses."""
    run = ["model=probe", "encoder=hubert_base", f"encoder.weights={hubert_dir}",
           "model.head={name: select, mlp_lr: []}", "trainer.max_epochs=1", *EVEN]
    (tmp_path / "one").mkdir()
    mgr_in_process("train", *run, *save_heads(tmp_path / "heads1"), cwd=tmp_path / "one", data_dir=data_dir)
    (tmp_path / "ddp").mkdir()
    if launcher == "spawn":
        proc = mgr_command("train", *run, "trainer=ddp_cpu", *save_heads(tmp_path / "heads2"), cwd=tmp_path / "ddp",
                           data_dir=data_dir)
    else:
        paths = [f"paths.data_dir={data_dir}", f"paths.log_dir={tmp_path / 'ddp' / 'logs'}"]
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("MGR_")}, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "mgr.train",
                               *run, "trainer=ddp_cpu", *save_heads(tmp_path / "heads2"), *paths], cwd=tmp_path / "ddp",
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-5000:]
    one_process = saved(tmp_path / "heads1", 0, 0)
    check_ranks_hold_one_head(tmp_path / "heads2", metrics_of(proc), one_process)
    reports = [saved(out, 0, 0)["head"]["_extra_state"]["report"] for out in (tmp_path / "heads1", tmp_path / "heads2")]
    for key in ("train_chunks", "val_chunks", "chosen"):  # the choice: its kind, layer, setting and scores
        assert reports[1][key] == reports[0][key], key


def test_a_resumed_run_fits_its_head_on_as_many_passes_as_an_uninterrupted_one(tmp_path, data_dir):
    """stats_linear_svm with 3 passes, resumed from its first epoch's checkpoint: its head was fitted on
    the passes after the resume alone (2); now the resumed run collects all 3 again."""
    run_dir = tmp_path / "run"
    run = [*tiny("stats_linear_svm", "mfcc", epochs=8), "model.head.passes=3",
           "callbacks.model_checkpoint.save_top_k=-1", "~callbacks.early_stopping", "data.num_workers=0", *NO_PLOTS,
           f"hydra.run.dir={run_dir}"]
    mgr_in_process("train", *run, *save_heads(tmp_path / "first"), cwd=tmp_path, data_dir=data_dir)
    per_pass = saved(tmp_path / "first", 0, 0)["fitted_chunks"]
    assert saved(tmp_path / "first", 0, 2)["fitted_chunks"] == 3 * per_pass
    resumed = mgr_in_process("train", *run, f"ckpt_path={run_dir / 'checkpoints' / 'epoch000.ckpt'}",
                             *save_heads(tmp_path / "resumed"), cwd=tmp_path, data_dir=data_dir)
    assert saved(tmp_path / "resumed", 0, 2)["fitted_chunks"] == 2 * per_pass  # epochs 1 and 2: the run went on
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == [f"rank0_epoch{e}.pt" for e in (1, 2, 3)]
    assert saved(tmp_path / "resumed", 0, 3)["fitted_chunks"] == 3 * per_pass
    assert "collects its 3 passes again from this epoch" in resumed.stdout + resumed.stderr
