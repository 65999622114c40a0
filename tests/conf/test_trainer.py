"""trainer=ddp_cpu: DDP on two CPU processes (gloo) inside a Hydra multirun (an Optuna sweep), one run
directory per job, test metrics and predictions equal to a single-process evaluation of the same
checkpoint (also of a split with fewer chunks than ranks), and the best value returned to the sweeper."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from omegaconf import OmegaConf

from conftest import TINY_DATA, TINY_MODEL, check_predictions_match_metrics, run_dir_of, tiny


RATE = 8000


KEYS = ("test/acc", "test/f1", "test/track_acc", "test/track_f1", "test/loss")


def one_chunk_eval_splits(root: Path) -> Path:
    """A manifest: a low and a high tone, 8 training tracks each; the val and the test split are
    one 1 s track each (one chunk, fewer than the two ranks), the same high tone labelled low.
    Learning the training tracks raises that chunk's loss every epoch, so the best epoch is the
    first, not the last, and the test loss of the best checkpoint is the best val loss."""
    root.mkdir()
    t = np.arange(RATE) / RATE
    rows = []
    for label, freq in (("low", 300.0), ("high", 2000.0)):
        for i in range(8):
            sf.write(root / f"{label}{i}.wav", 0.5 * np.sin(2 * np.pi * freq * (1 + i / 20) * t), RATE)
            rows.append([f"{label}{i}.wav", label, "train"])
    for split in ("val", "test"):
        sf.write(root / f"{split}.wav", 0.5 * np.sin(2 * np.pi * 2000.0 * t), RATE)
        rows.append([f"{split}.wav", "low", split])
    with open(root / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "split"], *rows])
    return root / "manifest.csv"


# The two jobs of the DDP sweep (a grid of one parameter, +ddp_case), each a model at its tiny sizes,
# its data and its epochs. one_chunk: one_chunk_eval_splits, whose val and test split are one chunk
# each, so the second rank has none (an even split across ranks, Lightning's DistributedSampler,
# would repeat it), and 3 epochs whose best is the first. several_chunks: the synth test split,
# 3 chunks of each of its 5 tracks, 15, an odd number, strided over the ranks (8 and 7), so each rank
# scores part of every track's chunks and batches of 7 give the ranks unequal numbers of batches
# (2 and 1); the predictions file must still list every track once, in the order and with the
# scores of one process.
def ddp_cases(manifest: Path) -> dict[str, tuple[str, dict]]:
    synth = OmegaConf.to_container(OmegaConf.from_dotlist([o.removeprefix("data.") for o in TINY_DATA]))
    return {"one_chunk": ("cnn", {"data": {"source": "folder", "root": str(manifest), "sample_rate": RATE,
                                           "chunk_seconds": 1.0, "batch_size": 8, "train_chunks_per_track": 2,
                                           "num_workers": 0},
                                  "model": {"dropout": 0.3}, "trainer": {"max_epochs": 3}}),
            "several_chunks": ("crnn", {"data": {**synth, "eval_max_chunks": 3, "eval_batch_size": 7},
                                        "trainer": {"max_epochs": 2}})}


def write_ddp_cases(root: Path, cases: dict[str, tuple[str, dict]]) -> None:
    """<root>/ddp_case/<case>.yaml: a model choice, its tiny sizes, data and trainer settings per job,
    so one sweep over +ddp_case varies them together."""
    (root / "ddp_case").mkdir(parents=True)
    for case, (model, settings) in cases.items():
        sizes = OmegaConf.from_dotlist([o.removeprefix("model.") for o in TINY_MODEL[model]])
        body = OmegaConf.merge({"model": sizes}, settings)
        # A folder trains by the small-data recipe; these cases keep the house defaults they were written for.
        data = "  - override /data: folder\n  - override /recipe: none\n" if settings["data"].get("source") == "folder" else ""
        (root / "ddp_case" / f"{case}.yaml").write_text(
            f"# @package _global_\ndefaults:\n  - override /model: {model}\n{data}\n{OmegaConf.to_yaml(body)}")


@pytest.mark.slow
def test_ddp_sweep_matches_single_process_eval_and_gets_the_best_value(run_mgr, tmp_path):
    cases = ddp_cases(one_chunk_eval_splits(tmp_path / "music"))
    write_ddp_cases(tmp_path / "conf", cases)
    overrides = [o for o in tiny() if not o.startswith(("model", "data.", "trainer.max_epochs"))]
    run_mgr("train", "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "trainer=ddp_cpu",
            f"+ddp_case=choice({','.join(cases)})", *overrides, "optimizer.lr=3e-3",
            # Uncalibrated: the test loss below is the best val loss itself (a temperature would change it).
            "calibrate=false", f"hydra.searchpath=[file://{tmp_path / 'conf'}]")
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [j.name for j in jobs] == ["0", "1"]  # no extra directories from the second rank
    assert not (tmp_path / "logs" / "train" / "runs").exists()
    best_val_loss = {}
    for job in jobs:
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        (case,) = [c for c, (model, settings) in cases.items() if config.data.source == settings["data"].get("source", "synth")]
        assert config.model.name == cases[case][0]
        with open(job / "csv" / "metrics.csv", newline="") as f:
            val_loss = [float(row["val/loss"]) for row in csv.DictReader(f) if row["val/loss"]]
        assert len(val_loss) == config.trainer.max_epochs, (case, val_loss)
        best_val_loss[case] = min(val_loss)
        trained = json.loads((job / "metrics.json").read_text())
        evaluated = run_dir_of(run_mgr("eval", f"ckpt_path={trained['best_checkpoint']}"))
        evaluation = json.loads((evaluated / "metrics.json").read_text())
        for key in KEYS:
            assert evaluation[key] == pytest.approx(trained[key], abs=1e-5 if case == "one_chunk" else 1e-4), (case, key)
        assert evaluation["chunk_confusion"] == trained["chunk_confusion"]
        assert evaluation["track_confusion"] == trained["track_confusion"]
        spawned, single = check_predictions_match_metrics(job), check_predictions_match_metrics(evaluated)
        assert [r["path"] for r in spawned] == [r["path"] for r in single]
        for a, b in zip(spawned, single):
            assert (a["label"], a["prediction"], a["chunks"]) == (b["label"], b["prediction"], b["chunks"])
            assert [float(v) for k, v in a.items() if k.startswith("score_")] == \
                pytest.approx([float(v) for k, v in b.items() if k.startswith("score_")], abs=1e-4)
        assert trained["intervals"]["test/track_acc"] == evaluation["intervals"]["test/track_acc"]
        chunks = sum(map(sum, trained["chunk_confusion"]))  # every chunk counted once
        if case == "one_chunk":
            assert min(val_loss) < val_loss[-1], val_loss  # the last epoch is not the best
            assert trained["chunk_confusion"] == [[0, 0], [1, 0]]  # the test chunk counted once, as high
            assert evaluation["test/loss"] == pytest.approx(min(val_loss), abs=1e-5)  # the val chunk, in one process
        else:
            assert chunks == 15 and len(spawned) == 5
    # The sweeper got each job's best val loss (not its last): the one_chunk job's is the lowest.
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_params"] == {"+ddp_case": "one_chunk"}, (results, best_val_loss)
    assert results["best_value"] == pytest.approx(best_val_loss["one_chunk"], abs=1e-6)
