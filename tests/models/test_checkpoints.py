"""Checkpoints are data (mgr.models.checkpoints): one that names code, or a class outside mgr, is
refused before anything runs; checkpoints of the 2026-11 model classes load into today's task and
give the same logits, and training cannot resume from them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from conftest import mgr_in_process
from mgr import MGRError
from mgr.models import GenreClassifier, load_model, read_checkpoint


OLD = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints_2026_11"


# expected_logits.pt was computed on another CPU: vector units of another width sum in another
# order, so float32 logits of magnitude ~1 differ there in the last bits (measured: up to 2.4e-7,
# about 2 ulps). 1e-5 allows 40x that; a weight loaded into the wrong place, or not at all, moves
# logits by orders of magnitude more (the second test shows 0.1 % on one layer is caught).
LOGIT_ATOL = 1e-5


@pytest.mark.parametrize("name,net", [("cnn", "cnn"), ("crnn", "crnn"), ("stats_linear_svm", "stats")])
def test_old_checkpoints_load_and_give_the_logits_they_gave(name, net):
    expected = torch.load(OLD / "expected_logits.pt", weights_only=True)
    model = load_model(OLD / f"{name}.ckpt").eval()
    assert model.hparams.net["name"] == net
    with torch.no_grad():
        torch.testing.assert_close(model(expected["wave"]), expected[name], rtol=0, atol=LOGIT_ATOL)


@pytest.mark.parametrize("name", ["cnn", "crnn", "stats_linear_svm"])
def test_the_logit_tolerance_catches_a_slightly_wrong_weight(name):
    expected = torch.load(OLD / "expected_logits.pt", weights_only=True)
    model = load_model(OLD / f"{name}.ckpt").eval()
    with torch.no_grad():
        model.head.weight.mul_(1.001)
        assert not torch.allclose(model(expected["wave"]), expected[name], rtol=0, atol=LOGIT_ATOL)


def test_the_svm_under_its_first_name_loads_too(tmp_path):
    checkpoint = torch.load(OLD / "stats_linear_svm.ckpt", weights_only=True)
    torch.save({**checkpoint, "mgr_model": "MFCCSVM"}, tmp_path / "mfcc_svm.ckpt")
    assert load_model(tmp_path / "mfcc_svm.ckpt").hparams.head["name"] == "linear_svm"


def test_resuming_from_an_old_checkpoint_is_refused():
    model = load_model(OLD / "cnn.ckpt")
    old = torch.load(OLD / "cnn.ckpt", weights_only=True)
    with pytest.raises(MGRError, match="before 2026-12.*cannot resume"):
        model.on_load_checkpoint(old)
    model.on_load_checkpoint(read_checkpoint(OLD / "cnn.ckpt"))  # today's layout: accepted


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(MGRError, match="does not exist"):
        load_model(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(MGRError, match="not an mgr checkpoint"):
        load_model(tmp_path / "other.ckpt")


class RunsACommand:
    """What a malicious pickle does: unpickling calls os.system(command)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.fixture(scope="module")
def genuine(trained_run) -> dict:
    return read_checkpoint(json.loads((trained_run / "metrics.json").read_text())["best_checkpoint"])


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path, zip_format):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "mgr_model": "GenreClassifier", "payload": RunsACommand(f"touch {marker}")}, path,
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(MGRError, match=r"Refused to load .*evil\.ckpt: it names posix\.system"):
        load_model(path)
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "change",
    [
        {"mgr_model": "os.system"},
        {"mgr_model": "builtins.eval"},
        # Lightning CLI's keys; Lightning itself would run an allowlisted instantiator on any class path.
        {"hyper_parameters": {"_instantiator": "pytorch_lightning.cli.instantiate_module", "_class_path": "os.system"}},
        {"hyper_parameters": {"feature": {"name": "mel", "_target_": "subprocess.call"}}},
        {"datamodule_hyper_parameters": {"source_options": {"_target_": "os.system"}}},
    ],
)
def test_a_checkpoint_naming_a_class_outside_mgr_is_refused(genuine, tmp_path, change):
    crafted = dict(genuine)
    for key, value in change.items():
        crafted[key] = {**genuine.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "crafted.ckpt"
    torch.save(crafted, path)
    with pytest.raises(MGRError, match="Refused to load .*mgr builds only its own classes"):
        load_model(path)


@pytest.mark.slow
def test_the_genuine_checkpoint_loads(genuine, tmp_path):
    path = tmp_path / "copy.ckpt"
    torch.save(genuine, path)
    assert isinstance(load_model(path), GenreClassifier)


@pytest.mark.slow
def test_not_a_checkpoint_and_not_mgr_are_clear_errors(genuine, tmp_path):
    (tmp_path / "text.ckpt").write_text("hello")
    with pytest.raises(MGRError, match="not a readable PyTorch checkpoint"):
        load_model(tmp_path / "text.ckpt")
    torch.save({k: v for k, v in genuine.items() if k != "mgr_model"}, tmp_path / "other.ckpt")
    with pytest.raises(MGRError, match="is not an mgr checkpoint"):
        load_model(tmp_path / "other.ckpt")


def test_predict_refuses_a_malicious_checkpoint_in_one_sentence(tmp_path, data_dir):
    marker = tmp_path / "ran"
    torch.save({"state_dict": {}, "payload": RunsACommand(f"touch {marker}")}, tmp_path / "evil.ckpt")
    (tmp_path / "song.wav").write_bytes(b"")
    proc = mgr_in_process("predict", f"ckpt_path={tmp_path / 'evil.ckpt'}", f"inputs={tmp_path / 'song.wav'}",
                       cwd=tmp_path, data_dir=data_dir, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mgr: error:")]
    assert len(errors) == 1 and "Refused to load" in errors[0] and "posix.system" in errors[0], proc.stderr
    assert not marker.exists()
