"""The front door of every command (mgr.entry.command): a config that does not compose, or a value
its target refuses, is one `mgr: error:` line before any work, without a traceback."""

from __future__ import annotations

import os

import pytest

from conftest import mgr_command, mgr_in_process


def one_error_line(proc) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mgr: error:")]
    assert proc.returncode == 1 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == errors[0]
    return errors[0]


@pytest.mark.parametrize("override,says", [
    ("trainer.max_epochs=abc", "trainer.max_epochs=abc is not accepted: pytorch_lightning.Trainer takes an integer or null"),
    ("model.dropout=abc", "model.dropout=abc is not accepted: model.dropout takes a number"),
    ("data.batch_size=-1", "data.batch_size=-1 is not accepted: it must be above 0"),
    ("feature.n_mels=abc", "feature.n_mels=abc is not accepted: feature.n_mels takes an integer"),
    ("callbacks.early_stopping.patience=abc", "callbacks.early_stopping.patience=abc is not accepted: "
     "pytorch_lightning.callbacks.EarlyStopping takes an integer"),
    ("model=cnnn", "model=cnnn is not an option of the model group; choose one of belov_cnn, cnn,"),
    ("model.dropoutt=0.1", "model.dropoutt is not a setting here"),
    ("+trainer.max_epoch=3", "trainer.max_epoch is not a setting of pytorch_lightning.Trainer; it takes "),
    ("seed=[", "seed=[ does not parse"),
    # train's own keys (mgr.train.TrainSettings), and the values train() checks before any data work
    ("novelty=yes", "novelty=yes is not accepted; give true or false."),
    ("seed=abc", "seed=abc is not accepted; give an integer or null."),
    ("optimized_mode=up", "optimized_mode=up is not accepted; give one of min, max."),
    ("optimized_metric=val/accuracy", "optimized_metric=val/accuracy is not a metric the model logs under "
     "task=multiclass; choose one of val/acc, val/f1, val/loss, val/track_acc"),
    ("track_aggregation=mode", "track_aggregation='mode' is not one of mean_logits"),
    ("vote_threshold=2", "vote_threshold=2 must be a number from 0 to below 1"),
])
def test_a_wrong_value_is_one_line_before_any_data_is_written(override, says, tmp_path):
    proc = mgr_in_process("train", override, cwd=tmp_path, data_dir=tmp_path / "data", check=False)
    assert one_error_line(proc).startswith(f"mgr: error: {says}")
    assert not (tmp_path / "data").exists()


def test_another_commands_group_is_refused_in_one_line(tmp_path):
    proc = mgr_in_process("predict", "ckpt_path=a.ckpt", "inputs=b.wav", "model=cnn", cwd=tmp_path,
                          data_dir=tmp_path / "data", check=False)
    assert one_error_line(proc) == "mgr: error: model is not a config group of this command; --help lists its groups and options."


@pytest.mark.parametrize("command,overrides,says", [
    ("predict", ["ckpt_path=a.ckpt", "inputs=b.wav", "novelty=yes"], "novelty=yes is not accepted; give true or false."),
    ("predict", ["ckpt_path=a.ckpt", "inputs=b.wav", "top_k=all"], "top_k=all is not accepted; give an integer."),
    ("eval", ["ckpt_path=a.ckpt", "vote_threshold=half"], "vote_threshold=half is not accepted; give a number or null."),
])
def test_another_commands_own_keys_are_checked_before_the_checkpoint_is_read(command, overrides, says, tmp_path):
    proc = mgr_in_process(command, *overrides, cwd=tmp_path, data_dir=tmp_path / "data", check=False)
    assert one_error_line(proc) == f"mgr: error: {says}"


def test_cfg_job_refuses_a_wrong_type_too(tmp_path):
    proc = mgr_in_process("train", "--cfg", "job", "model.dropout=abc", cwd=tmp_path, data_dir=tmp_path / "data",
                          check=False)
    assert one_error_line(proc).startswith("mgr: error: model.dropout=abc is not accepted")


def test_hydra_full_error_shows_hydras_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(Exception, match="Error merging override model.dropout=abc"):
        mgr_in_process("train", "model.dropout=abc", cwd=tmp_path, data_dir=tmp_path / "data", check=False)
    assert os.environ["HYDRA_FULL_ERROR"] == "1"


@pytest.mark.slow  # a new interpreter: the command line as a user types it
def test_the_command_line_stops_a_wrong_value_in_one_line(tmp_path):
    proc = mgr_command("train", "trainer.max_epochs=abc", cwd=tmp_path, data_dir=tmp_path / "data", check=False)
    assert one_error_line(proc).startswith("mgr: error: trainer.max_epochs=abc is not accepted")
    assert not (tmp_path / "data").exists() and "HYDRA_FULL_ERROR" not in proc.stderr


def test_a_failed_multirun_job_lets_the_others_run_and_the_sweep_ends_with_its_error(tmp_path):
    proc = mgr_in_process("train", "-m", "seed=1,2", "data.batch_size=-1", cwd=tmp_path, data_dir=tmp_path / "data",
                          check=False)
    error = "mgr: error: data.batch_size=-1 is not accepted: it must be above 0."
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.count(error) == 3  # each job's, then the sweep's
    assert "Error executing job with overrides: ['seed=1', 'data.batch_size=-1'" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == error
