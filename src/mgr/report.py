"""One comparison table from a sweep: python -m mgr.report sweep_dir=<multirun or runs directory>

Finds every finished run below sweep_dir (a `metrics.json` beside a
`.hydra/` folder), groups runs by dataset x feature x model (and any other
override that differs, except the seed), and writes the mean +/- std over
seeds of the test metrics as report.md and report.csv, one row per run as
report_runs.csv, and a bar chart of track accuracy as report.png, next to the
runs.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import hydra
import numpy as np
import yaml
from omegaconf import DictConfig

from mgr import MGRError
from mgr.utils.tasks import require, task

METRICS = ("test/track_acc", "test/track_f1", "test/acc", "test/f1")
KEYS = ("dataset", "feature", "model")
IGNORED = ("seed", "paths.", "hydra.", "trainer.enable_progress_bar")


def read_run(metrics_file: Path) -> dict | None:
    hydra_dir = metrics_file.parent / ".hydra"
    if not (hydra_dir / "hydra.yaml").exists():
        return None
    metrics = json.loads(metrics_file.read_text())
    choices = yaml.safe_load((hydra_dir / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]
    config = yaml.safe_load((hydra_dir / "config.yaml").read_text())
    overrides = yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) or []
    other = sorted(o for o in overrides if not o.split("=")[0].lstrip("+~").startswith(IGNORED)
                   and o.split("=")[0] not in ("data", "feature", "model"))
    return {
        "dataset": choices.get("data"), "feature": choices.get("feature"), "model": choices.get("model"),
        "other": other, "seed": config.get("seed"), "run": str(metrics_file.parent),
        **{m: metrics.get(m) for m in METRICS},
    }


def keep_differing_overrides(runs: list[dict]) -> None:
    """Reduce each run's other overrides to those not shared by every run: what the sweep varied."""
    shared = set.intersection(*(set(r["other"]) for r in runs))
    for run in runs:
        run["other"] = " ".join(o for o in run["other"] if o not in shared)


def summarize(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        groups[tuple(run[k] for k in (*KEYS, "other"))].append(run)
    rows = []
    for key, members in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        row = dict(zip((*KEYS, "other"), key), n=len(members))
        for m in METRICS:
            values = np.array([r[m] for r in members if r[m] is not None], dtype=float)
            row[f"{m}_mean"] = float(values.mean()) if len(values) else float("nan")
            row[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    show_other = any(r["other"] for r in rows)
    head = ["dataset", "feature", "model", *(["other overrides"] if show_other else []), "runs",
            "track acc", "track macro-F1", "chunk acc", "chunk macro-F1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["dataset"]), str(r["feature"]), str(r["model"]), *([r["other"]] if show_other else []), str(r["n"])]
        cells += [f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_std']:.3f}" for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(rows: list[dict], path: Path) -> None:
    """Track accuracy per feature (x) and model (bars), one panel per dataset, as seed report 002's figure 8."""
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
        ax.set_ylabel("test track accuracy")
        ax.set_title(f"dataset: {dataset}")
        ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=120)


@task
def report(cfg: DictConfig) -> Path:
    require(cfg, "sweep_dir", usage="python -m mgr.report sweep_dir=logs/train/multiruns/<date_time>")
    directory = Path(cfg.sweep_dir).expanduser()
    if not directory.is_dir():
        raise MGRError(f"sweep_dir={directory} is not a directory; pass a multirun directory or any folder "
                       "holding run directories.")
    runs = [r for f in sorted(directory.rglob("metrics.json")) if (r := read_run(f))]
    if not runs:
        raise MGRError(f"Found no finished runs (metrics.json beside .hydra/) below {directory}.")
    keep_differing_overrides(runs)
    rows = summarize(runs)
    table = markdown(rows)
    (directory / "report.md").write_text(f"# Test metrics, mean ± std over seeds\n\n{table}")
    for name, records in (("report.csv", rows), ("report_runs.csv", runs)):
        with open(directory / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    bar_chart(rows, directory / "report.png")
    print(table)
    print(f"{len(runs)} runs in {len(rows)} groups; wrote report.md, report.csv, report_runs.csv, report.png "
          f"to {directory}", flush=True)
    return directory / "report.md"


@hydra.main(version_base="1.3", config_path="pkg://mgr.conf", config_name="report")
def main(cfg: DictConfig) -> None:
    report(cfg)


if __name__ == "__main__":
    main()
