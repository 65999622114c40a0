"""mgr.report: grouping and pairing on hand-made run folders (no training), and a real 3-fold x
2-model multirun whose report must equal what mgr.statistics computes from its test_predictions.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import average_precision_score, roc_auc_score

from conftest import NO_PLOTS, tiny
from mgr import MGRError, statistics, sweep_report
from mgr.test_report import BOOTSTRAP, per_class_scores

CLASSES = ["rock", "jazz"]
TRACKS = [f"{CLASSES[i % 2]}/{CLASSES[i % 2]}.{i:04d}.wav" for i in range(12)]  # fold k tests tracks k, k+3, ...
WRONG = {"good": {0}, "mid": {0, 1, 2, 4}, "bad": {0, 1, 2, 3, 4, 5, 7, 9}}  # which tracks each model gets wrong


def make_run(run_dir: Path, model: str, seed: int, fold: int, extra: tuple[str, ...] = (), wrong=None,
             dataset: str = "synth") -> Path:
    """A finished run as mgr.train leaves it: .hydra/, metrics.json and test_predictions.csv of fold `fold` of 3."""
    wrong = WRONG[model] if wrong is None else wrong
    wrong = {(i + seed) % 12 for i in wrong}  # another seed, other mistakes
    tracks = [i for i in range(12) if i % 3 == fold]
    labels = [i % 2 for i in tracks]
    predictions = [1 - label if i in wrong else label for i, label in zip(tracks, labels)]
    (run_dir / ".hydra").mkdir(parents=True)
    overrides = [f"data={dataset}", f"model={model}", f"seed={seed}", "data.folds=3", f"data.fold={fold}",
                 "trainer.max_epochs=1", *extra]
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    choices = {"data": dataset, "feature": "mel", "model": model}
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    config = {"seed": seed, "data": {"split_seed": 0, "folds": 3, "fold": fold}}
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    confusion = statistics.unit_confusions(labels, predictions, np.arange(len(tracks)), 2).sum(0)
    accuracy, macro_f1 = statistics.scores(confusion)
    metrics = {"test/track_acc": float(accuracy), "test/track_f1": float(macro_f1), "test/acc": float(accuracy),
               "test/f1": float(macro_f1), "class_names": CLASSES,
               "track_per_class": per_class_scores(confusion.tolist(), CLASSES)}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    with open(run_dir / "test_predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "prediction", "chunks", *(f"score_{c}" for c in CLASSES),
                         "seed", "split_seed", "fold", "folds"])
        for i, label, prediction in zip(tracks, labels, predictions):
            writer.writerow([TRACKS[i], CLASSES[label], CLASSES[prediction], 2, *np.eye(2)[prediction], seed, 0, fold, 3])
    return run_dir


def make_sweep(root: Path, models=("good", "mid", "bad"), seeds=(1, 2)) -> Path:
    for n, (model, seed, fold) in enumerate((m, s, f) for m in models for s in seeds for f in range(3)):
        make_run(root / str(n), model, seed, fold)
    return root


def read_runs(root: Path) -> list[dict]:
    runs = [sweep_report.read_run(f) for f in sorted(root.rglob("metrics.json"))]
    sweep_report.keep_differing_overrides(runs)
    for run in runs:
        run["predictions"] = sweep_report.read_predictions(run)
    return runs


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_replicate_axes_are_counted_not_grouped(tmp_path):
    runs = read_runs(make_sweep(tmp_path))
    groups = sweep_report.group_configurations(runs)
    assert [key[2] for key in groups] == ["bad", "good", "mid"]
    assert all(key[3] == "" for key in groups)  # seed and fold overrides are axes, shared ones are dropped
    rows = sweep_report.summarize(groups, BOOTSTRAP, sweep_report.MULTICLASS)
    assert [(r["n"], r["seeds"], r["split_seeds"], r["folds"]) for r in rows] == [(6, 2, 1, 3)] * 3
    good = next(r for r in rows if r["model"] == "good")
    accs = {(r["seed"], r["fold"]): r["test/track_acc"] for r in runs if r["model"] == "good"}
    # along seeds: the std of the two seeds of each fold, root-mean-square over the three folds
    expected = np.sqrt(np.mean([np.var([accs[1, f], accs[2, f]], ddof=1) for f in range(3)]))
    assert good["test/track_acc_std_over_seeds"] == pytest.approx(expected)
    assert good["test/track_acc_std"] == pytest.approx(np.std(list(accs.values()), ddof=1))
    assert "test/track_acc_std_over_split_seeds" not in good  # one split seed: no std along it
    # folds pooled: 2 seeds x 12 tracks, each track once per seed; good misses one track per seed
    assert (good["pooled_tracks"], good["pooled_predictions"], good["pooled_track_acc"]) == (12, 24, pytest.approx(22 / 24))


def test_runs_pair_by_seed_split_seed_and_fold_and_tracks_by_path(tmp_path):
    make_run(tmp_path / "a0", "good", 1, 0)
    make_run(tmp_path / "a1", "good", 1, 1)
    make_run(tmp_path / "a2", "good", 2, 0)
    make_run(tmp_path / "b0", "bad", 1, 0)
    make_run(tmp_path / "b1", "bad", 1, 2)  # no good run of fold 2: unpaired
    make_run(tmp_path / "b2", "bad", 2, 0)
    runs = read_runs(tmp_path)
    pairs = sweep_report.matched(list(sweep_report.paired_rows([r for r in runs if r["model"] == "good"],
                                                             [r for r in runs if r["model"] == "bad"])))
    assert list(pairs) == [(1, 0), (2, 0)]  # (seed, split seed), fold 0 only
    paths, good, bad = pairs[1, 0]
    fold_0 = sorted((0, 3, 6, 9), key=TRACKS.__getitem__)  # tracks in path order
    assert paths == [f"synth:{TRACKS[i]}" for i in fold_0]  # a track is a path within its dataset
    assert good.tolist() == [i not in {1} for i in fold_0]  # seed 1 shifts the mistakes by one
    assert bad.tolist() == [i not in {1, 2, 3, 4, 5, 6, 8, 10} for i in fold_0]


def test_runs_of_one_command_line_by_other_configs_are_told_apart_by_them(tmp_path):
    """Two seeds of `good` by one code, one seed of it by code whose recipe differs: the config value names them."""
    for name, seed, steps in (("x1", 1, None), ("x2", 2, None), ("y1", 1, 1000)):
        run = make_run(tmp_path / name, "good", seed, 0)
        config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        if steps:
            config["recipe"] = {"min_steps": steps}
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    groups = sweep_report.group_configurations(read_runs(tmp_path))
    assert {key[-1]: len(members) for key, members in groups.items()} == {"recipe.min_steps=None": 2,
                                                                         "recipe.min_steps=1000": 1}


def test_two_runs_of_one_replicate_are_one_clear_error(tmp_path):
    make_run(tmp_path / "x", "good", 1, 0)
    make_run(tmp_path / "y", "good", 1, 0)
    with pytest.raises(MGRError, match="have the same configuration, seed, split seed and fold"):
        sweep_report.group_configurations(read_runs(tmp_path))


def test_report_of_three_configurations_equals_mgr_stats(run_mgr, tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    proc = run_mgr("report", f"sweep_dir={sweep}", "alpha=0.1")
    assert "18 runs in 3 groups" in proc.stdout
    runs = read_runs(sweep)
    pairs = {(p["a"], p["b"], p["replicate"]): p for p in read_csv(sweep / "report_pairs.csv")}
    assert {k[:2] for k in pairs} == {("model=bad", "model=good"), ("model=bad", "model=mid"), ("model=good", "model=mid")}
    p_values, expected = [], {}
    for a, b in sorted({k[:2] for k in pairs}):
        a_runs, b_runs = ([r for r in runs if f"model={r['model']}" == name] for name in (a, b))
        correct = {}
        for run in a_runs + b_runs:
            for path, (label, prediction) in run["predictions"]["rows"].items():
                correct[run["model"], run["seed"], run["fold"], path] = label == prediction
        keys = sorted(k[1:] for k in correct if k[0] == a_runs[0]["model"])
        a_correct = [correct[(a_runs[0]["model"], *k)] for k in keys]
        b_correct = [correct[(b_runs[0]["model"], *k)] for k in keys]
        difference = statistics.paired_bootstrap_difference(a_correct, b_correct, [k[2] for k in keys], 1000, 0)
        for seed in (1, 2):
            test = statistics.mcnemar_exact(*([c for k, c in zip(keys, x) if k[0] == seed] for x in (a_correct, b_correct)))
            row = pairs[a, b, str((seed, 0))]
            assert (int(row["only_a"]), int(row["only_b"]), float(row["p"])) == (test["only_a"], test["only_b"], pytest.approx(test["p"]))
            assert float(row["difference"]) == pytest.approx(difference["difference"])
            assert (float(row["lo"]), float(row["hi"])) == pytest.approx(difference["interval"])
            p_values.append(test["p"])
            expected[a, b, str((seed, 0))] = len(p_values) - 1
    blocks = sorted({(r["seed"], r["fold"]) for r in runs})
    scores = np.array([[next(r["test/track_acc"] for r in runs if r["model"] == m and (r["seed"], r["fold"]) == k)
                        for m in ("bad", "good", "mid")] for k in blocks])
    friedman = statistics.friedman(scores)
    holm = statistics.holm([*p_values, friedman["p"]])
    for key, i in expected.items():
        assert float(pairs[key]["holm"]) == pytest.approx(holm[i])
    text = (sweep / "report.md").read_text()
    assert f"Friedman over 6 matched runs: chi2={friedman['statistic']:.3f}, p={friedman['p']:.3g} (Holm {holm[-1]:.3g})" in text
    assert "average ranks (1 best): model=bad {:.2f}, model=good {:.2f}, model=mid {:.2f}".format(*friedman["average_ranks"]) in text
    good_bad = pairs["model=bad", "model=good", "(1, 0)"]
    d, lo, hi = (-100 * float(good_bad[k]) for k in ("difference", "hi", "lo"))
    verdicts = sum(holm[expected["model=bad", "model=good", str((s, 0))]] < 0.1 for s in (1, 2))
    assert (f"model=good beats model=bad by {d:.1f} points (95% CI {lo:.1f} to {hi:.1f}, 24 paired track predictions), "
            f"McNemar p=") in text and f"significant at alpha=0.1 in {verdicts} of 2 replicates" in text
    assert "| configuration | over seeds | over folds |" in text  # the std along each axis that varies
    for name in ("report.png", "report_pairs.png"):
        assert (sweep / name).read_bytes()[:4] == b"\x89PNG"


def test_a_suite_is_paired_within_each_dataset_and_pooled_over_them(run_mgr, tmp_path):
    # Two tasks whose tracks have the same paths and labels: a path is a track only within its dataset.
    sweep = tmp_path / "sweep"
    for n, (dataset, model, fold) in enumerate((d, m, f) for d in ("long", "short") for m in ("good", "bad")
                                               for f in range(3)):
        wrong = WRONG[model] if dataset == "long" else {5, 6, 7, 8, 9, 10, 11} - WRONG[model]
        make_run(sweep / str(n), model, 1, fold, wrong=wrong, dataset=dataset)
    proc = run_mgr("report", f"sweep_dir={sweep}")
    assert "12 runs in 4 groups" in proc.stdout and "report_suite.csv" in proc.stdout
    runs = read_runs(sweep)
    correct = {(r["dataset"], r["model"], path): label == prediction for r in runs
               for path, (label, prediction) in r["predictions"]["rows"].items()}
    pairs = {(p["view"], p["a"], p["b"]): p for p in read_csv(sweep / "report_pairs.csv")}
    assert set(pairs) == {("per dataset", "dataset=long model=bad", "dataset=long model=good"),
                          ("per dataset", "dataset=short model=bad", "dataset=short model=good"),
                          ("pooled over datasets", "model=bad", "model=good")}  # never long against short
    keys = sorted((d, path) for d, m, path in correct if m == "bad")
    assert len(keys) == 24  # 12 tracks in each dataset, kept apart
    bad, good = ([correct[d, m, path] for d, path in keys] for m in ("bad", "good"))
    pooled_pair = pairs["pooled over datasets", "model=bad", "model=good"]
    test = statistics.mcnemar_exact(bad, good)
    difference = statistics.paired_bootstrap_difference(bad, good, [f"{d}:{p}" for d, p in keys], 1000, 0)
    assert (int(pooled_pair["tracks"]), int(pooled_pair["only_a"]), int(pooled_pair["only_b"])) == (
        24, test["only_a"], test["only_b"])
    assert float(pooled_pair["p"]) == pytest.approx(test["p"])
    assert float(pooled_pair["difference"]) == pytest.approx(difference["difference"])
    assert (float(pooled_pair["lo"]), float(pooled_pair["hi"])) == pytest.approx(difference["interval"])
    p_values = [float(pairs[k]["p"]) for k in sorted(pairs)]  # Holm over the three tests together
    assert [float(pairs[k]["holm"]) for k in sorted(pairs)] == pytest.approx(statistics.holm(p_values))

    suite = {r["name"]: r for r in read_csv(sweep / "report_suite.csv")}
    per_dataset = {(r["dataset"], r["model"]): float(r["pooled_track_acc"]) for r in read_csv(sweep / "report.csv")}
    good_row = suite["model=good"]
    assert (good_row["datasets"], good_row["runs"], good_row["pooled_tracks"]) == ("2", "6", "24")
    assert float(good_row["long_pooled_track_acc"]) == per_dataset["long", "good"]
    assert float(good_row["mean_over_datasets"]) == pytest.approx((per_dataset["long", "good"]
                                                                   + per_dataset["short", "good"]) / 2)
    assert float(good_row["pooled_track_acc"]) == pytest.approx(np.mean(good))
    units = [np.array([correct[d, "good", p] for d, p in keys])]
    confusions = statistics.unit_confusions(np.ones(24, int), units[0].astype(int), np.arange(24), 2)
    interval = statistics.bootstrap_scores(confusions, 1000, 0)["accuracy"]
    assert (float(good_row["pooled_track_acc_lo"]), float(good_row["pooled_track_acc_hi"])) == pytest.approx(interval)
    text = (sweep / "report.md").read_text()
    assert "## Pooled over datasets" in text
    assert (f"| model=good | 2 | 6 | {per_dataset['long', 'good']:.3f} | {per_dataset['short', 'good']:.3f} | "
            f"{float(good_row['mean_over_datasets']):.3f} | {np.mean(good):.3f} [{interval[0]:.3f}, {interval[1]:.3f}] |") in text
    assert "- Pooled over datasets: model=good beats model=bad by" in text


def test_one_dataset_has_no_suite_view(tmp_path):
    groups = sweep_report.group_configurations(read_runs(make_sweep(tmp_path, seeds=(1,))))
    assert sweep_report.systems(groups) == {}


@pytest.mark.slow
def test_report_of_a_fold_multirun_equals_mgr_stats_on_its_predictions(run_mgr, tmp_path):
    overrides = [o for o in tiny() if not o.startswith("model")]
    run_mgr("train", "-m", "model=cnn,crnn", "data.folds=3", "data.fold=0,1,2", *overrides, "debug=limit", *NO_PLOTS)
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    proc = run_mgr("report", f"sweep_dir={sweep}")
    assert "6 runs in 2 groups" in proc.stdout
    for name in ("report.md", "report.csv", "report_runs.csv", "report_pairs.csv"):
        assert (sweep / name).stat().st_size > 0
    for name in ("report.png", "report_pairs.png"):
        assert (sweep / name).read_bytes()[:4] == b"\x89PNG"
    rows = {r["model"]: r for r in read_csv(sweep / "report.csv")}
    assert set(rows) == {"cnn", "crnn"}
    jobs = {m: [j for j in sweep.iterdir() if j.is_dir() and f"model={m}" in (j / ".hydra" / "overrides.yaml").read_text()]
            for m in rows}
    predictions = {}
    for model, row in rows.items():
        accs = [json.loads((job / "metrics.json").read_text())["test/track_acc"] for job in jobs[model]]
        assert (row["n"], row["seeds"], row["split_seeds"], row["folds"]) == ("3", "1", "1", "3")
        assert float(row["test/track_acc_mean"]) == pytest.approx(np.mean(accs))
        assert float(row["test/track_acc_std"]) == pytest.approx(np.std(accs, ddof=1))
        assert float(row["test/track_acc_std_over_folds"]) == pytest.approx(np.std(accs, ddof=1))
        # folds pooled: every track of the dataset once, scored and bootstrapped by mgr.statistics
        files = [read_csv(job / "test_predictions.csv") for job in jobs[model]]
        pooled = sorted((r["path"], r["label"], r["prediction"], r["fold"]) for f in files for r in f)
        assert len({p[0] for p in pooled}) == len(pooled) and {p[3] for p in pooled} == {"0", "1", "2"}
        names = json.loads((jobs[model][0] / "metrics.json").read_text())["class_names"]
        confusions = statistics.unit_confusions([names.index(p[1]) for p in pooled], [names.index(p[2]) for p in pooled],
                                           np.arange(len(pooled)), len(names))
        accuracy, macro_f1 = statistics.scores(confusions.sum(0))
        interval = statistics.bootstrap_scores(confusions, 1000, 0)
        assert float(row["pooled_track_acc"]) == pytest.approx(accuracy)
        assert float(row["pooled_track_f1"]) == pytest.approx(macro_f1)
        assert (float(row["pooled_track_acc_lo"]), float(row["pooled_track_acc_hi"])) == pytest.approx(interval["accuracy"])
        predictions[model] = {p[0]: p[1] == p[2] for p in pooled}
        assert f"{accuracy:.3f} [{interval['accuracy'][0]:.3f}, {interval['accuracy'][1]:.3f}]" in proc.stdout
    (pair,) = read_csv(sweep / "report_pairs.csv")
    paths = sorted(predictions["cnn"])
    cnn, crnn = ([predictions[m][p] for p in paths] for m in ("cnn", "crnn"))
    test = statistics.mcnemar_exact(cnn, crnn)
    difference = statistics.paired_bootstrap_difference(cnn, crnn, paths, 1000, 0)
    assert (pair["a"], pair["b"], int(pair["tracks"])) == ("model=cnn", "model=crnn", len(paths))
    assert (int(pair["only_a"]), int(pair["only_b"])) == (test["only_a"], test["only_b"])
    assert float(pair["p"]) == float(pair["holm"]) == pytest.approx(test["p"])  # one test: Holm changes nothing
    assert float(pair["difference"]) == pytest.approx(difference["difference"])
    assert (float(pair["lo"]), float(pair["hi"])) == pytest.approx(difference["interval"])
    assert f"McNemar p={test['p']:.3g} (Holm {test['p']:.3g})" in proc.stdout
    assert "| synth | mel | cnn | 3 | 1 x 1 x 3 |" in (sweep / "report.md").read_text()


@pytest.mark.parametrize("sweep_dir,text", [
    (None, "sweep_dir is missing; run python -m mgr.report sweep_dir="),
    ("empty", "no finished runs (metrics.json beside .hydra/) below"),
    ("absent", "is not a directory"),
])
def test_report_without_runs_is_one_clear_error(run_mgr, tmp_path, sweep_dir, text):
    (tmp_path / "empty").mkdir()
    proc = run_mgr("report", *([f"sweep_dir={tmp_path / sweep_dir}"] if sweep_dir else []), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mgr: error:")]
    assert len(errors) == 1 and text in errors[0], proc.stderr


# --- multi-label runs (task=multilabel): pooled macro ROC-AUC / PR-AUC and paired bootstrap differences ---
TAGS = ["a", "b", "c", "never"]  # no track carries "never": it has no ROC-AUC and is left out of the macro means
TAG_LABELS = np.random.default_rng(0).random((12, 4)) < 0.5
TAG_LABELS[:, 3] = False
TAG_LABELS[0, :3], TAG_LABELS[1, :3] = True, False  # every scored tag has positives and negatives


def tag_scores(model: str, seed: int) -> np.ndarray:
    """[12 tracks, 4 tags]: "good" ranks the positives high (with some noise), "same" is "good" again,
    "bad" is noise; another seed, other noise."""
    noise = np.random.default_rng(seed + 10 * (model == "bad")).random(TAG_LABELS.shape)
    return np.round(noise if model == "bad" else 0.3 * TAG_LABELS + 0.7 * noise, 6)


def make_multilabel_run(run_dir: Path, model: str, seed: int, fold: int) -> Path:
    """A finished task=multilabel run of fold `fold` of 3, as mgr.train leaves it (test_report's files)."""
    tracks = [i for i in range(12) if i % 3 == fold]
    labels, scores = TAG_LABELS[tracks], tag_scores(model, seed)[tracks]
    (run_dir / ".hydra").mkdir(parents=True)
    overrides = ["task=multilabel", "data=synth_multilabel", f"model={model}", f"seed={seed}", "data.folds=3",
                 f"data.fold={fold}"]
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    choices = {"data": "synth_multilabel", "feature": "mel", "model": model}
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    config = {"seed": seed, "task": "multilabel", "data": {"split_seed": 0, "folds": 3, "fold": fold}}
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    scored = labels.any(0) & ~labels.all(0)
    auc = float(roc_auc_score(labels[:, scored], scores[:, scored]))
    per_class = [{"label": t, "roc_auc": float(roc_auc_score(labels[:, k], scores[:, k])) if scored[k] else 0.0,
                  "f1": 0.5} for k, t in enumerate(TAGS)]
    metrics = {"test/track_auc": auc, "test/track_ap": auc, "test/track_f1": 0.5, "test/auc": auc, "test/ap": auc,
               "class_names": TAGS, "task": "multilabel", "track_per_class": per_class}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    with open(run_dir / "test_predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "labels", "predictions", "chunks", *(f"score_{t}" for t in TAGS),
                         "seed", "split_seed", "fold", "folds"])
        for i, row, score in zip(tracks, labels, scores):
            tags = ";".join(t for t, yes in zip(TAGS, row) if yes)
            writer.writerow([TRACKS[i], tags, tags, 2, *score, seed, 0, fold, 3])
    return run_dir


def make_multilabel_sweep(root: Path, models=("bad", "good", "same"), seeds=(1,)) -> Path:
    for n, (model, seed, fold) in enumerate((m, s, f) for m in models for s in seeds for f in range(3)):
        make_multilabel_run(root / str(n), model, seed, fold)
    return root


SMALL_BOOTSTRAP = {"resamples": 200, "seed": 0}


def test_multilabel_pooled_macro_aucs_equal_scikit_learns_with_their_bootstrap_intervals(tmp_path):
    sweep = make_multilabel_sweep(tmp_path / "sweep", models=("good",), seeds=(1, 2))
    sweep_report.write_report(sweep, 0.05, SMALL_BOOTSTRAP)
    (row,) = read_csv(sweep / "report.csv")
    # folds pooled: every track once per seed; "never" has no positive and is left out of the macro means
    labels = np.concatenate([TAG_LABELS] * 2)[:, :3]
    scores = np.concatenate([tag_scores("good", 1), tag_scores("good", 2)])[:, :3]
    assert (row["pooled_runs"], row["pooled_tracks"], row["pooled_predictions"]) == ("6", "12", "24")
    assert row["tags_left_out"] == "never"
    auc, ap = roc_auc_score(labels, scores), average_precision_score(labels, scores)
    assert 0.7 < auc < 1  # informative, not perfect
    assert float(row["pooled_track_auc"]) == pytest.approx(auc, abs=1e-6)
    assert float(row["pooled_track_ap"]) == pytest.approx(ap, abs=1e-6)
    # The interval: the same resamples of tracks (each with its two rows), scored by scikit-learn's weighted AUC.
    draws = statistics.resample_weights(12, SMALL_BOOTSTRAP["resamples"], SMALL_BOOTSTRAP["seed"])
    track = np.tile(np.argsort(np.argsort(TRACKS)), 2)  # tracks are numbered in path order
    resampled = []
    for weights in draws[:, track]:
        scored = [k for k in range(3) if 0 < (weights * labels[:, k]).sum() < weights.sum()]
        resampled.append(np.mean([roc_auc_score(labels[:, k], scores[:, k], sample_weight=weights) for k in scored]))
    expected = statistics.percentile_interval(np.array(resampled))
    assert (float(row["pooled_track_auc_lo"]), float(row["pooled_track_auc_hi"])) == pytest.approx(expected, abs=1e-6)
    text = (sweep / "report.md").read_text()
    assert "pooled track macro ROC-AUC [95% CI]" in text and "| Per-tag track ROC-AUC" not in text
    assert f"{auc:.3f} [{expected[0]:.3f}, {expected[1]:.3f}]" in text
    assert ("Tags left out of the pooled macro means (no positive or no negative among the pooled test tracks): "
            "synth_multilabel/mel/good: never.") in text


def test_multilabel_pairs_are_paired_bootstrap_differences_of_macro_auc_with_holm(tmp_path):
    sweep = make_multilabel_sweep(tmp_path / "sweep")
    sweep_report.write_report(sweep, 0.05, SMALL_BOOTSTRAP)
    pairs = {(p["a"], p["b"]): p for p in read_csv(sweep / "report_pairs.csv")}
    assert set(pairs) == {("model=bad", "model=good"), ("model=bad", "model=same"), ("model=good", "model=same")}
    labels = TAG_LABELS[:, :3]
    auc = {m: roc_auc_score(labels, tag_scores(m, 1)[:, :3]) for m in ("bad", "good")}
    bad_good = pairs["model=bad", "model=good"]
    assert (bad_good["tracks"], bad_good["tags"]) == ("12", "3")
    assert float(bad_good["difference"]) == pytest.approx(auc["bad"] - auc["good"], abs=1e-6) and auc["good"] - auc["bad"] > 0.3
    assert float(bad_good["hi"]) < 0 and float(bad_good["p"]) < 0.02  # clearly worse: a small p
    good_same = pairs["model=good", "model=same"]
    assert float(good_same["difference"]) == float(good_same["lo"]) == float(good_same["hi"]) == 0 and float(good_same["p"]) == 1
    # Holm over the three pairs' p-values and Friedman's test of the runs' macro ROC-AUC, together
    runs = read_runs(sweep)
    blocks = [[next(r["test/track_auc"] for r in runs if (r["model"], r["fold"]) == (m, f)) for m in ("bad", "good", "same")]
              for f in range(3)]
    p_values = [float(pairs[k]["p"]) for k in sorted(pairs)]
    holm = statistics.holm([*p_values, statistics.friedman(np.array(blocks))["p"]])
    assert [float(pairs[k]["holm"]) for k in sorted(pairs)] == pytest.approx(holm[:3])
    text = (sweep / "report.md").read_text()
    assert "## Paired comparisons on the same test tracks (track macro ROC-AUC)" in text
    assert (f"- model=good beats model=bad by {100 * (auc['good'] - auc['bad']):.1f} points of macro ROC-AUC (95% CI "
            in text and f"paired bootstrap p={float(bad_good['p']):.3g} (Holm {holm[0]:.3g}): significant at alpha=0.05." in text)
    assert "- model=good and model=same tie on macro ROC-AUC" in text and "p=1 (Holm 1): not significant" in text


def test_a_multilabel_suite_pairs_systems_within_each_dataset(tmp_path):
    sweep = tmp_path / "sweep"
    for n, (dataset, model, fold) in enumerate((d, m, f) for d in ("one", "two") for m in ("bad", "good") for f in range(3)):
        run = make_multilabel_run(sweep / str(n), model, 1 + (dataset == "two"), fold)
        hydra = yaml.safe_load((run / ".hydra" / "hydra.yaml").read_text())
        hydra["hydra"]["runtime"]["choices"]["data"] = dataset
        (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    sweep_report.write_report(sweep, 0.05, SMALL_BOOTSTRAP)
    labels = TAG_LABELS[:, :3]
    auc = {(d, m): roc_auc_score(labels, tag_scores(m, 1 + (d == "two"))[:, :3]) for d in ("one", "two") for m in ("bad", "good")}
    suite = {r["name"]: r for r in read_csv(sweep / "report_suite.csv")}
    good = suite["model=good"]
    assert (good["datasets"], good["pooled_tracks"]) == ("2", "24")
    assert float(good["two_pooled_track_auc"]) == pytest.approx(auc["two", "good"], abs=1e-6)
    assert float(good["mean_over_datasets"]) == pytest.approx((auc["one", "good"] + auc["two", "good"]) / 2)
    assert float(good["mean_over_datasets_lo"]) <= float(good["mean_over_datasets"]) <= float(good["mean_over_datasets_hi"])
    pooled_pair = next(p for p in read_csv(sweep / "report_pairs.csv") if p["view"] == "pooled over datasets")
    expected = np.mean([auc[d, "bad"] - auc[d, "good"] for d in ("one", "two")])
    assert (pooled_pair["tracks"], float(pooled_pair["difference"])) == ("24", pytest.approx(expected))
    assert "| model=good | 2 | 6 |" in (sweep / "report.md").read_text()


def test_a_sweep_of_multiclass_and_multilabel_runs_is_one_clear_error(run_mgr, tmp_path):
    make_run(tmp_path / "sweep" / "0", "good", 1, 0)
    make_multilabel_run(tmp_path / "sweep" / "1", "good", 1, 0)
    proc = run_mgr("report", f"sweep_dir={tmp_path / 'sweep'}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mgr: error:")]
    assert len(errors) == 1 and "holds both multi-class and multi-label runs" in errors[0], proc.stderr
    assert not (tmp_path / "sweep" / "report.md").exists()


@pytest.mark.slow
def test_report_of_a_multilabel_multirun(run_mgr, tmp_path):
    """Two task=multilabel configurations (two learning rates) of the tiny multi-label synth, then mgr.report:
    each one's pooled macro ROC-AUC is scikit-learn's on its test_predictions.csv, and the pair is reported."""
    run_mgr("train", "-m", "task=multilabel", "data=synth_multilabel", *tiny(), "optimizer.lr=1e-3,3e-3", "debug=limit",
            *NO_PLOTS)
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    proc = run_mgr("report", f"sweep_dir={sweep}", "+bootstrap.resamples=200")
    assert "2 runs in 2 groups" in proc.stdout and "pooled track macro ROC-AUC [95% CI]" in proc.stdout
    for row in read_csv(sweep / "report.csv"):
        (job,) = [j for j in sweep.iterdir() if j.is_dir() and row["other"] in (j / ".hydra" / "overrides.yaml").read_text()]
        names = json.loads((job / "metrics.json").read_text())["class_names"]
        rows = read_csv(job / "test_predictions.csv")
        labels = np.array([[c in r["labels"].split(";") for c in names] for r in rows])
        scores = np.array([[float(r[f"score_{c}"]) for c in names] for r in rows])
        scored = labels.any(0) & ~labels.all(0)
        assert float(row["pooled_track_auc"]) == pytest.approx(roc_auc_score(labels[:, scored], scores[:, scored]), abs=1e-6)
    (pair,) = read_csv(sweep / "report_pairs.csv")
    assert 0 <= float(pair["p"]) <= 1 and float(pair["holm"]) == float(pair["p"])
    assert "paired bootstrap p=" in (sweep / "report.md").read_text()
