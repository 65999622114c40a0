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
"""

from __future__ import annotations

import csv
import itertools
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from mgr import MGRError, statistics

METRICS = ("test/track_acc", "test/track_f1", "test/acc", "test/f1")
KEYS = ("dataset", "feature", "model")
# Replicate axes: run field -> its override. A configuration is what stays when these are taken away.
AXES = {"seed": "seed", "split_seed": "data.split_seed", "fold": "data.fold"}
IGNORED = ("paths.", "hydra.", "trainer.enable_progress_bar")


def override_key(override: str) -> str:
    return override.split("=")[0].lstrip("+~")


def read_run(metrics_file: Path) -> dict | None:
    hydra_dir = metrics_file.parent / ".hydra"
    if not (hydra_dir / "hydra.yaml").exists():
        return None
    metrics = json.loads(metrics_file.read_text())
    choices = yaml.safe_load((hydra_dir / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]
    config = yaml.safe_load((hydra_dir / "config.yaml").read_text())
    overrides = yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) or []
    other = sorted(o for o in overrides if not override_key(o).startswith(IGNORED)
                   and override_key(o) not in (*KEYS[1:], "data", *AXES.values()))
    data = config.get("data") or {}
    return {
        "dataset": choices.get("data"), "feature": choices.get("feature"), "model": choices.get("model"),
        "other": other, "seed": config.get("seed"), "split_seed": data.get("split_seed"), "fold": data.get("fold"),
        "run": str(metrics_file.parent), **{m: metrics.get(m) for m in METRICS},
        "per_class_f1": {c["label"]: c["f1"] for c in metrics.get("track_per_class", [])},
    }


def keep_differing_overrides(runs: list[dict]) -> None:
    """Reduce each run's other overrides to those not shared by every run: what the sweep varied."""
    shared = set.intersection(*(set(r["other"]) for r in runs))
    for run in runs:
        run["other"] = " ".join(o for o in run["other"] if o not in shared)


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
    """A run's test_predictions.csv as {path: (label, prediction)} and its class names; None for runs
    written before mgr kept predictions."""
    file = Path(run["run"], "test_predictions.csv")
    if not file.exists():
        return None
    with file.open(newline="") as f:
        reader = csv.DictReader(f)
        classes = [c.removeprefix("score_") for c in reader.fieldnames if c.startswith("score_")]
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


def summarize(groups: dict[tuple, list[dict]], bootstrap: dict) -> list[dict]:
    rows = []
    for (key, members), name in zip(groups.items(), labels(list(groups))):
        row = dict(zip((*KEYS, "other"), key), name=name, n=len(members))
        row.update({f"{a}s": len({r[a] for r in members}) for a in AXES})
        for m in METRICS:
            values = np.array([r[m] for r in members if r[m] is not None], dtype=float)
            row[f"{m}_mean"] = float(values.mean()) if len(values) else float("nan")
            row[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            row.update({f"{m}_std_over_{a}s": axis_std(members, m, a) for a in AXES if row[f"{a}s"] > 1})
        row.update(pooled(members, bootstrap))
        for c in dict.fromkeys(c for r in members for c in r["per_class_f1"]):
            f1 = [r["per_class_f1"][c] for r in members if c in r["per_class_f1"]]
            row[f"f1_{c}_mean"], row[f"f1_{c}_std"] = float(np.mean(f1)), float(np.std(f1, ddof=1)) if len(f1) > 1 else 0.0
        rows.append(row)
    return rows


def matched(a_runs: list[dict], b_runs: list[dict]) -> dict[tuple, tuple[list, np.ndarray, np.ndarray]]:
    """Paired test predictions of two configurations (or systems over several datasets): runs matched
    by dataset, seed, split seed and fold, tracks by path within their dataset; replicates by (seed,
    split seed) with their folds (and datasets) pooled, so no track counts twice in one McNemar test.
    {(seed, split_seed): (tracks as "dataset:path", a correct, b correct)}."""
    b_by_replicate = {(r["dataset"], *replicate(r)): r["predictions"] for r in b_runs if r["predictions"]}
    replicates: dict[tuple, list] = defaultdict(list)
    for run in a_runs:
        a, b = run["predictions"], b_by_replicate.get((run["dataset"], *replicate(run)))
        if a and b:
            for path in sorted(a["rows"].keys() & b["rows"].keys()):
                (label, a_pred), (b_label, b_pred) = a["rows"][path], b["rows"][path]
                if a["classes"][label] != b["classes"][b_label]:
                    raise MGRError(f"{path} is labelled {a['classes'][label]} in {run['run']} but "
                                   f"{b['classes'][b_label]} in the run it is paired with; they test different data.")
                replicates[replicate(run)[:2]].append((f"{run['dataset']}:{path}", a_pred == label, b_pred == b_label))
    return {k: ([r[0] for r in v], np.array([r[1] for r in v]), np.array([r[2] for r in v]))
            for k, v in sorted(replicates.items(), key=lambda kv: str(kv[0]))}


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


def compare(groups: dict[tuple, list[dict]], bootstrap: dict) -> tuple[list[dict], list[dict]]:
    """Within each dataset: McNemar per replicate and the paired bootstrap for every pair of its
    configurations on shared test tracks, and Friedman over the runs every one of its configurations
    has (more than two). Configurations of two datasets are two tasks and are not paired: the pooled
    view (`compare_systems`) pairs them per dataset."""
    names = dict(zip(groups, labels(list(groups))))
    pairs, rankings = [], []
    for keys in by_dataset(groups).values():
        for a, b in itertools.combinations(keys, 2):
            if pairs_of := matched(groups[a], groups[b]):
                pairs.append(paired(names[a], names[b], pairs_of, bootstrap))
        if ranking := friedman({k: groups[k] for k in keys}, names):
            rankings.append(ranking)
    return pairs, rankings


def friedman(groups: dict[tuple, list[dict]], names: dict) -> dict | None:
    """Friedman's test of the configurations' track accuracy over the replicates (seed, split seed,
    fold) that every configuration ran: None for two configurations or fewer than two such replicates."""
    by_replicate = [{replicate(r): r["test/track_acc"] for r in members if r["test/track_acc"] is not None}
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


def compare_systems(suite: dict[str, list[dict]], bootstrap: dict) -> tuple[list[dict], list[dict]]:
    """The suite's rows (`pooled_over_datasets`) and its pairs: every two systems on the tracks they
    share, matched within each dataset, McNemar per replicate with datasets and folds pooled."""
    rows = [{"name": name, **pooled_over_datasets(members, bootstrap)} for name, members in suite.items()]
    pairs = []
    for a, b in itertools.combinations(suite, 2):
        if pairs_of := matched(suite[a], suite[b]):
            pairs.append(paired(a, b, pairs_of, bootstrap))
    return rows, pairs


def correct_together(pairs: list[dict], rankings: list[dict]) -> None:
    """Holm's correction over every p-value of the report: each pair's McNemar tests and each Friedman test."""
    tests = [t for pair in pairs for t in pair["mcnemar"]] + rankings
    for test, adjusted in zip(tests, statistics.holm([t["p"] for t in tests]) if tests else []):
        test["holm"] = adjusted


def percent(x: float) -> str:
    return f"{100 * x:.1f}"


def sentence(pair: dict, alpha: float) -> str:
    """One line in plain words: who wins by how much, the interval, McNemar and the verdict at alpha."""
    d, lo, hi, a, b = pair["difference"], pair["lo"], pair["hi"], pair["a"], pair["b"]
    if d < 0:
        d, lo, hi, a, b = -d, -hi, -lo, b, a
    lead = f"{a} and {b} tie" if d == 0 else f"{a} beats {b} by {percent(d)} points"
    tests = pair["mcnemar"]
    ps = ", ".join(f"{t['p']:.3g}" for t in tests)
    holms = ", ".join(f"{t['holm']:.3g}" for t in tests)
    significant = sum(t["holm"] < alpha for t in tests)
    if len(tests) == 1:
        verdict = f"{'' if significant else 'not '}significant at alpha={alpha:g}"
    else:
        verdict = f"significant at alpha={alpha:g} in {significant} of {len(tests)} replicates (seed x split seed)"
    return (f"{lead} (95% CI {percent(lo)} to {percent(hi)}, {pair['tracks']} paired track predictions), "
            f"McNemar p={ps} (Holm {holms}): {verdict}.")


def interval(row: dict, key: str) -> str:
    return f"{row[key]:.3f} [{row[key + '_lo']:.3f}, {row[key + '_hi']:.3f}]" if key in row else "-"


def pairs_table(pairs: list[dict]) -> list[str]:
    return ["| a | b | paired tracks | a - b [95% CI] | McNemar: a only, b only, p, Holm |", "|---|---|---|---|---|",
            *(f"| {p['a']} | {p['b']} | {p['tracks']} | {percent(p['difference'])} [{percent(p['lo'])}, "
              f"{percent(p['hi'])}] | " + "; ".join(f"{t['only_a']}, {t['only_b']}, {t['p']:.3g}, {t['holm']:.3g}"
                                                    for t in p["mcnemar"]) + " |" for p in pairs)]


def suite_markdown(rows: list[dict], pairs: list[dict]) -> list[str]:
    """The systems pooled over the datasets, and their paired comparisons."""
    datasets = list(dict.fromkeys(d for r in rows for d in r.get("per_dataset", {})))
    lines = ["", "## Pooled over datasets (each system on every dataset it ran)", "",
             "| system | datasets | runs | " + " | ".join(f"{d} pooled track acc" for d in datasets)
             + " | mean over datasets | pooled track acc over all tracks [95% CI] |",
             "|" + "---|" * (len(datasets) + 5)]
    for r in rows:
        per = [f"{r['per_dataset'][d]:.3f}" if d in r.get("per_dataset", {}) else "-" for d in datasets]
        mean = f"{r['mean_over_datasets']:.3f}" if "mean_over_datasets" in r else "-"
        lines.append(f"| {r['name']} | {r.get('datasets', 0)} | {r.get('runs', 0)} | " + " | ".join(per)
                     + f" | {mean} | {interval(r, 'pooled_track_acc')} |")
    if pairs:
        lines += ["", "### Paired over datasets (tracks matched within each dataset, datasets and folds pooled)", "",
                  *pairs_table(pairs)]
    return lines


def markdown(rows: list[dict], pairs: list[dict], rankings: list[dict], alpha: float,
             suite_rows: list[dict] = (), suite_pairs: list[dict] = ()) -> str:
    show_other = any(r["other"] for r in rows)
    head = ["dataset", "feature", "model", *(["other overrides"] if show_other else []), "runs",
            "seeds x split seeds x folds", "track acc", "track macro-F1", "chunk acc", "chunk macro-F1",
            "pooled track acc [95% CI]", "pooled track macro-F1 [95% CI]"]
    lines = ["## Test metrics, mean ± std over runs; pooled over runs (folds pooled: cross-validated)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["dataset"]), str(r["feature"]), str(r["model"]), *([r["other"]] if show_other else []), str(r["n"]),
                 " x ".join(str(r[f"{a}s"]) for a in AXES)]
        cells += [f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_std']:.3f}" for m in METRICS]
        cells += [interval(r, "pooled_track_acc"), interval(r, "pooled_track_f1")]
        lines.append("| " + " | ".join(cells) + " |")
    along = [a for a in AXES if any(r[f"{a}s"] > 1 for r in rows)]
    if along:
        lines += ["", "## Track accuracy std along each axis (runs that share the other axes)", "",
                  "| configuration | " + " | ".join(f"over {a}s" for a in along) + " |", "|---|" + "---|" * len(along)]
        lines += [f"| {r['name']} | " + " | ".join(f"{r.get(f'test/track_acc_std_over_{a}s', float('nan')):.3f}"
                                                   for a in along) + " |" for r in rows]
    classes = list(dict.fromkeys(k[3:-5] for r in rows for k in r if k.startswith("f1_") and k.endswith("_mean")))
    if classes:
        lines += ["", "## Per-class track F1, mean ± std over runs", "",
                  "| configuration | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
        lines += [f"| {r['name']} | " + " | ".join(f"{r[f'f1_{c}_mean']:.3f} ± {r[f'f1_{c}_std']:.3f}"
                                                   if f"f1_{c}_mean" in r else "-" for c in classes) + " |" for r in rows]
    if pairs:
        lines += ["", "## Paired comparisons on the same test tracks (track accuracy)", "", *pairs_table(pairs)]
    for ranking in rankings:
        ranks = ", ".join(f"{n} {r:.2f}" for n, r in zip(ranking["names"], ranking["average_ranks"]))
        lines += ["", f"Friedman over {ranking['blocks']} matched runs: chi2={ranking['statistic']:.3f}, "
                  f"p={ranking['p']:.3g} (Holm {ranking['holm']:.3g}); average ranks (1 best): {ranks}."]
    if suite_rows:
        lines += suite_markdown(suite_rows, suite_pairs)
    if pairs or suite_pairs:
        lines += ["", "## In words", "", *(f"- {sentence(p, alpha)}" for p in pairs)]
        lines += [f"- Pooled over datasets: {sentence(p, alpha)}" for p in suite_pairs]
    lines += ["", "Differences are points of track accuracy; intervals: percentile bootstrap over test tracks "
              "(a track drawn with all its predictions); McNemar's exact test per replicate (seed x split seed, "
              "folds pooled); Holm over every p-value of this report."]
    return "\n".join(lines) + "\n"


def bar_chart(rows: list[dict], path: Path) -> None:
    """Track accuracy per feature (x) and model (bars) with std error bars, one panel per dataset, as
    seed report 002's figure 8."""
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
                means.append(match[0]["test/track_acc_mean"] if match else np.nan)
                stds.append(match[0]["test/track_acc_std"] if match else 0.0)
            x = np.arange(len(features)) + (i - (len(series) - 1) / 2) * width
            ax.bar(x, means, width, yerr=stds, capsize=3, label=f"{model} {other}".strip())
        ax.set_xticks(np.arange(len(features)), features)
        ax.set_ylim(0, 1)
        ax.set_ylabel("test track accuracy (± std)")
        ax.set_title(f"dataset: {dataset}")
        ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=120)


def pairs_chart(pairs: list[dict], path: Path) -> None:
    """Each pair's accuracy difference with its 95 % paired bootstrap interval; zero is no difference."""
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
    ax.set_xlabel("track accuracy difference, points (95% paired bootstrap CI)")
    fig.savefig(path, dpi=120)


def write_csv(path: Path, records: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in records for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(records)


def write_report(directory: Path, alpha: float, bootstrap: dict) -> Path:
    """Report every finished run below `directory`; the path of report.md."""
    runs = [r for f in sorted(directory.rglob("metrics.json")) if (r := read_run(f))]
    if not runs:
        raise MGRError(f"Found no finished runs (metrics.json beside .hydra/) below {directory}.")
    keep_differing_overrides(runs)
    for run in runs:
        run["predictions"] = read_predictions(run)
    groups = group_configurations(runs)
    rows = summarize(groups, bootstrap)
    pairs, rankings = compare(groups, bootstrap)
    suite_rows, suite_pairs = compare_systems(systems(groups), bootstrap)
    correct_together(pairs + suite_pairs, rankings)
    text = markdown(rows, pairs, rankings, alpha, suite_rows, suite_pairs)
    (directory / "report.md").write_text(f"# Report of {directory}\n\n{text}")
    write_csv(directory / "report.csv", rows)
    if suite_rows:
        write_csv(directory / "report_suite.csv", [{k: v for k, v in r.items() if k != "per_dataset"}
                                                   | {f"{d}_pooled_track_acc": a for d, a in r.get("per_dataset", {}).items()}
                                                   for r in suite_rows])
    write_csv(directory / "report_runs.csv", [{k: v for k, v in r.items() if k not in ("predictions", "per_class_f1")}
                                              for r in runs])
    written = ["report.md", "report.csv", "report_runs.csv", "report.png", *(["report_suite.csv"] if suite_rows else [])]
    bar_chart(rows, directory / "report.png")
    if pairs or suite_pairs:
        write_csv(directory / "report_pairs.csv", [
            {"view": view, **{k: v for k, v in p.items() if k != "mcnemar"}, "replicate": t["replicate"],
             "only_a": t["only_a"], "only_b": t["only_b"], "replicate_tracks": t["tracks"], "p": t["p"], "holm": t["holm"]}
            for view, some in (("per dataset", pairs), ("pooled over datasets", suite_pairs)) for p in some
            for t in p["mcnemar"]])
        pairs_chart(pairs + [{**p, "a": f"{p['a']} (pooled)"} for p in suite_pairs], directory / "report_pairs.png")
        written += ["report_pairs.csv", "report_pairs.png"]
    print(text)
    without = sum(r["predictions"] is None for r in runs)
    print(f"{len(runs)} runs in {len(rows)} groups" + (f" ({without} without test_predictions.csv: not pooled or paired)"
                                                        if without else "")
          + f"; wrote {', '.join(written)} to {directory}", flush=True)
    return directory / "report.md"
