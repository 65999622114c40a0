"""The genre hierarchy of a multi-label model: its `class_parents` (the tree over its classes, in its
checkpoint), the roll-up of its answers (mgr.data.genre_tree.ClassHierarchy), mgr.predict's rolled-up
answers and the test report's metrics per level of the tree. FMA's miniature tree end to end:
tests/data/sources/test_fma_multilabel.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from conftest import save_checkpoint, write_tone
from mgr import MGRError
from mgr.data.genre_tree import ClassHierarchy, rolled_answers
from mgr.models import GenreClassifier, load_model
from mgr.predict import predict_files
from mgr.test_report import level_results, print_results

# Electronic > Techno > Dub Techno, Electronic > House; Rock alone (the classes in alphabetical order).
NAMES = ["Dub Techno", "Electronic", "House", "Rock", "Techno"]
PARENTS = {"Dub Techno": "Techno", "Electronic": None, "House": "Electronic", "Rock": None, "Techno": "Electronic"}


def test_levels_are_depths_and_a_loop_is_refused():
    tree = ClassHierarchy(NAMES, PARENTS)
    assert tree.levels == [3, 1, 2, 1, 2]
    with pytest.raises(MGRError, match="its own ancestor"):
        ClassHierarchy(["a", "b"], {"a": "b", "b": "a"}).levels


def test_roll_up_takes_the_subtrees_max_and_answers_every_ancestor_of_an_answer():
    tree = ClassHierarchy(NAMES, PARENTS)
    thresholds = torch.tensor([0.3, 0.6, 0.5, 0.5, 0.8])
    #                             Dub   Elec  House Rock  Techno
    probabilities = torch.tensor([[0.4, 0.1, 0.2, 0.9, 0.35],   # Dub Techno answered alone (and Rock)
                                  [0.1, 0.7, 0.2, 0.1, 0.2],    # Electronic answered alone: adds no child
                                  [0.2, 0.1, 0.55, 0.1, 0.9]])  # House and Techno
    answered = probabilities >= thresholds
    assert not all(tree.is_consistent(row) for row in answered.tolist())
    rolled, rolled_answers = tree.roll_up(probabilities, answered)
    assert torch.equal(rolled, torch.tensor([[0.4, 0.4, 0.2, 0.9, 0.4], [0.1, 0.7, 0.2, 0.1, 0.2],
                                             [0.2, 0.9, 0.55, 0.1, 0.9]]))
    # Electronic answered in row 0 by its descendant, though its rolled-up 0.4 is under its threshold 0.6.
    assert rolled_answers.tolist() == [[True, True, False, True, True], [False, True, False, False, False],
                                       [False, True, True, False, True]]
    assert all(tree.is_consistent(row) for row in rolled_answers.tolist())
    one_file, one_answer = tree.roll_up(probabilities[0], answered[0])  # mgr.predict's: one file, [C]
    assert one_file.tolist() == rolled[0].tolist() and one_answer.tolist() == rolled_answers[0].tolist()


def tiny_tree_model(**settings) -> GenreClassifier:
    return GenreClassifier(NAMES, {"name": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 32}, 8000, 1.0,
                           {"name": "cnn", "channels": [8, 16, 32], "hidden": 32}, task="multilabel", **settings)


def test_a_models_answers_roll_up_its_tree_and_a_model_without_one_keeps_its_own():
    """rolled_answers: what mgr.predict answers, and mgr.embed and the test report's risk-coverage score."""
    model = tiny_tree_model(class_parents=PARENTS)
    model.set_thresholds([0.5] * len(NAMES))
    probabilities = torch.tensor([[0.9, 0.1, 0.2, 0.3, 0.4],   # Dub Techno: Techno and Electronic too
                                  [0.1, 0.2, 0.3, 0.7, 0.1]])  # Rock alone
    rolled, answered = rolled_answers(model, probabilities)
    assert answered.tolist() == [[True, True, False, False, True], [False, False, False, True, False]]
    assert rolled[0].tolist() == pytest.approx([0.9, 0.9, 0.2, 0.3, 0.9])
    model.class_parents = None
    own, answered = rolled_answers(model, probabilities)
    assert torch.equal(own, probabilities) and torch.equal(answered, probabilities >= 0.5)


def test_class_parents_travel_in_the_checkpoint_and_old_checkpoints_load_without(tmp_path):
    save_checkpoint(tiny_tree_model(class_parents=PARENTS), tmp_path / "tree.ckpt")
    assert load_model(tmp_path / "tree.ckpt").class_parents == PARENTS
    checkpoint = torch.load(tmp_path / "tree.ckpt", weights_only=True)
    del checkpoint["hyper_parameters"]["class_parents"]  # as written before the hierarchy
    torch.save(checkpoint, tmp_path / "old.ckpt")
    assert load_model(tmp_path / "old.ckpt").class_parents is None


@pytest.mark.parametrize("parents", [{"Techno": "Trance"}, {"Trance": None}])
def test_class_parents_outside_the_classes_are_refused(parents):
    with pytest.raises(MGRError, match="class_parents must be null or"):
        tiny_tree_model(class_parents=parents)


def test_predict_answers_up_the_tree_with_rolled_up_probabilities(tmp_path):
    # Dub Techno's threshold 0 answers it for any file; every other class's 1 answers none by itself.
    thresholds = [0.0, 1.0, 1.0, 1.0, 1.0]
    paths = [write_tone(tmp_path / f"{i}.wav", seconds=2.0, seed=i) for i in range(3)]
    model = tiny_tree_model(thresholds=thresholds, class_parents=PARENTS)
    rolled = list(predict_files(model, paths))
    model.class_parents = None  # the same weights without their tree
    flat = list(predict_files(model, paths))
    tree = ClassHierarchy(NAMES, PARENTS)
    for plain, up in zip(flat, rolled):
        assert [NAMES[k] for k in plain.tags] == ["Dub Techno"]  # inconsistent: its parent is not answered
        assert not tree.is_consistent(np.isin(range(5), plain.tags))
        assert sorted(NAMES[k] for k in up.tags) == ["Dub Techno", "Electronic", "Techno"]
        assert tree.is_consistent(np.isin(range(5), up.tags))
        p = plain.probabilities
        assert up.probabilities == pytest.approx([p[0], max(p[:3] + p[4:]), p[2], p[3], max(p[0], p[4])])


def random_level_predictions(n=80, seed=0):
    """Track probabilities, labels closed under the tree (a track with a genre has its ancestors) and answers."""
    rng = np.random.default_rng(seed)
    tree = ClassHierarchy(NAMES, PARENTS)
    leaves = rng.random((n, len(NAMES))) < 0.3
    labels = tree.roll_up(torch.zeros(n, len(NAMES)), torch.as_tensor(leaves))[1].numpy().astype(np.float32)
    probabilities = np.clip(0.35 * labels + 0.65 * rng.random(labels.shape), 0, 1)
    return {"track_scores": probabilities, "track_labels": labels}, probabilities >= 0.5


def test_level_metrics_equal_scikit_learns_on_each_levels_rolled_up_scores():
    predictions, answered = random_level_predictions()
    labels = predictions["track_labels"].copy()
    labels[:, NAMES.index("House")] = 0  # no positive: left out of level 2's means
    predictions["track_labels"] = labels
    metrics = {}
    levels = level_results(predictions, answered, NAMES, PARENTS, metrics)
    assert levels[1] == {"level": 2, "classes": ["House", "Techno"], "left_out": ["House"]}
    p = predictions["track_scores"]
    # The roll-up written out: each class's max over itself and its descendants; answered likewise.
    subtree = {"Dub Techno": [0], "Electronic": [0, 1, 2, 4], "House": [2], "Rock": [3], "Techno": [0, 4]}
    rolled = np.stack([p[:, subtree[c]].max(1) for c in NAMES], 1)
    rolled_answers = np.stack([answered[:, subtree[c]].any(1) for c in NAMES], 1)
    for level, classes in ((1, ["Electronic", "Rock"]), (2, ["Techno"]), (3, ["Dub Techno"])):
        ks = [NAMES.index(c) for c in classes]
        for key, score, of in (("track_auc", roc_auc_score, rolled), ("track_ap", average_precision_score, rolled),
                               ("track_f1", f1_score, rolled_answers)):
            # class by class: scikit-learn reads a single column as a binary problem, whose macro is over 0 and 1
            macro = np.mean([score(labels[:, k], of[:, k]) for k in ks])
            assert metrics[f"test/level{level}/{key}"] == pytest.approx(macro, abs=1e-6), (level, key)


def test_the_test_report_prints_one_line_a_level_before_the_table(capsys):
    predictions, answered = random_level_predictions()
    metrics = {"test/track_auc": 0.9}
    level_results(predictions, answered, NAMES, PARENTS, metrics)
    print_results(metrics, None, "runs/x", "Test results")
    out = capsys.readouterr().out
    assert out.index("level 1: ROC-AUC") < out.index("level 3: ROC-AUC") < out.index("Test results")
    assert f"level 2: ROC-AUC {metrics['test/level2/track_auc']:.4f}" in out
