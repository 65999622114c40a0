"""Heads fitted in closed form under task=multilabel: the probe's `select` (mgr.models.heads.ProbeSelectionHead,
mgr.models.probe_selection) and the SVM heads fit one binary problem per tag (one vs rest), give per-tag
logits, choose by the validation track macro PR-AUC the run logs, and travel in checkpoints;
`model=probe task=multilabel` and `model=stats_linear_svm task=multilabel` train and test end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from conftest import NO_PLOTS, TINY_DATA, metrics_of, run_dir_of, save_checkpoint
from hf_models import save_tiny
from mgr.models import GenreClassifier, load_model
from mgr.models.heads import LinearSVMHead, MLPHead, ProbeSelectionHead, RBFSVMHead
from mgr.models.probe_selection import constant_logit, grouped_folds, logistic_regressions

sklearn_svm = pytest.importorskip("sklearn.svm")
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

WIDTHS = (4, 6, 3)  # three layers of unequal widths, side by side as encoder.layer=all gives them
TAGS = ["a", "b", "c"]
FEATURE = {"name": "descriptors", "n_fft": 256, "hop_length": 128, "n_mels": 32, "n_mfcc": 13, "n_bands": 4}
ONLY = {"logistic": {"svm_C": [], "mlp_lr": []}, "rbf_svm": {"C": [], "svm_C": [1.0, 10.0], "mlp_lr": []},
        "mlp": {"C": [], "svm_C": [], "mlp_lr": [1e-2], "mlp_hidden": 16, "mlp_epochs": 30}}


def tagged(n: int, seed: int, separating: int = 1, flips: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Three tags. Tag k is decided by coordinate k of layer `separating` (present where it is above 0, tag c
    above 1: rarer); coordinate 3 + k of that layer is a distractor, tag k itself with a share `flips` of
    its chunks flipped. The other layers are noise. Far from standardised, on purpose."""
    rng = np.random.default_rng(seed)
    parts = [rng.standard_normal((n, w)) * 3 + 10 for w in WIDTHS]
    deciding = rng.standard_normal((n, 3))
    rows = (deciding > np.array([0.0, 0.0, 1.0])).astype(np.float32)
    distractors = np.where(rng.random((n, 3)) < flips, 1 - rows, rows)
    parts[separating][:, :3] = deciding * 3 + 10
    parts[separating][:, 3:] = distractors * 3 + 10
    return torch.tensor(np.concatenate(parts, 1), dtype=torch.float32), torch.tensor(rows)


def multilabel_task(head="linear_svm", aggregation="mean_probs") -> GenreClassifier:
    """A multi-label task, for its scorer of validation logits (`_track_scorer`)."""
    return GenreClassifier(TAGS, FEATURE, 8000, 1.0, {"name": "stats"}, head, task="multilabel",
                           track_aggregation=aggregation)


def selecting_head(**settings) -> ProbeSelectionHead:
    return ProbeSelectionHead(sum(WIDTHS), 3, [(i, w) for i, w in enumerate(WIDTHS)], **settings)


def select(head: ProbeSelectionHead, x: torch.Tensor, y: torch.Tensor, tracks: torch.Tensor | None = None) -> float:
    """`head.select` by the multi-label task's own scorer; each chunk its own track unless `tracks`."""
    tracks = torch.arange(len(y)) if tracks is None else tracks
    return head.select(x, y, tracks, multilabel_task()._track_scorer)


def test_the_multilabel_selection_picks_the_layer_that_decides_the_tags_and_the_C_that_uses_it():
    """Strong regularisation (C=1e-4) leans on the distractors (each column's covariance with its tag),
    which rank worse than the deciding coordinates that C=100 finds: the one clearly best, near 1 macro
    ROC-AUC. The noise layers rank at chance."""
    x, y = tagged(300, 0)
    x_val, y_val = tagged(300, 1)
    head = selecting_head(C=[1e-4, 100.0], svm_C=[], mlp_lr=[])
    head.fit(x, y)
    ap = select(head, x_val, y_val)
    assert (head.layer, head.kind, head.setting) == ((1,), "logistic", {"C": 100.0})
    grid = {(g["layer"], g["setting"]["C"]): g for g in head.report["grid"]}
    assert set(head.report["chosen"]) == {"layer", "kind", "setting", "val_track_ap", "val_track_auc"}
    assert head.report["chosen"]["val_track_ap"] == ap == max(g["val_track_ap"] for g in grid.values())
    assert grid[(1, 100.0)]["val_track_auc"] > 0.99 and grid[(1, 1e-4)]["val_track_ap"] < ap - 0.005
    assert all(abs(grid[(layer, c)]["val_track_auc"] - 0.5) < 0.1 for layer in (0, 2) for c in (1e-4, 100.0))
    assert "PR-AUC" in head.report["rule"] and "val/track_ap" in head.report["rule"]
    assert "one binary problem per tag" in head.report["multilabel"]
    with torch.no_grad():  # per-tag logits: the task's sigmoid ranks the validation chunks as scored
        probabilities = torch.sigmoid(head(x_val)).numpy()
    assert roc_auc_score(y_val.numpy(), probabilities) == pytest.approx(grid[(1, 100.0)]["val_track_auc"])
    assert average_precision_score(y_val.numpy(), probabilities) == pytest.approx(ap)


def test_the_multilabel_scorer_is_the_runs_track_macro_pr_auc_then_roc_auc():
    """Tracks of three chunks, combined as the task combines them (mean of the chunks' probabilities):
    the scores are scikit-learn's macro average precision and ROC-AUC of the tracks, a tag without a
    positive track left out as the logged val/track_ap leaves it out."""
    rng = np.random.default_rng(0)
    track_labels = (rng.random((20, 3)) < 0.4).astype(np.float32)
    track_labels[:, 2] = 0  # no positive track: left out
    track_labels[0, :2], track_labels[1, :2] = 1, 0
    tracks = torch.arange(20).repeat_interleave(3)
    labels = torch.tensor(track_labels)[tracks]
    logits = torch.tensor(rng.standard_normal((60, 3)), dtype=torch.float32) + labels
    ap, auc = multilabel_task()._track_scorer(labels, tracks)(logits)
    track_probabilities = torch.sigmoid(logits).reshape(20, 3, 3).mean(1).numpy()
    assert ap == pytest.approx(average_precision_score(track_labels[:, :2], track_probabilities[:, :2]), abs=1e-6)
    assert auc == pytest.approx(roc_auc_score(track_labels[:, :2], track_probabilities[:, :2]), abs=1e-6)
    assert 0.6 < auc < 0.99


@pytest.mark.parametrize("kind", ["rbf_svm", "mlp"])
def test_the_svm_and_the_mlp_candidates_learn_every_tag(kind):
    """The binary RBF SVC per tag and the MLP on binary cross-entropy rank the validation chunks nearly
    perfectly on the deciding layer, which they choose."""
    x, y = tagged(300, 0, flips=0.5)  # distractors that say nothing
    x_val, y_val = tagged(300, 1, flips=0.5)
    torch.manual_seed(0)
    head = selecting_head(**ONLY[kind])
    head.fit(x, y)
    select(head, x_val, y_val)
    assert head.kind == kind and head.layer == (1,)
    assert head.report["chosen"]["val_track_auc"] > 0.97
    assert isinstance(head.chosen, RBFSVMHead if kind == "rbf_svm" else MLPHead)


def test_per_tag_logistic_regressions_are_scikit_learns_and_a_tag_without_positives_is_a_constant():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((120, 5))
    rows = np.stack([z[:, 0] + rng.standard_normal(120) > 0, z[:, 1] > 0.5, np.zeros(120), np.ones(120)], 1)
    rows = rows.astype(np.float32)
    z_new = torch.tensor(rng.standard_normal((30, 5)), dtype=torch.float32)
    linears = logistic_regressions(torch.tensor(z, dtype=torch.float32), torch.tensor(rows), [0.01, 1.0], 4)
    for c, linear in zip([0.01, 1.0], linears):
        with torch.no_grad():
            probabilities = torch.sigmoid(linear(z_new)).double().numpy()
        for tag in (0, 1):
            expected = LogisticRegression(C=c, max_iter=1000).fit(z, rows[:, tag]).predict_proba(z_new.double().numpy())
            np.testing.assert_allclose(probabilities[:, tag], expected[:, 1], atol=1e-3)  # warm start: another path
        # No positive among 120 chunks: the smoothed prevalence 0.5 / 121; no negative: 120.5 / 121.
        np.testing.assert_allclose(probabilities[:, 2], 0.5 / 121, rtol=1e-4)
        np.testing.assert_allclose(probabilities[:, 3], 120.5 / 121, rtol=1e-4)
    assert constant_logit(np.zeros(120)) == pytest.approx(np.log(0.5 / 120.5))


def per_tag_rows(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings on different scales and three tags of them, the last with no positive."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)) * np.array([0.1, 1.0, 10.0, 100.0]) + 5
    z = (x - 5) / np.array([0.1, 1.0, 10.0, 100.0])
    rows = np.stack([z[:, 0] + 0.5 * rng.standard_normal(n) > 0, z[:, 1] * z[:, 2] > 0, np.zeros(n)], 1)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(rows, dtype=torch.float32)


def test_the_rbf_svm_head_fits_one_binary_svc_per_tag_and_its_forward_is_their_decision_function():
    x, y = per_tag_rows(150)
    x_new, _ = per_tag_rows(60, seed=1)
    head = RBFSVMHead(4, 3, C=10.0, gamma=0.5)
    head.fit(x, y)
    assert bool(head.per_tag) and head.pair_coef.shape == (len(head.support_vectors), 3)
    scaler = StandardScaler().fit(x.double().numpy())
    with torch.no_grad():
        ours = head(x_new).numpy()
    for tag in (0, 1):
        svm = sklearn_svm.SVC(C=10.0, gamma=0.5).fit(scaler.transform(x.double().numpy()), y[:, tag].numpy())
        expected = svm.decision_function(scaler.transform(x_new.double().numpy()))
        assert np.abs(ours[:, tag] - expected).max() < 1e-4
    np.testing.assert_allclose(ours[:, 2], constant_logit(np.zeros(150)), rtol=1e-6)


def test_the_rbf_svm_head_chooses_by_the_tasks_scorer_and_round_trips_through_its_checkpoint(tmp_path):
    def embedded(n, seed):  # as wide as the task's descriptor statistics, the columns past 4 constant
        x, y = per_tag_rows(n, seed)
        return torch.cat([x, torch.ones(n, 60)], dim=1), y

    x, y = embedded(150, 0)
    x_val, y_val = embedded(100, 1)
    task = multilabel_task({"name": "rbf_svm", "C": [10.0], "gamma": [0.001, 0.5]})
    task.head.fit(x, y)
    score = task._track_scorer(y_val, torch.arange(100))
    with torch.no_grad():
        scores = {setting["gamma"]: score(task.head(x_val)) for setting in task.head.candidates()}
    # The known best: gamma=0.001 is all but linear, and tag b (the signs of two columns agree) is not.
    assert scores[0.5][0] > scores[0.001][0] + 0.1
    assert task.head.select(x_val, y_val, score) == pytest.approx(scores[0.5][0])
    assert float(task.head.gamma) == 0.5
    save_checkpoint(task, tmp_path / "svm.ckpt")
    restored = load_model(tmp_path / "svm.ckpt")
    assert restored.multilabel and bool(restored.head.per_tag)
    with torch.no_grad():
        torch.testing.assert_close(restored.head(x_val), task.head(x_val))


def test_the_linear_svm_head_fits_one_binary_svm_per_tag():
    x, y = per_tag_rows(150)
    x_new, _ = per_tag_rows(40, seed=1)
    head = LinearSVMHead(4, 3, C=1.0)
    assert 0.5 < head.fit(x, y) <= 1.0
    scaler = StandardScaler().fit(x.double().numpy())
    with torch.no_grad():
        ours = head(x_new).double().numpy()
    for tag in (0, 1):
        svm = sklearn_svm.LinearSVC(C=1.0, max_iter=10000, random_state=0)
        svm.fit(scaler.transform(x.double().numpy()), y[:, tag].numpy() > 0.5)
        np.testing.assert_allclose(ours[:, tag], svm.decision_function(scaler.transform(x_new.double().numpy())),
                                   atol=1e-4)
    np.testing.assert_allclose(ours[:, 2], constant_logit(np.zeros(150)), rtol=1e-5)


def test_multilabel_folds_stratify_by_the_rarest_label_and_keep_groups_whole():
    """folds=3 over multi-label chunks of 5-chunk tracks: every chunk held out once, no track on two sides,
    the rare tag (c) in every fold; the choice is the deciding layer, refitted on train + val."""
    def chunks_of_tracks(n_tracks, seed):  # 5 chunks a track, near their track's embedding
        x, y = tagged(n_tracks, seed)
        noise = torch.randn(5 * n_tracks, x.shape[1], generator=torch.Generator().manual_seed(seed)) * 0.1
        return x.repeat_interleave(5, 0) + noise, y.repeat_interleave(5, 0)

    x, y = chunks_of_tracks(60, 0)
    x_val, y_val = chunks_of_tracks(30, 1)
    tracks, tracks_val = torch.arange(300) // 5, torch.arange(150) // 5
    folds = grouped_folds(torch.cat([y, y_val]), torch.cat([tracks, tracks_val + 60]), 3)
    assert sorted(np.concatenate([test for _, test in folds])) == list(range(450))
    for train, test in folds:
        groups = torch.cat([tracks, tracks_val + 60])
        assert not set(groups[train].tolist()) & set(groups[test].tolist())
        assert torch.cat([y, y_val])[test][:, 2].sum() > 0
    head = selecting_head(C=[1e-4, 100.0], svm_C=[], mlp_lr=[], folds=3)
    head.fit(x, y, tracks)
    select(head, x_val, y_val, tracks_val)
    assert head.layer == (1,) and head.report["folds"] == 3 and "cross-validation" in head.report["rule"]
    assert head.report["chosen"]["val_track_auc"] > 0.95


@pytest.mark.parametrize("kind", ["logistic", "rbf_svm", "mlp"])
def test_the_multilabel_choice_round_trips_through_the_state_dict(kind):
    x, y = tagged(200, 0, flips=0.5)
    x_val, y_val = tagged(100, 1, flips=0.5)
    torch.manual_seed(0)
    head = selecting_head(**ONLY[kind])
    head.fit(x, y)
    select(head, x_val, y_val)
    restored = selecting_head(**ONLY[kind])
    restored.load_state_dict(head.state_dict())
    restored.eval()  # an MLP's dropout off, as every evaluation has it
    assert (restored.layer, restored.kind, restored.setting, restored.report) == \
        (head.layer, head.kind, head.setting, head.report)
    with torch.no_grad():
        logits = head(x_val)
        assert logits.shape == (100, 3)
        torch.testing.assert_close(restored(x_val), logits)


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    return save_tiny("clap", tmp_path_factory.mktemp("clap"))  # layers of widths 16, 32, 32


@pytest.mark.slow
def test_model_probe_trains_and_tests_under_task_multilabel(clap_dir, run_mgr):
    """`model=probe task=multilabel` on the tiny multi-label synth: the select head chooses by the
    validation track macro PR-AUC (the chosen candidate's is the run's val/track_ap), and the task's
    per-tag temperatures, thresholds and test report work on its per-tag logits."""
    proc = run_mgr("train", "model=probe", "task=multilabel", "encoder=clap_htsat", f"encoder.weights={clap_dir}",
                   "model.head={name: select, C: [0.1, 10.0], svm_C: [1.0], mlp_lr: [0.001], mlp_epochs: 5}",
                   *TINY_DATA, *NO_PLOTS, "trainer.enable_progress_bar=false")
    metrics = metrics_of(proc)
    report = metrics["head"]
    assert len(report["grid"]) == 7 * (2 + 1 + 1)  # 3 layers, the descriptors, 3 fusions
    assert {g["kind"] for g in report["grid"]} == {"logistic", "rbf_svm", "mlp"}
    assert "PR-AUC" in report["rule"] and "one binary problem per tag" in report["multilabel"]
    chosen = report["chosen"]
    assert chosen["val_track_ap"] == max(g["val_track_ap"] for g in report["grid"]) and chosen in report["grid"]
    with open(run_dir_of(proc) / "csv" / "metrics.csv", newline="") as f:
        (logged,) = [float(row["val/track_ap"]) for row in csv.DictReader(f) if row.get("val/track_ap")]
    assert chosen["val_track_ap"] == pytest.approx(logged, abs=1e-6)  # one validation: the number the run logged
    assert metrics["task"] == "multilabel" and 0 <= metrics["test/track_auc"] <= 1
    assert len(metrics["thresholds"]) == 5 and len(metrics["temperature_fit"]["temperature"]) == 5
    model = load_model(metrics["best_checkpoint"])
    assert model.multilabel and model.head.kind == chosen["kind"]
    assert json.loads(json.dumps(model.head.report)) == report


@pytest.mark.slow
@pytest.mark.parametrize("model", ["stats_linear_svm", "stats_rbf_svm"])
def test_the_svm_baselines_train_and_test_under_task_multilabel(run_mgr, model):
    """One pass of the SVM baselines on the tiny multi-label synth: one binary SVM per tag, tested as any
    multi-label model (thresholds, per-tag temperatures)."""
    proc = run_mgr("train", f"model={model}", "task=multilabel", "feature=descriptors", *TINY_DATA,
                   *[f"feature.{k}={v}" for k, v in FEATURE.items() if k != "name"], "model.head.passes=1",
                   *NO_PLOTS, "trainer.enable_progress_bar=false")
    metrics = metrics_of(proc)
    assert metrics["task"] == "multilabel" and 0.5 < metrics["test/track_auc"] <= 1
    assert len(metrics["thresholds"]) == 5 and len(metrics["temperature_fit"]["temperature"]) == 5
    head = load_model(metrics["best_checkpoint"]).head
    assert head.weight.shape[0] == 5 if model == "stats_linear_svm" else bool(head.per_tag)
