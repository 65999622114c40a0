"""The sweep report: what a paper reports, from a sweep (the command: python -m mgr.report sweep_dir=...).

Finds every finished run below sweep_dir (a `metrics.json` beside a `.hydra/` folder) and groups
runs into configurations: dataset x feature x model and any other override that differs between
runs, except the replicate axes (AXES: seed, data.split_seed, data.fold), which are counted and
summarised one by one, never mixed silently. Per configuration: mean +/- std over all runs, the std
along each axis, the pooled (cross-validated) track scores over the runs' test_predictions.csv with
a bootstrap interval over test tracks, and per-class F1 across runs. Between configurations of one
dataset on the same test tracks: McNemar's exact test per replicate, the paired bootstrap of the
accuracy difference, Friedman's test over the matched runs for more than two configurations. With
several datasets (a suite of tasks), each system (a configuration but for its dataset) is also pooled
over the datasets: the mean of its per-dataset pooled accuracies, the accuracy over every test track
of every dataset with its interval, and the same paired tests on tracks matched within each dataset.
All p-values are Holm-corrected together, with one sentence per pair at `alpha`. Writes report.md,
report.csv, report_runs.csv, report_pairs.csv, report.png and report_pairs.png next to the runs.

A sweep of multi-label runs (task=multilabel: metrics.json says "task": "multilabel") is scored by
ranking, not by accuracy (`SCORINGS`): per configuration the runs' macro ROC-AUC and PR-AUC (average
precision), and the pooled macro ROC-AUC and PR-AUC of every run's test tracks together (torchmetrics'),
with a bootstrap interval over tracks. The macro means are over the tags that have both a positive and a
negative among the tracks scored (in a resample: among the tracks drawn); a tag without positives has no
ROC-AUC and is left out, and the report names such tags. Two configurations on the same tracks are
compared by the paired bootstrap of the difference of their macro ROC-AUC (tracks drawn jointly for
both, each with all its predictions) and its two-sided bootstrap p-value, one test per pair, Holm-
corrected together with the Friedman tests; over several datasets, by the mean over the datasets of the
per-dataset values (mgr.sweep_tags computes these). Multi-class and multi-label runs in one report are an
error: they share no score.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from mgr import MGRError, statistics
from mgr.sweep_tags import paired_tags, pooled_tags, pooled_tags_over_datasets

# The run metrics of each task (mean ± std over runs), by their metrics.json keys, and their columns.
MULTICLASS_METRICS = {"test/track_acc": "track acc", "test/track_f1": "track macro-F1", "test/acc": "chunk acc",
                      "test/f1": "chunk macro-F1"}
MULTILABEL_METRICS = {"test/track_auc": "track macro ROC-AUC", "test/track_ap": "track macro PR-AUC",
                      "test/track_f1": "track macro-F1 at thresholds", "test/auc": "chunk macro ROC-AUC",
                      "test/ap": "chunk macro PR-AUC"}
METRICS = tuple(dict.fromkeys([*MULTICLASS_METRICS, *MULTILABEL_METRICS]))
KEYS = ("dataset", "feature", "model")
# Replicate axes: run field -> its override. A configuration is what stays when these are taken away.
AXES = {"seed": "seed", "split_seed": "data.split_seed", "fold": "data.fold"}
IGNORED = ("paths.", "hydra.", "trainer.enable_progress_bar")


@dataclass(frozen=True)
class Scoring:
    """How the report scores the runs of one task (`SCORINGS`): their metrics, the pooled scores of their test
    predictions with intervals, and the paired comparison of two configurations (or systems)."""

    metrics: dict[str, str]  # metrics.json key -> column: mean ± std over runs
    headline: str  # the run metric of the axis std table, Friedman's test and report.png
    headline_name: str  # ... in words; also what a pair's difference is in points of
    pooled: dict[str, str]  # pooled score -> column, each with _lo and _hi (`pool`'s keys)
    per_class: str  # the field of a run's track_per_class shown per class (mean ± std over runs)
    per_class_name: str  # ... its table's title
    pool: Callable[[list[dict], dict], dict]  # (runs, bootstrap) -> pooled scores, {} without predictions
    pair: Callable[..., dict]  # (a name, b name, their paired_rows, bootstrap) -> a pair
    pool_datasets: Callable[[list[dict], dict], dict]  # one system over its datasets: its suite row
    footnote: str  # how the report's differences, intervals and p-values were computed


def override_key(override: str) -> str:
    return override.split("=")[0].lstrip("+~")


def read_run(metrics_file: Path) -> dict | None:
    hydra_dir = metrics_file.parent / ".hydra"
    if not (hydra_dir / "hydra.yaml").exists():
        return None
    metrics = json.loads(metrics_file.read_text())
    task = metrics.get("task") or "multiclass"  # runs written before task=multilabel are multi-class
    choices = yaml.safe_load((hydra_dir / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]
    config = yaml.safe_load((hydra_dir / "config.yaml").read_text())
    overrides = yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) or []
    other = sorted(o for o in overrides if not override_key(o).startswith(IGNORED)
                   and override_key(o) not in (*KEYS[1:], "data", *AXES.values()))
    data = config.get("data") or {}
    return {
        "dataset": choices.get("data"), "feature": choices.get("feature"), "model": choices.get("model"),
        "other": other, "seed": config.get("seed"), "split_seed": data.get("split_seed"), "fold": data.get("fold"),
        "run": str(metrics_file.parent), "task": task, **{m: metrics.get(m) for m in METRICS},
        "track_per_class": metrics.get("track_per_class", []), "config": flat_config(config),
    }


def flat_config(config: dict, prefix: str = "") -> dict[str, str]:
    """A run's composed config as dotted keys and their values (as text), without what differs between the
    replicates of one configuration (the AXES, the paths) and Hydra's own."""
    flat = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_config(value, f"{dotted}."))
        elif not dotted.startswith(IGNORED) and dotted not in AXES.values() and dotted != "task_name":
            flat[dotted] = json.dumps(value)
    return flat


def keep_differing_overrides(runs: list[dict]) -> None:
    """Reduce each run's other overrides to those not shared by every run: what the sweep varied. Where
    runs of one configuration so found share a replicate (runs of the same command line whose configs
    differ: run by other code, or with another config file), the config values that differ between that
    configuration's runs join its name, so that each run is told apart by what made it."""
    shared = set.intersection(*(set(r["other"]) for r in runs))
    for run in runs:
        run["other"] = " ".join(o for o in run["other"] if o not in shared)
    by_configuration: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        by_configuration[tuple(run[k] for k in (*KEYS, "other"))].append(run)
    for members in by_configuration.values():
        if len({replicate(r) for r in members}) == len(members):
            continue
        keys = sorted({k for r in members for k in r["config"]})
        differing = [k for k in keys if len({r["config"].get(k, "null") for r in members}) > 1]
        for run in members:
            run["other"] = " ".join([run["other"], *(f"{k}={json.loads(run['config'].get(k, 'null'))}"
                                                     for k in differing)]).strip()


def replicate(run: dict) -> tuple:
    return tuple(run[a] for a in AXES)


def group_configurations(runs: list[dict]) -> dict[tuple, list[dict]]:
    """Runs by configuration, sorted; two runs of one configuration on the same replicate are an error,
    since they could be paired with nothing unambiguously."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        groups[tuple(run[k] for k in (*KEYS, "other"))].append(run)
    for members in groups.values():
        seen: dict[tuple, str] = {}
        for run in members:
            if (first := seen.setdefault(replicate(run), run["run"])) != run["run"]:
                raise MGRError(f"Runs {first} and {run['run']} have the same configuration, seed, split seed "
                               "and fold; keep one of them below sweep_dir.")
    return dict(sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])))


def labels(configurations: list[tuple]) -> list[str]:
    """A short name per configuration: the parts that differ between configurations."""
    varied = [i for i in range(len(KEYS)) if len({c[i] for c in configurations}) > 1]
    names = [" ".join([*(f"{KEYS[i]}={c[i]}" for i in varied), c[-1]]).strip() for c in configurations]
    return [name or "/".join(str(k) for k in c[:3] if k is not None) for name, c in zip(names, configurations)]


def read_predictions(run: dict) -> dict | None:
    """A run's test_predictions.csv as {path: (label, prediction)} and its class names; a multi-label
    run's (a `labels` column, `;`-separated) as {path: (labels [C] bool, probabilities [C])}; None for
    runs written before mgr kept predictions."""
    file = Path(run["run"], "test_predictions.csv")
    if not file.exists():
        return None
    with file.open(newline="") as f:
        reader = csv.DictReader(f)
        classes = [c.removeprefix("score_") for c in reader.fieldnames if c.startswith("score_")]
        if "labels" in reader.fieldnames:
            rows = {r["path"]: (np.isin(classes, r["labels"].split(";")), np.array([float(r[f"score_{c}"]) for c in classes]))
                    for r in reader}
        else:
            rows = {r["path"]: (classes.index(r["label"]), classes.index(r["prediction"])) for r in reader}
    return {"classes": classes, "rows": rows}


def axis_std(members: list[dict], metric: str, axis: str) -> float:
    """The std along one axis: across runs that share the other axes, root-mean-square over such groups."""
    groups = defaultdict(list)
    for run in members:
        if run[metric] is not None:
            groups[tuple(run[a] for a in AXES if a != axis)].append(run[metric])
    variances = [np.var(v, ddof=1) for v in groups.values() if len(v) > 1]
    return float(np.sqrt(np.mean(variances))) if variances else float("nan")


def pooled(members: list[dict], bootstrap: dict) -> dict:
    """Track accuracy and macro-F1 of all runs' test predictions together (folds pooled: the
    cross-validated score), with a bootstrap interval that draws each track path with all its rows."""
    predictions = [p for r in members if (p := r["predictions"])]
    if not predictions:
        return {}
    classes = predictions[0]["classes"]
    rows = [(path, *lp) for p in predictions for path, lp in p["rows"].items()]
    paths, units = np.unique([r[0] for r in rows], return_inverse=True)
    confusions = statistics.unit_confusions([r[1] for r in rows], [r[2] for r in rows], units, len(classes))
    accuracy, macro_f1 = statistics.scores(confusions.sum(0))
    interval = statistics.bootstrap_scores(confusions, int(bootstrap["resamples"]), int(bootstrap["seed"]))
    return {"pooled_runs": len(predictions), "pooled_tracks": len(paths), "pooled_predictions": len(rows),
            "pooled_track_acc": float(accuracy), "pooled_track_acc_lo": interval["accuracy"][0],
            "pooled_track_acc_hi": interval["accuracy"][1], "pooled_track_f1": float(macro_f1),
            "pooled_track_f1_lo": interval["macro_f1"][0], "pooled_track_f1_hi": interval["macro_f1"][1]}


def summarize(groups: dict[tuple, list[dict]], bootstrap: dict, scoring: Scoring) -> list[dict]:
    rows = []
    for (key, members), name in zip(groups.items(), labels(list(groups))):
        row = dict(zip((*KEYS, "other"), key), name=name, n=len(members))
        row.update({f"{a}s": len({r[a] for r in members}) for a in AXES})
        for m in scoring.metrics:
            values = np.array([r[m] for r in members if r[m] is not None], dtype=float)
            row[f"{m}_mean"] = float(values.mean()) if len(values) else float("nan")
            row[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            row.update({f"{m}_std_over_{a}s": axis_std(members, m, a) for a in AXES if row[f"{a}s"] > 1})
        row.update(scoring.pool(members, bootstrap))
        per_class = [{c["label"]: c.get(scoring.per_class) for c in r["track_per_class"]} for r in members]
        for c in dict.fromkeys(c for scores in per_class for c in scores):
            values = [v for scores in per_class if (v := scores.get(c)) is not None]
            row[f"{scoring.per_class}_{c}_mean"] = float(np.mean(values)) if values else float("nan")
            row[f"{scoring.per_class}_{c}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def matched(rows: list[tuple]) -> dict[tuple, tuple[list, np.ndarray, np.ndarray]]:
    """Paired test predictions of two configurations (or systems over several datasets) from their
    `paired_rows`; replicates by (seed, split seed) with their folds (and datasets) pooled, so no track
    counts twice in one McNemar test. {(seed, split_seed): (tracks as "dataset:path", a correct, b correct)}."""
    replicates: dict[tuple, list] = defaultdict(list)
    for run, path, a, b in rows:
        (label, a_pred), (b_label, b_pred) = a["rows"][path], b["rows"][path]
        if a["classes"][label] != b["classes"][b_label]:
            raise MGRError(f"{path} is labelled {a['classes'][label]} in {run['run']} but "
                           f"{b['classes'][b_label]} in the run it is paired with; they test different data.")
        replicates[replicate(run)[:2]].append((f"{run['dataset']}:{path}", a_pred == label, b_pred == b_label))
    return {k: ([r[0] for r in v], np.array([r[1] for r in v]), np.array([r[2] for r in v]))
            for k, v in sorted(replicates.items(), key=lambda kv: str(kv[0]))}


def paired_rows(a_runs: list[dict], b_runs: list[dict]):
    """(a's run, track path, a's predictions, b's) for every test track of a run of a that a run of b of the
    same dataset, seed, split seed and fold also tested, tracks in path order."""
    b_by_replicate = {(r["dataset"], *replicate(r)): r["predictions"] for r in b_runs if r["predictions"]}
    for run in a_runs:
        a, b = run["predictions"], b_by_replicate.get((run["dataset"], *replicate(run)))
        if a and b:
            for path in sorted(a["rows"].keys() & b["rows"].keys()):
                yield run, path, a, b


def paired_accuracy(a: str, b: str, rows: list[tuple], bootstrap: dict) -> dict:
    """A multi-class pair (`paired`) of a's and b's runs on the tracks they share (`paired_rows`)."""
    return paired(a, b, matched(rows), bootstrap)


def paired(a: str, b: str, pairs_of: dict, bootstrap: dict) -> dict:
    """The paired bootstrap of a's accuracy minus b's over matched tracks (`matched`), and McNemar per replicate."""
    tracks = [t for v in pairs_of.values() for t in v[0]]
    a_correct = np.concatenate([v[1] for v in pairs_of.values()])
    b_correct = np.concatenate([v[2] for v in pairs_of.values()])
    difference = statistics.paired_bootstrap_difference(a_correct, b_correct, tracks, int(bootstrap["resamples"]),
                                                   int(bootstrap["seed"]))
    tests = [{"replicate": k, **statistics.mcnemar_exact(v[1], v[2]), "tracks": len(v[0])} for k, v in pairs_of.items()]
    return {"a": a, "b": b, "tracks": len(tracks), "replicates": len(tests), "difference": difference["difference"],
            "lo": difference["interval"][0], "hi": difference["interval"][1], "mcnemar": tests}


def by_dataset(keys) -> dict[str, list]:
    """Configuration keys (or runs) by their dataset, in their order."""
    out: dict[str, list] = defaultdict(list)
    for key in keys:
        out[key[0] if isinstance(key, tuple) else key["dataset"]].append(key)
    return dict(out)


def compare(groups: dict[tuple, list[dict]], bootstrap: dict, scoring: Scoring) -> tuple[list[dict], list[dict]]:
    """Within each dataset: McNemar per replicate and the paired bootstrap for every pair of its
    configurations on shared test tracks, and Friedman over the runs every one of its configurations
    has (more than two). Configurations of two datasets are two tasks and are not paired: the pooled
    view (`compare_systems`) pairs them per dataset."""
    names = dict(zip(groups, labels(list(groups))))
    pairs, rankings = [], []
    for keys in by_dataset(groups).values():
        for a, b in itertools.combinations(keys, 2):
            if shared := list(paired_rows(groups[a], groups[b])):
                pairs.append(scoring.pair(names[a], names[b], shared, bootstrap))
        if ranking := friedman({k: groups[k] for k in keys}, names, scoring.headline):
            rankings.append(ranking)
    return pairs, rankings


def friedman(groups: dict[tuple, list[dict]], names: dict, metric: str = "test/track_acc") -> dict | None:
    """Friedman's test of the configurations' `metric` (track accuracy; a multi-label run's macro ROC-AUC) over
    the replicates (seed, split seed, fold) that every configuration ran: None for two configurations or
    fewer than two such replicates."""
    by_replicate = [{replicate(r): r[metric] for r in members if r[metric] is not None}
                    for members in groups.values()]
    blocks = sorted(set.intersection(*(set(b) for b in by_replicate)), key=str)
    if len(groups) < 3 or len(blocks) < 2:
        return None
    scores = np.array([[b[k] for b in by_replicate] for k in blocks])
    result = statistics.friedman(scores)
    return {**result, "blocks": len(blocks), "names": [names[k] for k in groups]}


def systems(groups: dict[tuple, list[dict]]) -> dict[str, list[dict]]:
    """The suite view: each system (a configuration but for its dataset) with its runs on every dataset,
    named by what differs between systems; empty unless the report holds several datasets and some
    system ran on more than one of them."""
    if len(by_dataset(groups)) < 2:
        return {}
    runs: dict[tuple, list[dict]] = defaultdict(list)
    for key, members in groups.items():
        runs[(None, *key[1:])] += members
    runs = {k: v for k, v in runs.items() if len(by_dataset(v)) > 1}
    return dict(zip(labels(list(runs)), runs.values())) if runs else {}


def pooled_over_datasets(members: list[dict], bootstrap: dict) -> dict:
    """One system over its datasets: the mean of its per-dataset pooled track accuracies (each dataset
    weighs the same), and the accuracy over all their test predictions (each track the same) with a
    bootstrap interval that draws (dataset, track) units. Accuracy only: macro-F1 over two tasks' classes
    means nothing."""
    per_dataset = {d: pooled(runs, bootstrap) for d, runs in by_dataset(members).items()}
    per_dataset = {d: p for d, p in per_dataset.items() if p}
    rows = [(f"{r['dataset']}:{path}", label == prediction) for r in members if r["predictions"]
            for path, (label, prediction) in r["predictions"]["rows"].items()]
    if not rows:
        return {}
    _, units = np.unique([r[0] for r in rows], return_inverse=True)
    correct = np.array([r[1] for r in rows], dtype=np.int64)
    # a right/wrong confusion per (dataset, track): label 1, prediction 1 where right
    confusions = statistics.unit_confusions(np.ones_like(correct), correct, units, 2)
    interval = statistics.bootstrap_scores(confusions, int(bootstrap["resamples"]), int(bootstrap["seed"]))
    return {"datasets": len(per_dataset), "runs": len(members), "pooled_tracks": int(units.max()) + 1,
            "pooled_predictions": len(rows),
            "mean_over_datasets": float(np.mean([p["pooled_track_acc"] for p in per_dataset.values()])),
            "per_dataset": {d: p["pooled_track_acc"] for d, p in per_dataset.items()},
            "pooled_track_acc": float(correct.mean()), "pooled_track_acc_lo": interval["accuracy"][0],
            "pooled_track_acc_hi": interval["accuracy"][1]}


def compare_systems(suite: dict[str, list[dict]], bootstrap: dict, scoring: Scoring) -> tuple[list[dict], list[dict]]:
    """The suite's rows (`scoring.pool_datasets`) and its pairs: every two systems on the tracks they
    share, matched within each dataset (multi-class: McNemar per replicate with datasets and folds pooled)."""
    rows = [{"name": name, **scoring.pool_datasets(members, bootstrap)} for name, members in suite.items()]
    pairs = []
    for a, b in itertools.combinations(suite, 2):
        if shared := list(paired_rows(suite[a], suite[b])):
            pairs.append(scoring.pair(a, b, shared, bootstrap))
    return rows, pairs


def correct_together(pairs: list[dict], rankings: list[dict]) -> None:
    """Holm's correction over every p-value of the report: each pair's McNemar tests (a multi-label pair is
    its own one test: its bootstrap p) and each Friedman test."""
    tests = [t for pair in pairs for t in pair.get("mcnemar", [pair])] + rankings
    for test, adjusted in zip(tests, statistics.holm([t["p"] for t in tests]) if tests else []):
        test["holm"] = adjusted


def percent(x: float) -> str:
    return f"{100 * x:.1f}"


def sentence(pair: dict, alpha: float) -> str:
    """One line in plain words: who wins by how much, the interval, McNemar and the verdict at alpha."""
    d, lo, hi, a, b = pair["difference"], pair["lo"], pair["hi"], pair["a"], pair["b"]
    if d < 0:
        d, lo, hi, a, b = -d, -hi, -lo, b, a
    tests = pair.get("mcnemar", [pair])  # a multi-label pair: its one bootstrap test
    test, on, of = ("McNemar", "", "") if "mcnemar" in pair else ("paired bootstrap", " on macro ROC-AUC", " of macro ROC-AUC")
    lead = f"{a} and {b} tie{on}" if d == 0 else f"{a} beats {b} by {percent(d)} points{of}"
    ps = ", ".join(f"{t['p']:.3g}" for t in tests)
    holms = ", ".join(f"{t['holm']:.3g}" for t in tests)
    significant = sum(t["holm"] < alpha for t in tests)
    if len(tests) == 1:
        verdict = f"{'' if significant else 'not '}significant at alpha={alpha:g}"
    else:
        verdict = f"significant at alpha={alpha:g} in {significant} of {len(tests)} replicates (seed x split seed)"
    return (f"{lead} (95% CI {percent(lo)} to {percent(hi)}, {pair['tracks']} paired track predictions), "
            f"{test} p={ps} (Holm {holms}): {verdict}.")


def interval(row: dict, key: str) -> str:
    return f"{row[key]:.3f} [{row[key + '_lo']:.3f}, {row[key + '_hi']:.3f}]" if key in row else "-"


def pairs_table(pairs: list[dict]) -> list[str]:
    if pairs and "mcnemar" not in pairs[0]:  # multi-label pairs
        return ["| a | b | paired tracks | tags | a - b macro ROC-AUC [95% CI] | paired bootstrap p | Holm |",
                "|---|---|---|---|---|---|---|",
                *(f"| {p['a']} | {p['b']} | {p['tracks']} | {p['tags']} | {percent(p['difference'])} [{percent(p['lo'])}, "
                  f"{percent(p['hi'])}] | {p['p']:.3g} | {p['holm']:.3g} |" for p in pairs)]
    return ["| a | b | paired tracks | a - b [95% CI] | McNemar: a only, b only, p, Holm |", "|---|---|---|---|---|",
            *(f"| {p['a']} | {p['b']} | {p['tracks']} | {percent(p['difference'])} [{percent(p['lo'])}, "
              f"{percent(p['hi'])}] | " + "; ".join(f"{t['only_a']}, {t['only_b']}, {t['p']:.3g}, {t['holm']:.3g}"
                                                    for t in p["mcnemar"]) + " |" for p in pairs)]


def suite_markdown(rows: list[dict], pairs: list[dict], scoring: Scoring) -> list[str]:
    """The systems pooled over the datasets, and their paired comparisons. Multi-label systems have an
    interval on their mean over the datasets, and no score over all tracks (`pooled_tags_over_datasets`)."""
    datasets = list(dict.fromkeys(d for r in rows for d in r.get("per_dataset", {})))
    over_all = any("pooled_track_acc" in r for r in rows)
    lines = ["", "## Pooled over datasets (each system on every dataset it ran)", "",
             "| system | datasets | runs | " + " | ".join(f"{d} pooled {scoring.headline_name}" for d in datasets)
             + " | mean over datasets" + (" | pooled track acc over all tracks [95% CI] |" if over_all else " [95% CI] |"),
             "|" + "---|" * (len(datasets) + 4 + over_all)]
    for r in rows:
        per = [f"{r['per_dataset'][d]:.3f}" if d in r.get("per_dataset", {}) else "-" for d in datasets]
        mean = (interval(r, "mean_over_datasets") if "mean_over_datasets_lo" in r
                else f"{r['mean_over_datasets']:.3f}" if "mean_over_datasets" in r else "-")
        lines.append(f"| {r['name']} | {r.get('datasets', 0)} | {r.get('runs', 0)} | " + " | ".join(per)
                     + f" | {mean} |" + (f" {interval(r, 'pooled_track_acc')} |" if over_all else ""))
    if pairs:
        lines += ["", "### Paired over datasets (tracks matched within each dataset, datasets and folds pooled)", "",
                  *pairs_table(pairs)]
    return lines


def markdown(rows: list[dict], pairs: list[dict], rankings: list[dict], alpha: float, scoring: Scoring,
             suite_rows: list[dict] = (), suite_pairs: list[dict] = ()) -> str:
    show_other = any(r["other"] for r in rows)
    head = ["dataset", "feature", "model", *(["other overrides"] if show_other else []), "runs",
            "seeds x split seeds x folds", *scoring.metrics.values(), *(f"{p} [95% CI]" for p in scoring.pooled.values())]
    lines = ["## Test metrics, mean ± std over runs; pooled over runs (folds pooled: cross-validated)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["dataset"]), str(r["feature"]), str(r["model"]), *([r["other"]] if show_other else []), str(r["n"]),
                 " x ".join(str(r[f"{a}s"]) for a in AXES)]
        cells += [f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_std']:.3f}" for m in scoring.metrics]
        cells += [interval(r, key) for key in scoring.pooled]
        lines.append("| " + " | ".join(cells) + " |")
    along = [a for a in AXES if any(r[f"{a}s"] > 1 for r in rows)]
    if along:
        title = scoring.headline_name[0].upper() + scoring.headline_name[1:]
        lines += ["", f"## {title} std along each axis (runs that share the other axes)", "",
                  "| configuration | " + " | ".join(f"over {a}s" for a in along) + " |", "|---|" + "---|" * len(along)]
        lines += [f"| {r['name']} | " + " | ".join(f"{r.get(f'{scoring.headline}_std_over_{a}s', float('nan')):.3f}"
                                                   for a in along) + " |" for r in rows]
    field = f"{scoring.per_class}_"
    classes = list(dict.fromkeys(k[len(field):-5] for r in rows for k in r if k.startswith(field) and k.endswith("_mean")))
    if classes:
        lines += ["", f"## {scoring.per_class_name}, mean ± std over runs", "",
                  "| configuration | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
        lines += [f"| {r['name']} | " + " | ".join(f"{r[f'{field}{c}_mean']:.3f} ± {r[f'{field}{c}_std']:.3f}"
                                                   if f"{field}{c}_mean" in r else "-" for c in classes) + " |" for r in rows]
    if pairs:
        lines += ["", f"## Paired comparisons on the same test tracks ({scoring.headline_name})", "", *pairs_table(pairs)]
    for ranking in rankings:
        ranks = ", ".join(f"{n} {r:.2f}" for n, r in zip(ranking["names"], ranking["average_ranks"]))
        lines += ["", f"Friedman over {ranking['blocks']} matched runs: chi2={ranking['statistic']:.3f}, "
                  f"p={ranking['p']:.3g} (Holm {ranking['holm']:.3g}); average ranks (1 best): {ranks}."]
    if suite_rows:
        lines += suite_markdown(suite_rows, suite_pairs, scoring)
    if pairs or suite_pairs:
        lines += ["", "## In words", "", *(f"- {sentence(p, alpha)}" for p in pairs)]
        lines += [f"- Pooled over datasets: {sentence(p, alpha)}" for p in suite_pairs]
    lines += ["", scoring.footnote]
    if left_out := [f"{r['name']}: {r['tags_left_out']}" for r in rows if r.get("tags_left_out")]:
        lines += ["", "Tags left out of the pooled macro means (no positive or no negative among the pooled test "
                  "tracks): " + "; ".join(left_out) + "."]
    return "\n".join(lines) + "\n"


def bar_chart(rows: list[dict], path: Path, scoring: Scoring) -> None:
    """The headline metric (track accuracy, or macro ROC-AUC) per feature (x) and model (bars) with std error
    bars, one panel per dataset, as seed report 002's figure 8."""
    from matplotlib.figure import Figure

    datasets = sorted({str(r["dataset"]) for r in rows})
    fig = Figure(figsize=(max(6.0, 1.6 * len({r["feature"] for r in rows}) + 2), 3.6 * len(datasets)), layout="constrained")
    axes = fig.subplots(len(datasets), 1, squeeze=False)[:, 0]
    for ax, dataset in zip(axes, datasets):
        subset = [r for r in rows if str(r["dataset"]) == dataset]
        features = sorted({str(r["feature"]) for r in subset})
        series = sorted({(str(r["model"]), r["other"]) for r in subset})
        width = 0.8 / len(series)
        for i, (model, other) in enumerate(series):
            means, stds = [], []
            for feature in features:
                match = [r for r in subset if (str(r["model"]), r["other"], str(r["feature"])) == (model, other, feature)]
                means.append(match[0][f"{scoring.headline}_mean"] if match else np.nan)
                stds.append(match[0][f"{scoring.headline}_std"] if match else 0.0)
            x = np.arange(len(features)) + (i - (len(series) - 1) / 2) * width
            ax.bar(x, means, width, yerr=stds, capsize=3, label=f"{model} {other}".strip())
        ax.set_xticks(np.arange(len(features)), features)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"test {scoring.headline_name} (± std)")
        ax.set_title(f"dataset: {dataset}")
        ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=120)


def pairs_chart(pairs: list[dict], path: Path, scoring: Scoring) -> None:
    """Each pair's difference (of track accuracy, or macro ROC-AUC) with its 95 % paired bootstrap interval;
    zero is no difference."""
    from matplotlib.figure import Figure

    names = [f"{p['a']} - {p['b']}" for p in pairs]
    # wide enough for the longest name beside a plot of about 4 inches (suite systems have long names)
    fig = Figure(figsize=(max(7.0, 4.0 + 0.075 * max(map(len, names))), 1.2 + 0.45 * len(pairs)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(pairs))[::-1]
    d = np.array([100 * p["difference"] for p in pairs])
    errors = np.array([[d_ - 100 * p["lo"], 100 * p["hi"] - d_] for d_, p in zip(d, pairs)]).T
    ax.errorbar(d, y, xerr=errors, fmt="o", capsize=4)
    ax.axvline(0, color="grey", lw=1, ls="--")
    ax.set_yticks(y, names)
    ax.set_xlabel(f"{scoring.headline_name} difference, points\n(95% paired bootstrap CI)")
    fig.savefig(path, dpi=120)


def write_csv(path: Path, records: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in records for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(records)


MULTICLASS = Scoring(
    MULTICLASS_METRICS, "test/track_acc", "track accuracy",
    {"pooled_track_acc": "pooled track acc", "pooled_track_f1": "pooled track macro-F1"}, "f1", "Per-class track F1",
    pooled, paired_accuracy, pooled_over_datasets,
    "Differences are points of track accuracy; intervals: percentile bootstrap over test tracks (a track drawn with "
    "all its predictions); McNemar's exact test per replicate (seed x split seed, folds pooled); Holm over every "
    "p-value of this report.")
MULTILABEL = Scoring(
    MULTILABEL_METRICS, "test/track_auc", "track macro ROC-AUC",
    {"pooled_track_auc": "pooled track macro ROC-AUC", "pooled_track_ap": "pooled track macro PR-AUC"}, "roc_auc",
    "Per-tag track ROC-AUC", pooled_tags, paired_tags, pooled_tags_over_datasets,
    "Differences are points of macro ROC-AUC (x 100), a minus b on the tracks both tested; intervals: percentile "
    "bootstrap over test tracks (a track drawn with all its predictions, of both systems at once); p: the two-sided "
    "paired bootstrap p-value (twice the smaller share of resampled differences on either side of 0, one added to "
    "each count); Holm over every p-value of this report. Pooled scores: torchmetrics' multilabel ROC-AUC and "
    "average precision over the runs' test tracks together, macro over the tags with a positive and a negative "
    "among them.")
SCORINGS = {"multiclass": MULTICLASS, "multilabel": MULTILABEL}


def scoring_of(runs: list[dict], directory: Path) -> Scoring:
    """The one Scoring of the runs' task: multi-class and multi-label runs share no score to compare."""
    first = {}
    for run in runs:
        first.setdefault(run["task"], run["run"])
    if unknown := set(first) - set(SCORINGS):
        raise MGRError(f"{first[min(unknown)]} is a run of task={min(unknown)}, which mgr.report does not score; "
                       f"it reports task={' or task='.join(SCORINGS)} runs.")
    if len(first) > 1:
        raise MGRError(f"{directory} holds both multi-class and multi-label runs (e.g. {first['multiclass']} and "
                       f"{first['multilabel']}), which share no score; report each task's runs from a folder of their own.")
    return SCORINGS[next(iter(first))]


def write_report(directory: Path, alpha: float, bootstrap: dict) -> Path:
    """Report every finished run below `directory`; the path of report.md."""
    runs = [r for f in sorted(directory.rglob("metrics.json")) if (r := read_run(f))]
    if not runs:
        raise MGRError(f"Found no finished runs (metrics.json beside .hydra/) below {directory}.")
    scoring = scoring_of(runs, directory)
    keep_differing_overrides(runs)
    for run in runs:
        run["predictions"] = read_predictions(run)
    groups = group_configurations(runs)
    rows = summarize(groups, bootstrap, scoring)
    pairs, rankings = compare(groups, bootstrap, scoring)
    suite_rows, suite_pairs = compare_systems(systems(groups), bootstrap, scoring)
    correct_together(pairs + suite_pairs, rankings)
    text = markdown(rows, pairs, rankings, alpha, scoring, suite_rows, suite_pairs)
    (directory / "report.md").write_text(f"# Report of {directory}\n\n{text}")
    write_csv(directory / "report.csv", rows)
    if suite_rows:
        per_dataset = f"pooled_{scoring.headline.removeprefix('test/')}"
        write_csv(directory / "report_suite.csv", [{k: v for k, v in r.items() if k != "per_dataset"}
                                                   | {f"{d}_{per_dataset}": a for d, a in r.get("per_dataset", {}).items()}
                                                   for r in suite_rows])
    write_csv(directory / "report_runs.csv", [{k: v for k, v in r.items() if k not in ("predictions", "track_per_class", "config")}
                                              for r in runs])
    written = ["report.md", "report.csv", "report_runs.csv", "report.png", *(["report_suite.csv"] if suite_rows else [])]
    bar_chart(rows, directory / "report.png", scoring)
    if pairs or suite_pairs:
        write_csv(directory / "report_pairs.csv", [
            {"view": view, **{k: v for k, v in p.items() if k != "mcnemar"}, **({
                "replicate": t["replicate"], "only_a": t["only_a"], "only_b": t["only_b"], "replicate_tracks": t["tracks"],
                "p": t["p"], "holm": t["holm"]} if "mcnemar" in p else {})}
            for view, some in (("per dataset", pairs), ("pooled over datasets", suite_pairs)) for p in some
            for t in p.get("mcnemar", [p])])
        pairs_chart(pairs + [{**p, "a": f"{p['a']} (pooled)"} for p in suite_pairs], directory / "report_pairs.png", scoring)
        written += ["report_pairs.csv", "report_pairs.png"]
    print(text)
    without = sum(r["predictions"] is None for r in runs)
    print(f"{len(runs)} runs in {len(rows)} groups" + (f" ({without} without test_predictions.csv: not pooled or paired)"
                                                        if without else "")
          + f"; wrote {', '.join(written)} to {directory}", flush=True)
    return directory / "report.md"
