"""Checkpoints are data (mgr.models.checkpoints): one that names code, or a class outside mgr, is
refused before anything runs, also from a URL, which is read only with its digest; a checkpoint is
written whole or not at all, and a torn one is one sentence; checkpoints of the 2026-11 model classes load into today's task and
give the same logits, and training cannot resume from them; checkpoints of the one-class task of
2026-12-07 (before the task was split by way of training) load, give the same logits and resume."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from conftest import mgr_in_process
from mgr import MGRError
from mgr.models import CheckpointIO, GenreClassifier, load_model, read_checkpoint
from mgr.models.checkpoints import save_atomically
from mgr.models.task import FittedClassifier, TrainedClassifier


OLD = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints_2026_11"
ONE_CLASS = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints_2026_12"
_spec = importlib.util.spec_from_file_location("make_checkpoints_2026_12", ONE_CLASS / "make_checkpoints.py")
one_class_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(one_class_script)


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


@pytest.mark.parametrize("name,task", [("cnn_vote", TrainedClassifier), ("stats_linear_svm", FittedClassifier),
                                       ("stats_rbf_svm", FittedClassifier)])
def test_checkpoints_of_the_one_class_task_load_and_give_the_logits_they_gave(name, task):
    expected = torch.load(ONE_CLASS / "expected_logits.pt", weights_only=True)
    stored = torch.load(ONE_CLASS / f"{name}.ckpt", weights_only=True)["hyper_parameters"]
    for model in (load_model(ONE_CLASS / f"{name}.ckpt"), GenreClassifier.load_from_checkpoint(ONE_CLASS / f"{name}.ckpt")):
        assert type(model) is task  # the head's way of training, from the hyperparameters alone
        assert (model.track_aggregation.name, model.track_aggregation.vote_threshold) == \
            (stored["track_aggregation"], stored["vote_threshold"])
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(expected["wave"]), expected[name], rtol=0, atol=LOGIT_ATOL)


@pytest.mark.parametrize("name", list(one_class_script.MODELS))
def test_runs_of_the_one_class_task_resume_from_their_checkpoints(name):
    path = ONE_CLASS / f"{name}.ckpt"
    stored = torch.load(path, weights_only=True)
    model = load_model(path)
    trainer = pl.Trainer(max_epochs=stored["epoch"] + 1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         accelerator="cpu", plugins=[CheckpointIO()])
    trainer.fit(model, one_class_script.loader(24, 0), one_class_script.loader(12, 1), ckpt_path=path)
    assert trainer.current_epoch == stored["epoch"] + 1
    assert trainer.global_step == stored["global_step"] + 3  # the steps counted on from where they were


def test_the_svm_under_its_first_name_loads_too(tmp_path):
    checkpoint = torch.load(OLD / "stats_linear_svm.ckpt", weights_only=True)
    torch.save({**checkpoint, "mgr_model": "MFCCSVM"}, tmp_path / "mfcc_svm.ckpt")
    assert load_model(tmp_path / "mfcc_svm.ckpt").hparams.head["name"] == "linear_svm"


def test_resuming_from_an_old_checkpoint_is_refused():
    model = load_model(OLD / "cnn.ckpt")
    for old in (torch.load(OLD / "cnn.ckpt", weights_only=True), read_checkpoint(OLD / "cnn.ckpt")):  # raw, upgraded
        with pytest.raises(MGRError, match="before 2026-12.*cannot resume"):
            model.on_load_checkpoint(old)
    today = {}
    model.on_save_checkpoint(today)
    model.on_load_checkpoint(today)  # today's layout: accepted


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


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A folder served over HTTP on 127.0.0.1, and an empty checkpoint cache."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("MGR_CHECKPOINT_CACHE", str(tmp_path / "cache"))
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_checkpoint_url_runs_no_code(served, tmp_path):
    root, url = served
    marker = tmp_path / "ran"
    torch.save({"state_dict": {}, "mgr_model": "GenreClassifier", "payload": RunsACommand(f"touch {marker}")},
               root / "evil.ckpt")
    with pytest.raises(MGRError, match=r"only over http\(s\) and with its SHA-256 digest"):
        GenreClassifier.load_from_checkpoint(f"{url}/evil.ckpt")  # no digest: nothing is fetched
    assert not (tmp_path / "cache").exists()
    with pytest.raises(MGRError, match=r"Refused to load .*names posix\.system"):
        GenreClassifier.load_from_checkpoint(f"{url}/evil.ckpt#sha256={sha256(root / 'evil.ckpt')}")
    assert not marker.exists()


def test_a_checkpoint_url_is_verified_then_read_as_a_local_file(served):
    root, url = served
    torch.save(torch.load(OLD / "cnn.ckpt", weights_only=True), root / "cnn.ckpt")
    with pytest.raises(MGRError, match="does not match its published sha256 checksum"):
        load_model(f"{url}/cnn.ckpt#sha256={'0' * 64}")
    model = GenreClassifier.load_from_checkpoint(f"{url}/cnn.ckpt#sha256={sha256(root / 'cnn.ckpt')}")
    assert model.hparams.net["name"] == "cnn"
    (root / "cnn.ckpt").unlink()  # read from the cache from now on
    assert load_model(f"{url}/cnn.ckpt#sha256={sha256(OLD / 'cnn.ckpt')}").hparams.net["name"] == "cnn"
    with pytest.raises(MGRError, match="Refused to read the checkpoint s3://"):
        load_model("s3://bucket/cnn.ckpt")


def test_train_refuses_a_checkpoint_url_before_any_work(served, tmp_path, data_dir):
    root, url = served
    marker = tmp_path / "ran"
    torch.save({"state_dict": {}, "mgr_model": "GenreClassifier", "payload": RunsACommand(f"touch {marker}")},
               root / "evil.ckpt")
    for ckpt in (f"{url}/evil.ckpt", f"'{url}/evil.ckpt#sha256={sha256(root / 'evil.ckpt')}'"):  # quoted for Hydra
        proc = mgr_in_process("train", f"ckpt_path={ckpt}", f"paths.data_dir={tmp_path / 'data'}", cwd=tmp_path,
                              data_dir=data_dir, check=False)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("mgr: error:")]
        assert proc.returncode == 1 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "posix.system" in errors[0]
    assert not marker.exists() and not (tmp_path / "data").exists()  # stopped before any data work


def test_a_torn_checkpoint_is_one_sentence_naming_it(tmp_path, data_dir):
    torn = tmp_path / "last.ckpt"
    torn.write_bytes((OLD / "cnn.ckpt").read_bytes()[:5000])
    with pytest.raises(MGRError, match=r"last\.ckpt is not a readable PyTorch checkpoint .*truncated"):
        CheckpointIO().load_checkpoint(torn)  # Lightning's resume and test read through it
    proc = mgr_in_process("train", f"ckpt_path={torn}", f"paths.data_dir={tmp_path / 'data'}", cwd=tmp_path,
                          data_dir=data_dir, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mgr: error:")]
    assert proc.returncode == 1 and len(errors) == 1 and str(torn) in errors[0] and "Traceback" not in proc.stderr


def test_the_bare_state_dict_ddp_spawn_hands_back_is_read_and_nothing_else_bare(tmp_path):
    """ddp_spawn's rank 0 writes the trained weights as a bare state dict, the probe's choice as its head's
    extra state (plain values); the main process reads it through CheckpointIO. Any other dict is checked as
    an mgr checkpoint."""
    weights = {"head.chosen.weight": torch.ones(2, 3), "head._extra_state": {"kind": "logistic", "layer": [5]}}
    torch.save(weights, tmp_path / ".temp.ckpt")
    assert CheckpointIO().load_checkpoint(tmp_path / ".temp.ckpt")["head._extra_state"]["layer"] == [5]
    torch.save({**weights, "extra": {"kind": "x"}}, tmp_path / "other.ckpt")
    with pytest.raises(MGRError, match="is not an mgr checkpoint"):
        CheckpointIO().load_checkpoint(tmp_path / "other.ckpt")


def test_a_checkpoint_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    import errno

    path = tmp_path / "checkpoints" / "last.ckpt"
    save_atomically({"epoch": 1}, path)
    real_save = torch.save

    def fills_the_disk(obj, f):
        real_save(obj, f)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", fills_the_disk)
    with pytest.raises(MGRError, match=r"the disk holding .*checkpoints is full .*MB free"):
        CheckpointIO().save_checkpoint({"epoch": 2}, path)
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left
    assert torch.load(path, weights_only=True) == {"epoch": 1}  # the previous checkpoint, whole


def tiny_checkpoint(path: Path, **hparams) -> Path:
    """A tiny untrained CNN's checkpoint, its stored hyperparameters changed by `hparams`."""
    from conftest import save_checkpoint

    model = GenreClassifier(["a", "b"], {"name": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 32}, 8000, 1.0,
                            {"name": "cnn", "channels": [4, 8, 8], "hidden": 8})
    save_checkpoint(model, path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"] = {**checkpoint["hyper_parameters"], **hparams}
    torch.save(checkpoint, path)
    return path


ABSURD = {
    # 10^6 channels: 9e12 parameters, 36 TB
    "net": ({"net": {"name": "cnn", "channels": [10**6, 10**6, 8], "hidden": 8}}, r"ask for 9,\d{3},\d{3},\d{3},\d{3} parameters"),
    # 10^8 s at 8 kHz: a 3.2 TB chunk, and its feature map
    "chunk": ({"chunk_seconds": 1e8}, r"GiB of activations per chunk \(mgr builds at most 1,000,000,000 and 16 GiB\)"),
    # a hop of one sample over 2.8 hours: a frame per sample, tens of GiB through frontend and net
    "hop": ({"chunk_seconds": 10**4, "feature": {"name": "mel", "n_fft": 256, "hop_length": 1, "n_mels": 32}},
            r"\d GiB of activations per chunk"),
    # constant-Q filters from 0.01 Hz: 13 million samples each at 8 kHz (numpy would ask for tens of GiB)
    "cqt": ({"feature": {"name": "cqt", "fmin": 0.01, "n_bins": 12, "hop_length": 128}},
            r"its constant-Q filters \(fmin=0.01, bins_per_octave=12, filter_scale=1.0, 12 bins\) would hold 1.61e\+08"),
    # the filter banks themselves: a 2^30-point FFT
    "n_fft": ({"feature": {"name": "mel", "n_fft": 2**30, "hop_length": 128, "n_mels": 32}},
              r"its feature settings n_fft=1073741824 are beyond what mgr builds \(at most 8192 for a size"),
}


@pytest.mark.parametrize("case", ABSURD)
def test_a_checkpoint_asking_for_an_absurd_model_is_refused_before_anything_is_built(tmp_path, case):
    import resource
    import time

    hparams, message = ABSURD[case]
    path = tiny_checkpoint(tmp_path / "absurd.ckpt", **hparams)
    peak_before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.monotonic()
    with pytest.raises(MGRError, match=rf"^Refused to build the model of {path}: .*{message}"):
        load_model(path)
    assert time.monotonic() - start < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 200 * 1024  # kB: nothing large allocated


def test_a_sane_checkpoint_is_sized_quickly_and_loads(tmp_path):
    import time

    from mgr.models.sizing import check_model_size

    path = tiny_checkpoint(tmp_path / "sane.ckpt", chunk_seconds=1.0)
    hparams = torch.load(path, weights_only=True)["hyper_parameters"]
    start = time.monotonic()
    check_model_size(hparams, path)
    assert time.monotonic() - start < 0.5
    assert load_model(path).hparams.net["name"] == "cnn"


@pytest.mark.parametrize("feature", ["mel", "stft", "mfcc", "cqt", "vqt", "chroma", "tempogram", "descriptors",
                                     "gammatone"])
def test_every_net_and_feature_can_be_sized_on_the_meta_device(feature):
    """check_model_size runs frontend and net on PyTorch's meta device: every op of every shipped net
    and frontend must work there, or a sane checkpoint could not load."""
    from mgr.models.sizing import check_model_size
    from mgr.nets import NETS

    for net in NETS:
        check_model_size({"class_names": ["a", "b"], "feature": {"name": feature}, "sample_rate": 22050,
                          "chunk_seconds": 3.0, "net": {"name": net}}, "sane.ckpt")


def test_an_infinite_chunk_length_or_a_zero_frequency_is_one_sentence(tmp_path):
    path = tiny_checkpoint(tmp_path / "infinite.ckpt", chunk_seconds=float("inf"))
    with pytest.raises(MGRError, match=r"does not fit mgr's GenreClassifier: cannot convert float infinity"):
        load_model(path)
    path = tiny_checkpoint(tmp_path / "zero.ckpt", feature={"name": "cqt", "fmin": 0.0, "hop_length": 128})
    with pytest.raises(MGRError, match=r"does not fit mgr's GenreClassifier: float division by zero"):
        load_model(path)
