"""The RBF SVM head (`rbf_svm`): its torch forward is scikit-learn's decision function, it
chooses C and gamma on validation as benchmarks/suite/reference.py's reference does, the task's
loop lets it choose before validation scores it, and a fitted head travels in a checkpoint
of plain tensors. One end-to-end run of model=stats_rbf_svm feature=descriptors."""

from __future__ import annotations

import importlib.util
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from conftest import NO_PLOTS, TINY_DATA, metrics_of, run_dir_of
from mgr.models import GenreClassifier, load_model
from mgr.models.heads import RBFSVMHead
from mgr.models.task import CHECKPOINT_TAG

sklearn_svm = pytest.importorskip("sklearn.svm")
from sklearn.preprocessing import StandardScaler  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "suite" / "reference.py"
spec = importlib.util.spec_from_file_location("suite_reference", SCRIPT)
reference_script = importlib.util.module_from_spec(spec)
sys.modules.setdefault("suite_reference", reference_script)
spec.loader.exec_module(reference_script)

SR = 8000
FEATURE = {"name": "descriptors", "n_fft": 256, "hop_length": 128, "n_mels": 32, "n_mfcc": 13, "n_bands": 4}
DIM = 2 * (13 + 5 + 12 + 1 + 1)


def blobs(n: int, classes: int, dim: int = 6, spread: float = 1.5, seed: int = 0):
    """Overlapping Gaussian classes on different scales, labels 0..classes-1."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.standard_normal((n, dim)) * spread + rng.standard_normal((classes, dim))[y] * 2
    return torch.tensor(x * np.linspace(0.1, 100, dim), dtype=torch.float32), torch.tensor(y)


@pytest.mark.parametrize("classes, out", [(3, 3), (5, 6)])  # (5, 6): a class with no training data
def test_forward_equals_sklearn_decision_function(classes, out):
    x, y = blobs(150, classes)
    head = RBFSVMHead(x.shape[1], out, C=10.0, gamma=0.1)
    head.fit(x, y)
    scaler = StandardScaler().fit(x.double().numpy())
    svm = sklearn_svm.SVC(C=10.0, gamma=0.1, kernel="rbf").fit(scaler.transform(x.double().numpy()), y.numpy())
    new, _ = blobs(80, classes, seed=1)
    expected = svm.decision_function(scaler.transform(new.double().numpy()))  # decision_function_shape="ovr"
    with torch.no_grad():
        ours = head(new).numpy()
    assert np.abs(ours[:, :classes] - expected).max() < 1e-4
    assert (ours[:, classes:] == 0).all() and (ours.argmax(1) < classes).all()


@pytest.mark.parametrize("classes", [2, 3])
def test_precomputed_kernels_give_libsvms_svms_to_its_tolerance(classes):
    """precompute=True (the select probe's): kernel matrices by BLAS, the same SVMs as libsvm's own
    kernel within its stopping tolerance, and the same choice on validation."""
    x, y = blobs(200, classes, seed=2)
    heads = [RBFSVMHead(x.shape[1], classes, C=[0.1, 10.0], gamma=[0.01, 0.1], precompute=p) for p in (False, True)]
    for head in heads:
        head.fit(x[:150], y[:150])
    accuracies = [head.select(x[150:], y[150:]) for head in heads]
    assert accuracies[0] == accuracies[1]
    assert (float(heads[1].chosen_C), float(heads[1].gamma)) == (float(heads[0].chosen_C), float(heads[0].gamma))
    torch.testing.assert_close(heads[1].support_vectors, heads[0].support_vectors)
    with torch.no_grad():
        torch.testing.assert_close(heads[1](x), heads[0](x), atol=1e-3, rtol=0)


def test_binary_forward_predicts_as_sklearn():
    x, y = blobs(100, 2)
    head = RBFSVMHead(x.shape[1], 2, C=1.0, gamma=0.1)
    head.fit(x, y)
    scaler = StandardScaler().fit(x.double().numpy())
    svm = sklearn_svm.SVC(C=1.0, gamma=0.1).fit(scaler.transform(x.double().numpy()), y.numpy())
    with torch.no_grad():
        scores = head(x).numpy()
    decision = svm.decision_function(scaler.transform(x.double().numpy()))  # > 0: class 1
    assert (scores.argmax(1) == svm.predict(scaler.transform(x.double().numpy()))).all()
    assert (np.sign(scores[:, 1] - scores[:, 0]) == np.sign(decision)).all()


def test_selection_on_validation_picks_what_the_reference_grid_picks():
    """The head's C and gamma are those of benchmarks/suite/reference.py's fit_and_score on the same
    embeddings (its grids, the model config's; ties: smaller C, then smaller gamma)."""
    config = yaml.safe_load(files("mgr.conf").joinpath("model/stats_rbf_svm.yaml").read_text())["head"]
    assert (tuple(config["C"]), tuple(config["gamma"])) == (reference_script.C_GRID, reference_script.GAMMA_GRID)
    for seed in range(3):
        x, y = blobs(240, 4, spread=3.0, seed=seed)
        split = {"train": slice(0, 120), "val": slice(120, 180), "test": slice(180, 240)}
        xs = {k: x[s].double().numpy() for k, s in split.items()}
        ys = {k: y[s].numpy() for k, s in split.items()}
        reference = reference_script.fit_and_score(xs, ys, {k: np.arange(len(v)) for k, v in ys.items()})
        head = RBFSVMHead(x.shape[1], 4, C=config["C"], gamma=config["gamma"])
        head.fit(x[split["train"]], y[split["train"]])
        assert head.select(x[split["val"]], y[split["val"]]) == pytest.approx(reference["val_clip_acc"])
        assert (float(head.chosen_C), float(head.gamma)) == pytest.approx((reference["C"], reference["gamma"]))
        with torch.no_grad():
            accuracy = (head(x[split["test"]]).argmax(1) == y[split["test"]]).double().mean().item()
        assert accuracy == pytest.approx(reference["test_clip_acc"])


def tiny_task(**head) -> GenreClassifier:
    return GenreClassifier(["a", "b", "c"], FEATURE, SR, 1.0, {"name": "stats"},
                           {"name": "rbf_svm", "C": [0.1, 100.0], "gamma": [0.001, 0.1], **head})


def noise_classes(n: int, seed: int, levels=(0.01, 0.1, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes of noise that differ in loudness and colour, one second each."""
    torch.manual_seed(seed)
    wave = torch.randn(n, SR) * torch.tensor(levels).repeat(n)[:n, None]
    wave[1::3] = torch.cumsum(wave[1::3], dim=1) * 0.05
    return wave, torch.arange(n) % 3


def test_the_task_lets_the_head_choose_on_validation_before_scoring_it():
    model = tiny_task()
    close = (0.5, 0.6, 0.7)  # loudness levels close enough that the grid's SVMs score differently
    train, (val_wave, val_y) = noise_classes(30, 0, close), noise_classes(24, 1, close)
    loaders = [DataLoader(TensorDataset(w, t, torch.arange(len(t))), batch_size=8)
               for w, t in (train, (val_wave, val_y))]
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu")
    trainer.fit(model, *loaders)
    with torch.no_grad():
        x_train, x_val = model.embed(train[0]), model.embed(val_wave)
    direct = RBFSVMHead(DIM, 3, C=[0.1, 100.0], gamma=[0.001, 0.1])
    direct.fit(x_train, train[1])
    first = float(direct(x_val).argmax(1).eq(val_y).double().mean())  # what an unselected head scores
    best = direct.select(x_val, val_y)
    assert (float(direct.chosen_C), float(direct.gamma)) != (0.1, 0.001) and best > first
    assert (float(model.head.chosen_C), float(model.head.gamma)) == (float(direct.chosen_C), float(direct.gamma))
    assert trainer.callback_metrics["val/acc"].item() == pytest.approx(best)  # scored by the chosen SVM
    assert trainer.global_step == 4  # the placeholder optimizer counted the steps


def test_fitted_head_saves_and_loads_through_load_model(tmp_path):
    model = tiny_task(C=10.0, gamma=0.01).eval()
    wave, target = noise_classes(30, 0)
    with torch.no_grad():
        model.head.fit(model.embed(wave), target)
        logits = model(wave)
    assert model.head.support_vectors.shape[0] > 0
    path = tmp_path / "svm.ckpt"
    torch.save({"mgr_model": CHECKPOINT_TAG, "hyper_parameters": dict(model.hparams),
                "state_dict": model.state_dict()}, path)
    restored = load_model(path).eval()  # a fresh task: its SVM buffers are empty until loaded
    assert restored.head.support_vectors.shape == model.head.support_vectors.shape
    with torch.no_grad():
        assert torch.equal(restored(wave), logits)
    assert (float(restored.head.gamma), float(restored.head.chosen_C)) == pytest.approx((0.01, 10.0))


@pytest.mark.slow
def test_train_eval_and_predict_of_the_classic_baseline(run_mgr, data_dir):
    """model=stats_rbf_svm feature=descriptors trains, validates, saves and tests; mgr.eval of its
    checkpoint gives the same test metrics, mgr.predict labels a file."""
    proc = run_mgr("train", "model=stats_rbf_svm", "feature=descriptors", *TINY_DATA,
                   *[f"feature.{k}={v}" for k, v in FEATURE.items() if k != "name"], "data.train_chunks_per_track=3",
                   "trainer.enable_progress_bar=false", *NO_PLOTS)
    assert "Test results (best checkpoint)" in proc.stdout
    assert "RBF SVM chosen on" in (run_dir_of(proc) / "train.log").read_text()
    metrics = metrics_of(proc)
    assert metrics["test/track_acc"] >= 0.6, metrics  # chance: 0.2
    evaluation = metrics_of(run_mgr("eval", f"ckpt_path={metrics['best_checkpoint']}"))
    for key in ("test/acc", "test/f1", "test/track_acc", "test/track_f1", "test/loss"):
        assert evaluation[key] == pytest.approx(metrics[key], abs=1e-6), key
    audio = sorted(data_dir.rglob("*.wav"))[0]
    predicted = run_mgr("predict", f"ckpt_path={metrics['best_checkpoint']}", f"inputs=[{audio}]")
    assert "Labelled 1 file(s), 0 failed" in predicted.stdout
