"""The `select` probe head (mgr.models.heads.ProbeSelectionHead, mgr.models.probe_selection): it
chooses the layer and the candidate on validation, breaks ties toward the simpler candidate, trains
its MLPs deterministically, keeps the chosen layer's training standardisation and the grid's scores
in a checkpoint of plain values, and `model=probe` alone runs it, metrics.json saying what it chose."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import NO_PLOTS, TINY_DATA, compose_resolved, metrics_of, run_dir_of, save_checkpoint
from hf_models import save_tiny
from mgr.models import GenreClassifier, load_model
from mgr.models.heads import MLPHead, ProbeSelectionHead, RBFSVMHead, standardisation

pytest.importorskip("sklearn")

WIDTHS = (4, 6, 3)  # three layers of unequal widths, side by side as encoder.layer=all gives them
ONLY = {"logistic": {"svm_C": [], "mlp_lr": []}, "rbf_svm": {"C": [], "svm_C": [1.0, 10.0]},
        "mlp": {"C": [], "svm_C": [], "mlp_lr": [1e-3, 1e-2], "mlp_hidden": 8, "mlp_epochs": 20}}


def layers(n: int, seed: int, separating: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes, 3:1. Layer `separating` holds each class around its own centre; the others are noise."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 4 == 0).astype(int)
    parts = [rng.standard_normal((n, w)) * 3 + 10 for w in WIDTHS]  # far from standardised, on purpose
    parts[separating] += np.where(y == 1, 8.0, -8.0)[:, None]
    return torch.tensor(np.concatenate(parts, 1), dtype=torch.float32), torch.tensor(y)


def by_chunk(y: torch.Tensor, _tracks=None):
    """A scorer_for that takes each chunk for its own track: track and chunk accuracy are the same."""
    def score(logits):
        accuracy = (logits.argmax(1) == y).float().mean().item()
        return accuracy, accuracy
    return score


def select(head: ProbeSelectionHead, x: torch.Tensor, y: torch.Tensor, scorer_for=by_chunk) -> float:
    """`head.select` on chunks that are each their own track."""
    return head.select(x, y, torch.arange(len(y)), scorer_for)


def same_score(*_):
    return lambda logits: (0.5, 0.5)  # every candidate scores the same


def selecting_head(**settings) -> ProbeSelectionHead:
    return ProbeSelectionHead(sum(WIDTHS), 2, [(i, w) for i, w in enumerate(WIDTHS)], **settings)


@pytest.mark.parametrize("separating", [1, 2])
def test_the_selection_picks_the_layer_that_separates_the_classes_and_the_C_that_uses_it(separating):
    """C=1e-5 shrinks every weight to nothing: the majority class, 0.75 everywhere (and first in the
    tie order). C=1 on the separating layer is right on every chunk: the one clearly best."""
    x, y = layers(200, 0, separating)
    x_val, y_val = layers(400, 1, separating)
    head = selecting_head(C=[1e-5, 1.0], svm_C=[], mlp_lr=[])
    head.fit(x, y)
    assert select(head, x_val, y_val) == 1.0
    assert (head.layer, head.kind, head.setting) == ((separating,), "logistic", {"C": 1.0})
    scores = {(g["layer"], g["setting"]["C"]): g["val_track_acc"] for g in head.report["grid"]}
    assert len(scores) == 6 and scores[(separating, 1.0)] == 1.0
    assert all(s == 0.75 for (layer, c), s in scores.items() if c == 1e-5)
    assert head.report["chosen"] == {"layer": separating, "kind": "logistic", "setting": {"C": 1.0},
                                     "val_track_acc": 1.0, "val_acc": 1.0}
    with torch.no_grad():
        assert (head(x_val).argmax(1) == y_val).all()


@pytest.mark.parametrize("classes, out", [(2, 2), (3, 3), (3, 4)])  # (3, 4): a class with no training data
def test_the_logistic_regressions_as_linear_layers_give_scikit_learns_probabilities(classes, out):
    from sklearn.linear_model import LogisticRegression

    from mgr.models.probe_selection import logistic_regressions

    rng = np.random.default_rng(0)
    y = np.arange(90) % classes
    z = rng.standard_normal((90, 5)) + rng.standard_normal((classes, 5))[y]
    z_new = torch.tensor(rng.standard_normal((30, 5)), dtype=torch.float32)
    linears = logistic_regressions(torch.tensor(z, dtype=torch.float32), torch.tensor(y), [0.01, 1.0], out)
    for c, linear in zip([0.01, 1.0], linears):
        expected = LogisticRegression(C=c, max_iter=1000).fit(z, y).predict_proba(z_new.double().numpy())
        with torch.no_grad():
            probabilities = torch.softmax(linear(z_new), dim=1).double().numpy()
        np.testing.assert_allclose(probabilities[:, :classes], expected, atol=1e-3)  # warm start: another path
        assert (probabilities[:, classes:] < 1e-30).all()


@pytest.mark.parametrize("aggregation, track_accuracy", [("mean_logits", 0.0), ("majority_vote", 1.0)])
def test_candidates_are_scored_by_the_tasks_track_aggregation(aggregation, track_accuracy):
    """One track of label 1, three chunks: one sure of class 0, two leaning to class 1. The mean of
    the logits says 0, the vote says 1; chunk accuracy is 2/3 either way."""
    feature = {"name": "descriptors", "n_fft": 256, "hop_length": 128, "n_mels": 32, "n_mfcc": 13, "n_bands": 4}
    task = GenreClassifier(["a", "b"], feature, 8000, 1.0, {"name": "stats"}, {"name": "linear_svm"},
                           track_aggregation=aggregation)
    score = task._track_scorer(torch.tensor([1, 1, 1]), torch.tensor([0, 0, 0]))
    assert score(torch.tensor([[10.0, 0.0], [0.0, 1.0], [0.0, 1.0]])) == pytest.approx((track_accuracy, 2 / 3))


def test_ties_go_to_the_simplest_candidate():
    x, y = layers(80, 0)
    head = selecting_head(C=[0.1, 1.0], svm_C=[1.0], mlp_lr=[1e-3], mlp_hidden=4, mlp_epochs=2)
    head.fit(x, y)
    select(head, *layers(40, 1), same_score)
    assert (head.layer, head.kind, head.setting) == ((0,), "logistic", {"C": 0.1})
    assert [(g["kind"], g["layer"]) for g in head.report["grid"][:4]] == [("logistic", 0), ("logistic", 1),
                                                                        ("logistic", 2), ("logistic", 0)]
    assert [g["kind"] for g in head.report["grid"][-3:]] == ["mlp"] * 3


def test_the_rbf_svm_is_left_out_above_svm_max_chunks_and_the_report_says_so():
    """An SVC's fit grows with the square of its chunks: on more training chunks than svm_max_chunks the
    grid holds no RBF SVM (the probe on a large folder of music stays minutes), and metrics.json says why."""
    x, y = layers(80, 0)
    grids = {}
    for limit in (80, 79):
        head = selecting_head(C=[1.0], svm_C=[1.0], mlp_lr=[], svm_max_chunks=limit)
        head.fit(x, y)
        select(head, *layers(40, 1))
        grids[limit] = {g["kind"] for g in head.report["grid"]}
        assert ("left_out" in head.report) == (limit == 79)
    assert grids == {80: {"logistic", "rbf_svm"}, 79: {"logistic"}}
    assert "80 training chunks are more than model.head.svm_max_chunks=79" in head.report["left_out"]


def test_standardisation_is_the_training_chunks_and_the_mlp_is_deterministic_under_the_seed():
    x, y = layers(120, 0)
    x_val, y_val = layers(60, 1)
    heads = []
    for _ in range(2):
        torch.manual_seed(7)
        head = selecting_head(**ONLY["mlp"])
        head.fit(x, y)
        before = torch.get_rng_state()
        select(head, x_val, y_val)
        assert torch.equal(torch.get_rng_state(), before)  # the run's random state is its own
        heads.append(head)
    assert heads[0].kind == "mlp" and isinstance(heads[0].chosen, MLPHead)
    for (name, a), b in zip(heads[0].state_dict().items(), heads[1].state_dict().values()):
        assert a == b if name.endswith("_extra_state") else torch.equal(a, b), name
    (layer,) = heads[0].layer
    start = sum(WIDTHS[:layer])
    mean, scale = standardisation(x[:, start:start + WIDTHS[layer]].double().numpy())
    torch.testing.assert_close(heads[0].mean, torch.tensor(mean, dtype=torch.float32))
    torch.testing.assert_close(heads[0].scale, torch.tensor(scale, dtype=torch.float32))
    assert 1 <= heads[0].report["chosen"]["epochs"] <= 20


def test_a_fusion_is_chosen_where_the_classes_need_both_of_its_layers():
    """Layer 0 separates the classes on half the chunks, layer 2 on the other half: alone each is
    right on at most 7/8 of them (the rest: the majority class), side by side on all."""
    def halves(n, seed):
        rng = np.random.default_rng(seed)
        y = (np.arange(n) % 4 == 0).astype(int)
        parts = [rng.standard_normal((n, w)) for w in WIDTHS]
        shift = np.where(y == 1, 6.0, -6.0)
        first = rng.random(n) < 0.5  # independent of the class
        parts[0][first] += shift[first, None]
        parts[2][~first] += shift[~first, None]
        return torch.tensor(np.concatenate(parts, 1), dtype=torch.float32), torch.tensor(y)

    x, y = halves(400, 0)
    x_val, y_val = halves(400, 1)
    head = selecting_head(C=[1.0], svm_C=[], mlp_lr=[], fuse=[2])
    assert head.candidate_layers == [(0,), (0, 2), (1,), (1, 2), (2,)]
    head.fit(x, y)
    assert select(head, x_val, y_val) >= 0.99
    assert head.layer == (0, 2) and head.report["chosen"]["layer"] == "0+2"
    alone = {g["layer"]: g["val_track_acc"] for g in head.report["grid"]}
    assert max(alone[0], alone[1], alone[2]) <= 0.9
    assert head.mean.shape == (WIDTHS[0] + WIDTHS[2],)  # both parts' standardisation, side by side
    restored = selecting_head(C=[1.0], svm_C=[], mlp_lr=[], fuse=[2])
    restored.load_state_dict(head.state_dict())
    torch.testing.assert_close(restored(x_val), head(x_val))


def tracks_of(y: torch.Tensor, size: int = 5) -> torch.Tensor:
    """Tracks of `size` chunks each, a track's chunks of one label."""
    tracks = torch.empty_like(y)
    tracks[torch.argsort(y, stable=True)] = torch.arange(len(y)) // size
    return tracks


def test_folds_choose_on_held_out_tracks_of_train_and_val_and_refit_on_both():
    """folds=4: the candidates are scored on out-of-fold chunks of the training and validation chunks
    together (a track's chunks, 5 each, never on two sides), and the choice is refitted on all of them:
    its standardisation is theirs. The same known best as on the validation split."""
    from mgr.models.probe_selection import grouped_folds, pooled

    x, y = layers(200, 0)
    x_val, y_val = layers(100, 1)
    tracks, tracks_val = tracks_of(y), tracks_of(y_val)
    head = selecting_head(C=[1e-5, 1.0], svm_C=[], mlp_lr=[], folds=4)
    head.fit(x, y, tracks)
    assert head.select(x_val, y_val, tracks_val, by_chunk) == 1.0
    assert (head.layer, head.kind, head.setting) == ((1,), "logistic", {"C": 1.0})
    assert head.report["folds"] == 4 and "cross-validation" in head.report["rule"]
    both = torch.cat([x, x_val])[:, WIDTHS[0]:WIDTHS[0] + WIDTHS[1]].double().numpy()
    torch.testing.assert_close(head.mean, torch.tensor(standardisation(both)[0], dtype=torch.float32))

    _, labels, pooled_tracks, groups = pooled((x, y, tracks, None), (x_val, y_val, tracks_val, None))
    assert len(pooled_tracks.unique()) == 60  # the validation tracks numbered after the training ones
    assert torch.equal(groups, pooled_tracks)  # no groups given: each track its own
    folds = grouped_folds(labels, groups, 4)
    held = np.concatenate([test for _, test in folds])
    assert sorted(held) == list(range(300))  # every chunk held out once
    for train, test in folds:
        assert not set(groups[train].tolist()) & set(groups[test].tolist())  # no track on two sides
        assert set(labels[test].tolist()) == {0, 1}  # stratified: both classes in every fold


def test_folds_hold_out_the_datas_groups_whole(monkeypatch):
    """Tracks that share a group (a piece's clips) are held out together: the folds follow the
    groups the data module gives (numbers shared by the splits), not the tracks."""
    x, y = layers(200, 0)
    x_val, y_val = layers(100, 1)
    tracks, tracks_val = tracks_of(y), tracks_of(y_val)
    groups, groups_val = tracks // 2, tracks_val // 2 + 100  # two tracks a group; the splits' numbers apart
    head = selecting_head(C=[1.0], svm_C=[], mlp_lr=[], folds=4)
    head.fit(x, y, tracks, groups)
    import mgr.models.heads as heads

    seen, real = {}, heads.grouped_folds
    monkeypatch.setattr(heads, "grouped_folds", lambda labels, g, k: seen.setdefault("folds", (g, real(labels, g, k)))[1])
    head.select(x_val, y_val, tracks_val, by_chunk, groups_val)
    used, folds = seen["folds"]
    assert torch.equal(used, torch.cat([groups, groups_val]))
    for train, test in folds:
        assert not set(used[train].tolist()) & set(used[test].tolist())


def test_folds_refit_an_mlp_for_its_mean_best_epoch_and_need_enough_tracks():
    from mgr import MGRError

    x, y = layers(120, 0)
    head = selecting_head(**ONLY["mlp"], folds=3)
    head.fit(x, y, tracks_of(y, 4))
    x_val, y_val = layers(60, 1)
    select(head, x_val, y_val)
    assert head.kind == "mlp" and isinstance(head.chosen, MLPHead)
    assert 1 <= head.report["chosen"]["epochs"] <= 20  # the mean over the folds of their best epochs
    with pytest.raises(MGRError, match=r"model.head.folds=5 needs at least 5 training and validation tracks; "
                                       r"there are 3"):
        few = selecting_head(**ONLY["logistic"], folds=5)
        few.fit(x[:8], y[:8], tracks_of(y[:8], 4))
        few.select(x_val[:4], y_val[:4], torch.zeros(4, dtype=torch.long), by_chunk)
    for wrong in (1, -2, "abc", 2.5):
        with pytest.raises(MGRError, match=f"model.head.folds={wrong}: give 0"):
            selecting_head(folds=wrong)


def test_a_head_without_candidates_or_with_unknown_layers_is_one_clear_error():
    from mgr import MGRError

    with pytest.raises(MGRError, match="model.head=select has no candidate"):
        selecting_head(C=[], svm_C=[], mlp_lr=[])
    with pytest.raises(MGRError, match=r"model.head.layers=\[7\] names layers the embedding does not hold; it holds "
                                       r"\[0, 1, 2\]"):
        selecting_head(layers=[7])
    with pytest.raises(MGRError, match=r"model.head.fuse=\['descriptors'\] names layers the embedding does not hold"):
        selecting_head(fuse=["descriptors"])
    head = selecting_head(layers=[2], svm_C=[], mlp_lr=[])
    head.fit(*layers(80, 0))
    select(head, *layers(40, 1), same_score)
    assert {g["layer"] for g in head.report["grid"]} == {2}


@pytest.mark.parametrize("override, head", [
    (None, {"name": "select"}),
    ("model.head={name: mlp, hidden: 8, dropout: 0.1}", {"name": "mlp", "hidden": 8, "dropout": 0.1}),
    ("model.head={name: select, C: [0.1, 1.0], mlp_lr: []}", {"name": "select", "C": [0.1, 1.0], "mlp_lr": []}),
])
def test_model_probe_selects_by_default_and_a_head_override_replaces_it(override, head):
    """conf/model/probe.yaml names its head (a string): an override gives a whole other head's settings,
    where a dict default would have been merged into (and refused the other head's keys)."""
    from mgr.models.heads import head_settings

    cfg = compose_resolved("train", ["model=probe", *([override] if override else [])])
    assert head_settings(cfg.model.head) == head and cfg.encoder.layer == "all"


@pytest.mark.parametrize("head, encoder", [("select", {"finetune": True}),
                                           ({"name": "rbf_svm"}, {"layer": "weighted"})])
def test_a_fitted_head_on_what_the_encoder_learns_is_one_clear_error(tmp_path, head, encoder):
    from mgr import MGRError

    encoder = {"name": "hubert", "weights": str(save_tiny("hubert", tmp_path / "hubert")), "layer": "all", **encoder}
    name = head if isinstance(head, str) else head["name"]
    with pytest.raises(MGRError, match=rf"model.head={name} is fitted in closed form and trains nothing else, and "
                                       r"encoder.finetune=true or encoder.layer=weighted learn by gradient descent"):
        GenreClassifier(["a", "b"], {"name": "mel"}, 8000, 0.5, {"name": "probe"}, head, encoder=encoder)


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    return save_tiny("clap", tmp_path_factory.mktemp("clap"))  # layers of widths 16, 32, 32


@pytest.mark.parametrize("kind", ["logistic", "rbf_svm", "mlp"])
def test_the_chosen_probe_and_its_standardisation_restore_from_the_checkpoint(clap_dir, tmp_path, kind):
    encoder = {"name": "clap", "weights": str(clap_dir), "layer": "all"}
    model = GenreClassifier(["a", "b"], {"name": "mel"}, 8000, 0.5, {"name": "probe"},
                            {"name": "select", **ONLY[kind]}, encoder=encoder).eval()
    assert model.encoder.embedding_layers == [(0, 16), (1, 32), (2, 32)]
    torch.manual_seed(0)
    wave = torch.randn(24, 4000) * torch.linspace(0.1, 1, 24)[:, None]
    y = (torch.arange(24) % 2 == 0).long()
    with torch.no_grad():
        x = model.embed(wave)
    assert x.shape == (24, 80)
    model.head.fit(x[:16], y[:16])
    select(model.head, x[16:], y[16:])
    assert model.head.kind == kind
    save_checkpoint(model, tmp_path / "probe.ckpt")
    stored = torch.load(tmp_path / "probe.ckpt", weights_only=True)["state_dict"]
    assert stored["head._extra_state"]["report"]["chosen"]["kind"] == kind
    restored = load_model(tmp_path / "probe.ckpt").eval()
    assert (restored.head.layer, restored.head.kind, restored.head.setting) == \
        (model.head.layer, kind, model.head.setting)
    assert restored.head.report == model.head.report
    torch.testing.assert_close(restored.head.mean, model.head.mean)
    torch.testing.assert_close(restored.head.scale, model.head.scale)
    if kind == "rbf_svm":
        assert isinstance(restored.head.chosen, RBFSVMHead) and len(restored.head.chosen.support_vectors) > 0
    with torch.no_grad():
        torch.testing.assert_close(restored(wave), model(wave))


@pytest.mark.slow
def test_model_probe_alone_selects_reports_the_grid_and_mgr_eval_agrees(clap_dir, run_mgr):
    """`model=probe` with nothing but the encoder's weights: the select head on every layer (the tiny
    CLAP's differ in width), the descriptor statistics alone and each layer joined with them, one
    training pass; metrics.json lists the grid and the choice, and mgr.eval of the checkpoint (from the
    waveforms, not the cache) reports the same."""
    proc = run_mgr("train", "model=probe", "encoder=clap_htsat", f"encoder.weights={clap_dir}", *TINY_DATA,
                   *NO_PLOTS, "trainer.enable_progress_bar=false")
    metrics = metrics_of(proc)
    report = metrics["head"]
    # inputs x (C, svm_C x svm_gamma, mlp_lr): the default grids on 3 layers, the descriptors, 3 fusions
    assert len(report["grid"]) == 7 * (6 + 3 + 3)
    assert {g["layer"] for g in report["grid"]} == {0, 1, 2, "descriptors", "0+descriptors", "1+descriptors",
                                                    "2+descriptors"}
    assert {g["kind"] for g in report["grid"]} == {"logistic", "rbf_svm", "mlp"}
    best = max(g["val_track_acc"] for g in report["grid"])
    assert report["chosen"]["val_track_acc"] == best and report["chosen"] in report["grid"]
    assert report["train_chunks"] > 0 and report["val_chunks"] > 0
    model = load_model(metrics["best_checkpoint"])
    assert model.hparams.encoder["layer"] == "all" and model.architecture == "clap probe + select"
    evaluated = metrics_of(run_mgr("eval", f"ckpt_path={metrics['best_checkpoint']}"))
    for key in ("test/track_acc", "test/acc", "test/loss"):
        assert evaluated[key] == pytest.approx(metrics[key], rel=1e-4, abs=1e-6)
    assert evaluated["head"] == json.loads(json.dumps(report))
    assert "Probe chosen on" in (run_dir_of(proc) / "train.log").read_text()
