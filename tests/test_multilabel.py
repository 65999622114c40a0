"""task=multilabel: multi-label tracks (a manifest's labels column, the multi-label synth), their splits,
the multilabel metrics and thresholds, and training, testing, mgr.eval and mgr.predict end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from conftest import metrics_of, run_dir_of, tiny, write_tone
from mgr import MGRError
from mgr.data.sources import build_source, read_manifest
from mgr.data.sources.base import TrackList, multi_hot
from mgr.data.splits import check_split
from mgr.models import GenreClassifier, load_model
from mgr.models.aggregation import TrackAggregation
from mgr.models.metrics import TRAINING_BINS, TrackMetrics, chunk_metrics, f1_thresholds

# About 30 s on one thread; test macro ROC-AUC 0.92 (an untrained model's is about 0.5).
TINY_MULTILABEL = ["task=multilabel", *tiny("cnn", "mel", epochs=10), "data.source_options.tracks_per_class=12",
                   "data.split={train: 0.5, val: 0.17, test: 0.33}", "optimizer.lr=3e-3", "~callbacks.plots"]


def random_predictions(n=60, c=4, seed=0):
    """Probabilities that lean towards 0/1 labels (so the metrics are neither 0.5 nor 1), every class
    with positives and negatives."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, c)) < 0.4).astype(np.int64)
    labels[0], labels[1] = 1, 0
    probabilities = np.clip(0.3 * labels + 0.7 * rng.random((n, c)), 0, 1).astype(np.float32)
    return probabilities, labels


def test_multilabel_metrics_equal_scikit_learns():
    probabilities, labels = random_predictions()
    p, y = torch.from_numpy(probabilities), torch.from_numpy(labels)
    tracks = TrackMetrics(4, TrackAggregation("mean_probs", multilabel=True), multilabel=True)
    tracks.update(torch.logit(p.double()).float(), y.float(), torch.arange(len(y)))  # one chunk per track
    track = tracks.compute()
    chunks = chunk_metrics(4, multilabel=True)
    chunks.update(torch.logit(p.double()).float(), y)
    chunk = chunks.compute()
    for average in ("macro", "micro"):
        suffix = "" if average == "macro" else "_micro"
        auc, ap = roc_auc_score(labels, probabilities, average=average), average_precision_score(labels, probabilities, average=average)
        assert float(track[f"track_auc{suffix}"]) == pytest.approx(auc, abs=1e-5)
        assert float(track[f"track_ap{suffix}"]) == pytest.approx(ap, abs=1e-5)
        assert float(chunk[f"auc{suffix}"]) == pytest.approx(auc, abs=1e-5)
        assert float(chunk[f"ap{suffix}"]) == pytest.approx(ap, abs=1e-5)
    assert 0.6 < roc_auc_score(labels, probabilities) < 0.95  # the check above compared informative values


def test_a_class_without_positive_test_tracks_is_left_out_of_the_macro_means():
    """A class no test track carries has no ROC-AUC: the track macro means are scikit-learn's over the
    other classes (torchmetrics alone would count it as 0)."""
    probabilities, labels = random_predictions()
    labels[:, 3] = 0
    p, y = torch.from_numpy(probabilities), torch.from_numpy(labels)
    tracks = TrackMetrics(4, TrackAggregation("mean_probs", multilabel=True), multilabel=True)
    tracks.update(torch.logit(p.double()).float(), y.float(), torch.arange(len(y)))
    track = tracks.compute()
    assert float(track["track_auc"]) == pytest.approx(roc_auc_score(labels[:, :3], probabilities[:, :3]), abs=1e-5)
    assert float(track["track_ap"]) == pytest.approx(average_precision_score(labels[:, :3], probabilities[:, :3]),
                                                     abs=1e-5)


@pytest.mark.parametrize("bins", [None, TRAINING_BINS], ids=["exact", "binned"])
def test_the_chunk_macro_means_leave_out_a_class_without_a_positive_or_a_negative_chunk(bins):
    """The chunk-level macro ROC-AUC and PR-AUC (test/auc, val/auc, train/auc, ...) are scikit-learn's over
    the classes with a positive and a negative chunk, as the track ones: class 3 has no positive, class 2
    no negative (torchmetrics alone would count each as 0). Training's binned metrics approximate them."""
    probabilities, labels = random_predictions()
    labels[:, 3], labels[:, 2] = 0, 1
    chunks = chunk_metrics(4, multilabel=True, bins=bins)
    chunks.update(torch.logit(torch.from_numpy(probabilities).double()).float(), torch.from_numpy(labels))
    chunk = chunks.compute()
    tolerance = 1e-5 if bins is None else 1e-2
    assert float(chunk["auc"]) == pytest.approx(roc_auc_score(labels[:, :2], probabilities[:, :2]), abs=tolerance)
    assert float(chunk["ap"]) == pytest.approx(average_precision_score(labels[:, :2], probabilities[:, :2]),
                                               abs=tolerance)
    assert float(chunk["auc_micro"]) == pytest.approx(roc_auc_score(labels.ravel(), probabilities.ravel()),
                                                      abs=tolerance)  # micro pools every decision: nothing left out


def test_a_chunk_macro_mean_with_no_scorable_class_is_nan():
    probabilities, labels = random_predictions()
    labels[:] = 0
    chunks = chunk_metrics(4, multilabel=True)
    chunks.update(torch.from_numpy(probabilities), torch.from_numpy(labels))
    assert torch.isnan(chunks.compute()["auc"])


def _scored_macro_rank(rank: int, port: int, probabilities, labels, out) -> None:
    """One gloo rank of test_the_chunk_macro_means_gather_every_rank: its half of the chunks, then compute."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        chunks = chunk_metrics(4, multilabel=True)
        mine = slice(rank, None, 2)
        chunks.update(torch.from_numpy(probabilities[mine]), torch.from_numpy(labels[mine]))
        out[rank] = {k: float(v) for k, v in chunks.compute().items()}
    finally:
        dist.destroy_process_group()


def test_the_chunk_macro_means_gather_every_rank():
    """Under DDP (two gloo ranks, each with half the chunks) the chunk macro means are those of all the
    chunks: a class with positives on one rank only is scored on both, one with none anywhere on neither."""
    import socket

    import torch.multiprocessing as mp

    probabilities, labels = random_predictions()
    labels[:, 3] = 0
    labels[:, 1] = 0
    labels[0, 1] = 1  # class 1's one positive chunk is rank 0's
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_scored_macro_rank, args=(port, probabilities, labels, out), nprocs=2)
        results = dict(out)
    expected = roc_auc_score(labels[:, :3], probabilities[:, :3])
    for rank in (0, 1):
        assert results[rank]["auc"] == pytest.approx(expected, abs=1e-5), rank
        assert results[rank]["ap"] == pytest.approx(average_precision_score(labels[:, :3], probabilities[:, :3]),
                                                    abs=1e-5)


def test_thresholds_maximise_each_class_f1_and_f1_is_scored_at_them():
    probabilities, labels = random_predictions(seed=1)
    thresholds = f1_thresholds(torch.from_numpy(probabilities), torch.from_numpy(labels)).numpy()
    for c in range(labels.shape[1]):
        best = max(f1_score(labels[:, c], probabilities[:, c] >= t) for t in probabilities[:, c])
        assert f1_score(labels[:, c], probabilities[:, c] >= thresholds[c]) == pytest.approx(best)
    tracks = TrackMetrics(4, TrackAggregation("mean_probs", multilabel=True), multilabel=True)
    tracks.thresholds = torch.from_numpy(thresholds)
    tracks.update(torch.logit(torch.from_numpy(probabilities).double()).float(), torch.from_numpy(labels).float(),
                  torch.arange(len(labels)))
    answered = probabilities >= thresholds
    assert float(tracks.compute()["track_f1"]) == pytest.approx(f1_score(labels, answered, average="macro"), abs=1e-5)
    assert f1_thresholds(torch.rand(5, 2), torch.zeros(5, 2)).tolist() == [0.5, 0.5]  # no positive: the default


def test_multilabel_tracks_stratify_by_their_rarest_label():
    labels = multi_hot([("a", "b"), ("b",), ("b", "c"), ("a",), ()], ["a", "b", "c"])
    tracks = TrackList(["1", "2", "3", "4", "5"], labels, ["a", "b", "c"])
    assert tracks.multilabel and labels.dtype == np.float32 and labels[0].tolist() == [1, 1, 0]
    assert tracks.strata() == [0, 1, 2, 0, 3]  # c is rarer than b, a than b; no label: a stratum of its own
    assert TrackList(["1"], [2], ["a", "b", "c"]).strata() == [2]


def test_majority_vote_is_refused_for_a_multilabel_model():
    with pytest.raises(MGRError, match="majority_vote gives each chunk one vote"):
        TrackAggregation("majority_vote", multilabel=True)


# tiny()'s model and feature, without its synth options.
TINY_FOLDER = [o for o in tiny("cnn", "mel") if not o.startswith("data.source_options")]


def tiny_multilabel_model(**settings) -> GenreClassifier:
    return GenreClassifier(["a", "b", "c"], {"name": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 32}, 8000, 1.0,
                           {"name": "cnn", "channels": [8, 16, 32], "hidden": 32}, task="multilabel", **settings)


def test_a_padding_chunk_counts_nowhere_and_class_indices_become_one_hot_rows():
    from mgr.labels import PADDING_LABEL

    model = tiny_multilabel_model()
    logits = torch.randn(2, 3)
    model._score(logits[:1], torch.tensor([PADDING_LABEL]), torch.tensor([0]), "val")  # a DDP rank's padding chunk
    model._score(logits[:1], torch.full((1, 3), PADDING_LABEL), torch.tensor([0]), "val")  # ... as a row (device chunks)
    assert model.val_loss.weight == 0 and len(torch.cat(model.val_tracks.targets)) == 0
    _, target = model._score(logits, torch.tensor([2, 0]), torch.tensor([0, 1]), "val")  # single-label data
    assert target.tolist() == [[0, 0, 1], [1, 0, 0]] and model.val_loss.weight == 2
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert float(model.val_loss.compute()) == pytest.approx(float(expected), abs=1e-6)


def test_thresholds_are_checked_and_kept_in_the_hyperparameters():
    model = tiny_multilabel_model(thresholds=[0.2, 0.5, 0.9])
    assert model.hparams.thresholds == [0.2, 0.5, 0.9]
    assert model.answered(torch.tensor([0.3, 0.4, 0.9])).tolist() == [True, False, True]
    with pytest.raises(MGRError, match="3 probabilities"):
        tiny_multilabel_model(thresholds=[0.5])


def write_labels_manifest(root: Path, header: str, rows: list[str]) -> Path:
    for i in range(len(rows)):
        write_tone(root / f"{i:02d}.wav", 1.2, seed=i)
    manifest = root / "music.csv"
    manifest.write_text("\n".join([header, *rows]) + "\n")
    return manifest


def tag_rows(n: int) -> list[str]:
    """n rows path,labels,group of three tags, one or two per file, two files per group."""
    tags = ["rock", "jazz;rock", "pop", "jazz", "pop;jazz", "rock;pop"]
    return [f"{i:02d}.wav,{tags[i % len(tags)]},g{i // 2}" for i in range(n)]


def test_a_labels_manifest_is_multi_label_and_splits_groups_without_leakage(tmp_path):
    manifest = write_labels_manifest(tmp_path / "music", "path,labels,group", tag_rows(24))
    tracks = read_manifest(manifest)
    assert tracks.class_names == ["jazz", "pop", "rock"] and tracks.multilabel
    assert tracks.labels[1].tolist() == [1, 0, 1] and tracks.labels[0].tolist() == [0, 0, 1]
    source = build_source("folder", str(manifest), {})
    splits = source.split(source.list(), None, 0)
    check_split(splits, tracks.files, tracks.groups)  # no file and no group on two sides
    assert all(splits[k] for k in ("train", "val", "test"))


@pytest.mark.parametrize("header, rows, error", [
    ("path,label,labels", ["00.wav,rock,rock;jazz", "01.wav,pop,pop"], r"not both label and labels"),
    ("path,labels", ["00.wav,rock;jazz", "01.wav, ; "], r"^Line 3 of \S+ has an empty labels; give the file its genres"),
])
def test_a_labels_manifest_with_both_columns_or_a_row_without_labels_is_refused(tmp_path, header, rows, error):
    with pytest.raises(MGRError, match=error):
        read_manifest(write_labels_manifest(tmp_path / "music", header, rows))


def test_a_labels_manifest_trains_a_step_under_task_multilabel(run_mgr, tmp_path):
    manifest = write_labels_manifest(tmp_path / "music", "path,labels,group", tag_rows(24))
    proc = run_mgr("train", "task=multilabel", f"data=folder", f"data.root={manifest}", "recipe=none",
                   *TINY_FOLDER, "data.min_seconds=0.5",
                   "+trainer.limit_train_batches=1", "~callbacks.plots")  # one step
    metrics = metrics_of(proc)
    assert metrics["class_names"] == ["jazz", "pop", "rock"] and metrics["task"] == "multilabel"
    assert 0 <= metrics["test/track_auc"] <= 1 and len(metrics["thresholds"]) == 3


def test_multiclass_task_refuses_multi_label_data_before_decoding(run_mgr, tmp_path):
    manifest = write_labels_manifest(tmp_path / "music", "path,labels", [r.rsplit(",", 1)[0] for r in tag_rows(6)])
    proc = run_mgr("train", "data=folder", f"data.root={manifest}", *TINY_FOLDER, check=False)
    assert proc.returncode == 1
    assert "mgr: error: The data is multi-label" in proc.stderr and "task=multilabel" in proc.stderr
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").rglob("*.ckpt"))


def test_multi_label_synth_mixes_two_styles_into_every_second_track(data_dir):
    source = build_source("synth", str(data_dir / "synth"),
                          {"tracks_per_class": 6, "seconds": [2.0, 3.5], "multilabel": True})
    tracks = source.list()
    assert tracks.multilabel and tracks.labels.shape == (30, 5)
    assert sorted(tracks.labels.sum(axis=1).tolist()) == [1.0] * 15 + [2.0] * 15
    for file, row in zip(tracks.files, tracks.labels):  # the file is named by its styles
        named = Path(file).name.split(".")[0].split("+")
        assert sorted(named) == sorted(np.array(tracks.class_names)[row > 0].tolist())


def test_an_untrained_model_scores_chance_roc_auc(data_dir, tmp_path):
    """Every track of the tiny multi-label synth scored by untrained models of three seeds: their macro
    ROC-AUC is about 0.5 (what a trained model's >= 0.95 is to be read against)."""
    from conftest import mini_datamodule

    dm = mini_datamodule("synth", data_dir / "synth", tmp_path, sample_rate=8000, chunk_seconds=1.0,
                         source_options={"tracks_per_class": 6, "seconds": [2.0, 3.5], "multilabel": True},
                         split={"train": 0.34, "val": 0.33, "test": 0.33})
    aucs = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = GenreClassifier(dm.class_names, {"name": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 32}, 8000,
                                1.0, {"name": "cnn", "channels": [8, 16, 32], "hidden": 32}, task="multilabel",
                                track_aggregation="mean_probs").eval()
        tracks = TrackMetrics(5, model.track_aggregation, multilabel=True)
        with torch.no_grad():
            for split in ("train", "val", "test"):
                for wave, target, track in torch.utils.data.DataLoader(dm.eval_dataset(split), batch_size=64):
                    tracks.update(model(wave), target, track + 100 * ("train", "val", "test").index(split))
        aucs.append(float(tracks.compute()["track_auc"]))
    print("untrained macro ROC-AUC", aucs)
    assert abs(np.mean(aucs) - 0.5) < 0.1, aucs


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory, data_dir):
    from conftest import mgr_in_process

    cwd = tmp_path_factory.mktemp("multilabel_run")
    return run_dir_of(mgr_in_process("train", *TINY_MULTILABEL, cwd=cwd, data_dir=data_dir))


def test_a_multilabel_run_tests_writes_its_predictions_and_keeps_its_thresholds(multilabel_run):
    metrics = json.loads((multilabel_run / "metrics.json").read_text())
    names = metrics["class_names"]
    assert metrics["task"] == "multilabel" and metrics["track_aggregation"] == "mean_probs"
    assert metrics["test/track_auc"] > 0.85  # it learned
    for key in ("auc", "auc_micro", "ap", "ap_micro"):
        assert 0 <= metrics[f"test/track_{key}"] <= 1 and 0 <= metrics[f"test/{key}"] <= 1
    checkpoint = load_model(metrics["best_checkpoint"])
    assert checkpoint.multilabel and checkpoint.thresholds == metrics["thresholds"] and len(names) == 5
    with open(multilabel_run / "test_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:4] == ["path", "labels", "predictions", "chunks"]
    probabilities = np.array([[float(r[f"score_{c}"]) for c in names] for r in rows])
    labels = np.array([[c in r["labels"].split(";") for c in names] for r in rows])
    answered = np.array([[c in r["predictions"].split(";") for c in names] for r in rows])
    assert (answered == (probabilities >= np.array(metrics["thresholds"]) - 1e-6)).all()
    assert roc_auc_score(labels, probabilities) == pytest.approx(metrics["test/track_auc"], abs=1e-4)
    assert f1_score(labels, answered, average="macro") == pytest.approx(metrics["test/track_f1"], abs=1e-4)


def test_predict_answers_the_genres_above_their_thresholds(multilabel_run, run_mgr, data_dir):
    metrics = json.loads((multilabel_run / "metrics.json").read_text())
    folder = data_dir / "synth" / "v1-seed0-12x2-3.5s-mix"  # TINY_MULTILABEL's
    proc = run_mgr("predict", f"ckpt_path={metrics['best_checkpoint']}", f"inputs=[{folder / 'swing'}]",
                   "min_confidence=0.5")
    assert "genres at or above their thresholds" in proc.stdout
    low, high = min(metrics["calibration"]["temperature"]), max(metrics["calibration"]["temperature"])
    assert f"probabilities at per-tag temperatures {low:.3g} to {high:.3g}, on" in proc.stdout  # calibrated, per tag
    run_dir = Path(proc.stdout.rsplit(" in ", 1)[1].strip())
    assert json.loads((run_dir / "predictions.json").read_text())["temperature"] == metrics["calibration"]["temperature"]
    files = json.loads((run_dir / "predictions.json").read_text())["files"]
    thresholds = dict(zip(metrics["class_names"], metrics["thresholds"]))
    assert len(files) == 12
    for f in files:
        answers = {a["genre"]: a["probability"] for a in f["answers"]}
        assert answers == {g: p for g, p in f["probabilities"].items() if p >= thresholds[g]}
        top = max(answers.values(), default=0.0)
        assert (f["genre"] == "unknown") == (top < 0.5)
        assert f["genre"] == "unknown" or f["genre"] == ";".join(sorted(answers, key=lambda g: -answers[g]))


def test_eval_scores_a_multilabel_checkpoint_as_its_run_did(multilabel_run, run_mgr):
    metrics = json.loads((multilabel_run / "metrics.json").read_text())
    again = metrics_of(run_mgr("eval", f"ckpt_path={metrics['best_checkpoint']}", "~callbacks.plots"))
    for key in ("test/track_auc", "test/track_ap", "test/track_f1", "test/auc_micro", "test/ece", "test/track_ece",
                "test/ece_uncalibrated", "test/track_ece_uncalibrated"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-5), key
    assert again["calibration"]["temperature"] == metrics["calibration"]["temperature"]


@pytest.mark.parametrize("parents", [None, {"a": None, "b": "a", "c": None, "d": "c"}], ids=["flat", "tree"])
def test_the_multilabel_risk_coverage_is_what_min_confidence_answers(parents):
    """The test report's risk-coverage of a multi-label model (mgr.test_report.risk_coverage_forecasts), on
    made-up test tracks, against mgr.predict's own rule for each (answered_tags, is_unknown: rolled up the
    tree where there is one): at each row's min_confidence, the row's share of the tracks is answered, and
    of those the share whose first answer is right and the mean F1 of their answers (scikit-learn's) are
    the row's; the tracks with no tag at its threshold are never answered."""
    from mgr.predict import answered_tags, is_unknown
    from mgr.statistics import risk_coverage_table
    from mgr.test_report import risk_coverage_forecasts

    names = ["a", "b", "c", "d"]
    model = GenreClassifier(names, {"name": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 32}, 8000, 1.0,
                            {"name": "cnn", "channels": [8], "hidden": 8}, task="multilabel",
                            track_aggregation="mean_probs", thresholds=[0.6, 0.5, 0.7, 0.4], class_parents=parents)
    rng = np.random.default_rng(0)
    labels = (rng.random((40, 4)) < 0.4).astype(np.float32)
    probabilities = np.clip(0.35 * labels + 0.65 * rng.random((40, 4)), 0, 1)
    tested = {"track_scores": probabilities, "track_labels": labels}
    table = risk_coverage_table(*risk_coverage_forecasts(tested, model))
    predicted = [answered_tags(model, torch.as_tensor(p)) for p in probabilities]  # (rolled up) probabilities, tags
    tags = [t for _, t in predicted]
    assert 0 < sum(not t for t in tags) < 20  # some tracks have no answer: the curve ends below 1
    assert table[-1]["coverage"] == np.mean([bool(t) for t in tags]) < 1
    for row in table:
        answered = [k for k, (p, t) in enumerate(predicted) if not is_unknown(p, t, row["min_confidence"])]
        assert len(answered) / len(tags) == pytest.approx(row["coverage"])
        assert np.mean([labels[k, tags[k][0]] for k in answered]) == pytest.approx(row["top_tag_precision"])
        f1 = [f1_score(labels[k], np.isin(np.arange(4), tags[k])) for k in answered]
        assert np.mean(f1) == pytest.approx(row["sample_f1"])


def test_a_multilabel_run_reports_its_risk_coverage(multilabel_run):
    """metrics.json's risk_coverage at 0.1, 0.2, ... of the test tracks, ending at the share with any answer
    in test_predictions.csv; at that last row every answered track counts: its first answer's precision and
    its answers' mean F1 (scikit-learn's) are those of the answers the csv lists."""
    metrics = json.loads((multilabel_run / "metrics.json").read_text())
    names, table = metrics["class_names"], metrics["risk_coverage"]
    with open(multilabel_run / "test_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    answered = [r for r in rows if r["predictions"]]
    assert table[-1]["coverage"] == len(answered) / len(rows)
    assert [row["coverage"] for row in table[:-1]] == pytest.approx([k / 10 for k in range(1, len(table))])
    labels = np.array([[c in r["labels"].split(";") for c in names] for r in answered])
    answers = np.array([[c in r["predictions"].split(";") for c in names] for r in answered])
    scores = np.array([[float(r[f"score_{c}"]) for c in names] for r in answered])
    first = np.where(answers, scores, -1).argmax(1)  # the most probable answer (the csv lists them in class order)
    assert table[-1]["top_tag_precision"] == pytest.approx(labels[np.arange(len(first)), first].mean())
    assert table[-1]["sample_f1"] == pytest.approx(f1_score(labels, answers, average="samples"))
    assert table[0]["min_confidence"] >= table[-1]["min_confidence"] and table[0]["top_tag_precision"] > 0.5


def test_a_multilabel_run_is_calibrated_per_tag(multilabel_run, data_dir):
    """The run fitted one temperature per tag on validation (a lower mean BCE), stored in its best checkpoint,
    whose forward gives the calibrated probabilities; its report has the ECE before and after, and the track
    ECE is that of every (track, tag) probability it wrote in test_predictions.csv."""
    from mgr import statistics

    metrics = json.loads((multilabel_run / "metrics.json").read_text())
    names, fit = metrics["class_names"], metrics["temperature_fit"]
    assert len(fit["temperature"]) == len(names) and fit["val_nll_after"] < fit["val_nll_before"]
    model = load_model(metrics["best_checkpoint"]).eval()
    assert model.temperature == fit["temperature"] == metrics["calibration"]["temperature"]
    assert any(t != 1.0 for t in model.temperature)
    wave = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = torch.sigmoid(model.head(model.encoder(wave)) / torch.tensor(fit["temperature"]))
        torch.testing.assert_close(torch.sigmoid(model(wave)), expected)
    for key in ("ece", "track_ece"):
        assert 0 <= metrics[f"test/{key}"] <= 1 and metrics[f"test/{key}"] != metrics[f"test/{key}_uncalibrated"]
    with open(multilabel_run / "test_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    probabilities = np.array([[float(r[f"score_{c}"]) for c in names] for r in rows])
    labels = np.array([[c in r["labels"].split(";") for c in names] for r in rows])
    assert metrics["test/track_ece"] == pytest.approx(
        statistics.expected_calibration_error(*statistics.tag_forecasts(probabilities, labels)), abs=1e-4)
    assert metrics["calibration"]["binning"] == "equal-width bins of every (item, tag) probability"


# Tracks combined by their mean logits, on which each tag's temperature acts monotonically: the same tracks
# are answered before and after calibration. Fewer epochs than TINY_MULTILABEL: calibration, not accuracy.
MEAN_LOGITS = ["task=multilabel", *tiny("cnn", "mel", epochs=4), "data.source_options.tracks_per_class=12",
               "data.split={train: 0.5, val: 0.17, test: 0.33}", "optimizer.lr=3e-3", "track_aggregation=mean_logits"]


@pytest.fixture(scope="module")
def mean_logits_runs(tmp_path_factory, data_dir) -> dict[bool, dict]:
    """The metrics of one multi-label run calibrated (with its plots) and of the same run with calibrate=false."""
    from conftest import mgr_in_process

    runs = {}
    for calibrated in (True, False):
        cwd = tmp_path_factory.mktemp(f"mean_logits_{calibrated}")
        extra = [] if calibrated else ["calibrate=false", "~callbacks.plots"]
        runs[calibrated] = run_dir_of(mgr_in_process("train", *MEAN_LOGITS, *extra, cwd=cwd, data_dir=data_dir))
    return runs


def test_calibrate_false_leaves_t_1_and_the_uncalibrated_ece_is_that_run_s(mean_logits_runs):
    """calibrate=false keeps T = 1 (its ECE before and after are one); the calibrated run's ECE at T = 1 is
    exactly the uncalibrated run's ECE (the same weights), and its test F1 is the same (temperature first,
    then thresholds: the same validation tracks answered, so the same test tracks)."""
    from mgr.models import read_checkpoint
    from test_plots import assert_png

    calibrated, plain = (json.loads((mean_logits_runs[k] / "metrics.json").read_text()) for k in (True, False))
    assert "temperature_fit" not in plain and plain["calibration"]["temperature"] == 1.0
    assert read_checkpoint(plain["best_checkpoint"])["hyper_parameters"]["temperature"] == 1.0
    assert load_model(plain["best_checkpoint"]).temperature == 1.0
    for key in ("ece", "track_ece"):
        assert plain[f"test/{key}"] == plain[f"test/{key}_uncalibrated"]
        assert calibrated[f"test/{key}_uncalibrated"] == pytest.approx(plain[f"test/{key}"], abs=1e-6)
        assert calibrated[f"test/{key}"] != calibrated[f"test/{key}_uncalibrated"]
    assert calibrated["temperature_fit"]["val_nll_after"] < calibrated["temperature_fit"]["val_nll_before"]
    for key in ("test/track_f1", "test/track_f1_micro", "test/track_auc", "test/track_ap"):
        assert calibrated[key] == pytest.approx(plain[key], abs=1e-6), key
    assert_png(mean_logits_runs[True] / "plots" / "reliability.png")
    assert_png(mean_logits_runs[True] / "plots" / "risk_coverage.png")
    for name in ("tag_scores.png", "precision_recall.png"):  # per-tag ROC-AUC and PR-AUC bars, PR curves
        assert_png(mean_logits_runs[True] / "plots" / name)
    assert set(calibrated["risk_coverage"][0]) == {"coverage", "min_confidence", "top_tag_precision", "sample_f1"}
