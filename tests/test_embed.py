"""mgr.embed: penultimate-layer embeddings of a split, per chunk and per track, and the t-SNE map."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import NO_PLOTS, mgr_in_process, run_dir_of, seed004_vote, tiny
from mgr.data.sources.base import TrackList, multi_hot
from mgr.embed import map_colours
from mgr.models import load_model


@pytest.fixture(scope="module")
def embedded(trained_run, tmp_path_factory, data_dir):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    cwd = tmp_path_factory.mktemp("embed")
    # The vote instead of the checkpoint's mean of logits: it sets the track predictions, nothing else.
    proc = mgr_in_process("embed", f"ckpt_path={metrics['best_checkpoint']}", "track_aggregation=majority_vote",
                       cwd=cwd, data_dir=data_dir)
    npz_path = Path(next(l for l in proc.stdout.splitlines() if l.strip().endswith("embeddings.npz")).strip())
    return metrics, npz_path


@pytest.mark.slow
def test_embed_writes_chunk_and_track_embeddings_of_the_test_split(embedded):
    metrics, npz_path = embedded
    data = np.load(npz_path)
    model = load_model(metrics["best_checkpoint"])
    chunks, tracks = data["chunk_embeddings"], data["track_embeddings"]
    n_chunks, n_tracks = np.sum(metrics["chunk_confusion"]), np.sum(metrics["track_confusion"])
    assert chunks.shape == (n_chunks, model.head.in_features)  # the input of the output layer
    assert tracks.shape == (n_tracks, model.head.in_features)
    assert list(data["class_names"]) == metrics["class_names"] and len(data["track_paths"]) == n_tracks
    for k in range(n_tracks):
        np.testing.assert_allclose(tracks[k], chunks[data["chunk_tracks"] == k].mean(axis=0), rtol=1e-5, atol=1e-6)
    # The same chunks, labels and track grouping as the training run's test: its accuracies come back.
    chunk_acc = np.mean(data["chunk_logits"].argmax(1) == data["chunk_labels"])
    track_acc = np.mean(data["track_logits"].argmax(1) == data["track_labels"])
    assert chunk_acc == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert track_acc == pytest.approx(metrics["test/track_acc"], abs=1e-6)
    # Track predictions and scores by the asked rule: seed 004's vote over each track's chunks.
    assert str(data["track_aggregation"]) == "majority_vote" and float(data["vote_threshold"]) == 0.5
    for k in range(n_tracks):
        probabilities = torch.softmax(torch.from_numpy(data["chunk_logits"][data["chunk_tracks"] == k]), 1)
        assert data["track_predictions"][k] == seed004_vote(probabilities, 0.5) == data["track_scores"][k].argmax()
    shares = data["track_scores"] * 12  # vote shares: whole votes out of at most 4 chunks (synth tracks <= 3.5 s)
    assert np.allclose(data["track_scores"].sum(1), 1) and np.allclose(shares, np.round(shares), atol=1e-5)


@pytest.mark.slow
def test_embed_draws_a_tsne_map(embedded):
    png = embedded[1].parent / "tsne.png"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 600 and image.height > 300
        image.verify()


def test_a_multilabel_track_is_coloured_by_its_rarest_label_and_one_without_labels_as_no_label():
    labels = multi_hot([("a", "b"), ("b",), ("b", "c"), ("a", "b"), ()], ["a", "b", "c"])
    names, colours = map_colours(TrackList(["1", "2", "3", "4", "5"], labels, ["a", "b", "c"]), [0, 1, 2, 4])
    assert names == ["a", "b", "c", "no label"] and colours.tolist() == [0, 1, 2, 3]  # c: 1 track, a: 2, b: 4
    names, colours = map_colours(TrackList(["1", "2", "3"], [2, 0, 1], ["a", "b", "c"]), [2, 0])
    assert names == ["a", "b", "c"] and colours.tolist() == [1, 2]  # one label per track: its label


@pytest.mark.slow
def test_embed_of_a_multilabel_checkpoint_gives_its_tests_sigmoid_probabilities_and_answers(tmp_path, data_dir):
    train = mgr_in_process("train", "task=multilabel", "data=synth_multilabel", *tiny(), "debug=limit", *NO_PLOTS,
                           cwd=tmp_path, data_dir=data_dir)
    run = run_dir_of(train)
    metrics = json.loads((run / "metrics.json").read_text())
    proc = mgr_in_process("embed", f"ckpt_path={metrics['best_checkpoint']}", cwd=tmp_path, data_dir=data_dir)
    npz_path = Path(next(l for l in proc.stdout.splitlines() if l.strip().endswith("embeddings.npz")).strip())
    data = np.load(npz_path)
    names = metrics["class_names"]
    assert str(data["task"]) == "multilabel" and list(data["class_names"]) == names
    with open(run / "test_predictions.csv", newline="") as f:
        tested = {r["path"]: r for r in csv.DictReader(f)}
    assert len(data["track_paths"]) == len(tested) >= 5
    for path, probabilities, answers, labels, colour in zip(data["track_paths"], data["track_probabilities"],
                                                           data["track_predictions"], data["track_labels"], data["map_labels"]):
        (row,) = [r for p, r in tested.items() if str(path).endswith(p)]
        # a sigmoid per tag, as the run's test scored it (not a softmax: they need not sum to 1), and its answers
        np.testing.assert_allclose(probabilities, [float(row[f"score_{c}"]) for c in names], atol=1e-5)
        assert answers.tolist() == [c in row["predictions"].split(";") for c in names]
        assert answers.tolist() == (probabilities >= np.array(metrics["thresholds"])).tolist()
        assert labels.tolist() == [float(c in row["labels"].split(";")) for c in names]
        assert labels[colour] == 1  # coloured by one of its own labels
    assert (npz_path.parent / "tsne.png").read_bytes()[:4] == b"\x89PNG"
