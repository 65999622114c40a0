"""Finite or refused (mgr.models.finite): a run whose loss or weights stop being finite stops with one
sentence, a checkpoint with non-finite weights is never written, and predict refuses one."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import NO_PLOTS, mgr_command, mgr_in_process, save_checkpoint, tiny, write_wav
from mgr import MGRError
from mgr.data import synth_audio
from mgr.models import CheckpointIO, GenreClassifier
from mgr.models.finite import StopOnNonFinite, first_non_finite


def one_error(proc) -> str:
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mgr: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def test_a_diverging_run_stops_with_one_sentence(tmp_path, data_dir):
    proc = mgr_in_process("train", *tiny(epochs=2), "optimizer.lr=1e12", *NO_PLOTS, cwd=tmp_path, data_dir=data_dir,
                          check=False)
    error = one_error(proc)
    assert "Training diverged: the training loss became NaN or infinite by step" in error
    assert "(epoch 0)" in error and "optimizer.lr=1e+12; try optimizer.lr=1e+11" in error
    assert not list(tmp_path.glob("logs/train/runs/*/checkpoints/*.ckpt"))  # nothing NaN was saved


def test_a_diverging_run_stops_also_with_callbacks_none(tmp_path, data_dir):
    proc = mgr_in_process("train", *tiny(epochs=2), "optimizer.lr=1e12", "callbacks=none", cwd=tmp_path,
                          data_dir=data_dir, check=False)
    assert "Training diverged" in one_error(proc)


@pytest.mark.slow
def test_a_diverging_ddp_spawn_run_stops_with_one_sentence(tmp_path, data_dir):
    """The error is raised in a spawned rank; the main process gets it as that rank's traceback text."""
    proc = mgr_command("train", *tiny(epochs=2), "optimizer.lr=1e12", "trainer=ddp_cpu", *NO_PLOTS, cwd=tmp_path,
                       data_dir=data_dir, check=False)
    assert "Training diverged" in one_error(proc)


def test_a_spawned_ranks_error_is_read_from_its_traceback_text():
    from mgr.entry import _error_of_rank

    text = ("\n\n-- Process 1 terminated with the following error:\nTraceback (most recent call last):\n"
            '  File "x.py", line 1, in f\nmgr.data.cache.CacheDamaged: The cache is damaged; delete it.\n')
    assert str(_error_of_rank(text)) == "The cache is damaged; delete it."
    assert _error_of_rank(text.replace("mgr.data.cache.CacheDamaged", "ValueError")) is None
    assert _error_of_rank(text.replace("mgr.data.cache.CacheDamaged", "mgr.data.cache.WaveformCache")) is None
    assert _error_of_rank("") is None


def tiny_model() -> GenreClassifier:
    return GenreClassifier(sorted(synth_audio.CLASSES), {"name": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 32},
                           8000, 1.0, {"name": "cnn", "channels": [4, 8, 8], "hidden": 8})


def test_first_non_finite_names_the_first_bad_floating_tensor():
    state = {"a": torch.ones(3), "steps": torch.tensor(7), "b": torch.tensor([1.0, math.inf]), "c": torch.tensor(math.nan)}
    assert first_non_finite(state) == "b"
    assert first_non_finite({"a": torch.ones(3), "n": torch.arange(3)}) is None


def test_a_checkpoint_with_non_finite_weights_is_never_written(tmp_path):
    model = tiny_model()
    state = model.state_dict()
    state["encoder.net.conv.0.0.weight"][0, 0, 0, 0] = math.nan
    checkpoint = {"state_dict": state, "epoch": 3, "global_step": 40, "hyper_parameters": {"optimizer": {"lr": 0.5}}}
    with pytest.raises(MGRError, match=r"Training diverged: at epoch 3, step 40 the weights hold NaN or infinite "
                                       r"values \(first: encoder.net.conv.0.0.weight\), so mgr did not write .*last.ckpt; "
                                       r"lower the learning rate \(optimizer.lr=0.5; try optimizer.lr=0.05\)"):
        CheckpointIO().save_checkpoint(checkpoint, tmp_path / "last.ckpt")
    assert not list(tmp_path.iterdir())


def nan_checkpoint(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        model.head.bias[1] = math.nan
    path = tmp_path / "nan.ckpt"
    save_checkpoint(model, path)  # as another program could write it: Lightning's own save
    return path


def test_predict_refuses_a_checkpoint_with_nan_weights_in_one_line(tmp_path, data_dir):
    wav = write_wav(tmp_path / "song.wav", 0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32), 8000)
    path = nan_checkpoint(tmp_path)
    proc = mgr_in_process("predict", f"ckpt_path={path}", f"inputs=[{wav}]", cwd=tmp_path, data_dir=data_dir, check=False)
    assert one_error(proc) == (f"mgr: error: {path} holds NaN or infinite weights (first: head.bias): the run that "
                               "wrote it diverged; use a checkpoint saved before that, or train again with a lower "
                               "optimizer.lr.")
    assert not list(tmp_path.glob("logs/predict/runs/*/predictions.csv"))


class FakeTrainer(SimpleNamespace):
    """What StopOnNonFinite reads of a trainer: its step and epoch, the log interval, the strategy."""

    def __init__(self, log_every_n_steps: int):
        super().__init__(global_step=0, current_epoch=0, log_every_n_steps=log_every_n_steps,
                         strategy=SimpleNamespace(reduce_boolean_decision=lambda decision, all=True: decision))


def test_on_a_gpu_the_loss_flag_is_read_at_the_log_interval_and_the_epoch_end(monkeypatch):
    monkeypatch.setattr(StopOnNonFinite, "CHEAP_TO_READ", ())  # the CPU behaves as a GPU: reads are deferred
    module = SimpleNamespace(hparams={"optimizer": {"name": "sgd", "lr": 2.0}})
    callback, trainer = StopOnNonFinite(), FakeTrainer(log_every_n_steps=4)
    for step, loss in enumerate([1.0, math.nan, 1.0], start=1):  # steps 1-3: the NaN of step 2 is not read yet
        trainer.global_step = step
        callback.on_train_batch_end(trainer, module, {"loss": torch.tensor(loss)}, None, step - 1)
    trainer.global_step = 4
    with pytest.raises(MGRError, match=r"by step 4 \(epoch 0\); lower the learning rate \(optimizer.lr=2"):
        callback.on_train_batch_end(trainer, module, {"loss": torch.tensor(1.0)}, None, 3)
    trainer.global_step = 5
    callback.on_train_batch_end(trainer, module, {"loss": torch.tensor(math.inf)}, None, 4)  # not read before the end
    with pytest.raises(MGRError, match="by step 5"):
        callback.on_train_epoch_end(trainer, module)
    callback.on_train_batch_end(trainer, module, None, None, 5)  # a closed-form head returns no loss
    callback.on_train_epoch_end(trainer, module)
