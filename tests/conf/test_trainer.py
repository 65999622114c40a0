"""trainer=ddp_cpu: DDP on two CPU processes (gloo) inside a Hydra multirun, one run directory per
job, test metrics and predictions equal to a single-process evaluation of the same checkpoint (also
of a split with fewer chunks than ranks), and the best value returned to the sweeper."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from omegaconf import OmegaConf

from conftest import TINY_MODEL, check_predictions_match_metrics, metrics_of, run_dir_of, tiny


RATE = 8000


KEYS = ("test/acc", "test/f1", "test/track_acc", "test/track_f1", "test/loss")


# The two jobs of the DDP multirun, each a model at its tiny sizes and the test split as the job
# checks it. one_chunk: one chunk per track, 5 test chunks, an odd number, so an even split across two
# ranks (Lightning's DistributedSampler) would repeat one; batches of 2 give the ranks unequal numbers
# of batches. several_chunks: each rank scores a share of every track's chunks, and the predictions
# file must still list every track once, in the order and with the scores of one process.
DDP_CASES = {"one_chunk": ("cnn", {"eval_max_chunks": 1, "eval_batch_size": 2}),
             "several_chunks": ("crnn", {"eval_batch_size": 3})}


def write_ddp_cases(root: Path) -> None:
    """<root>/ddp_case/<case>.yaml: a model choice, its tiny sizes and data settings per job, so one
    multirun (+ddp_case=a,b) varies them together."""
    (root / "ddp_case").mkdir(parents=True)
    for case, (model, data) in DDP_CASES.items():
        sizes = OmegaConf.from_dotlist([o.removeprefix("model.") for o in TINY_MODEL[model]])
        body = OmegaConf.to_yaml({"model": OmegaConf.to_container(sizes), "data": data})
        (root / "ddp_case" / f"{case}.yaml").write_text(
            f"# @package _global_\ndefaults:\n  - override /model: {model}\n\n{body}")


@pytest.mark.slow
def test_ddp_multirun_matches_single_process_eval(run_mgr, tmp_path):
    write_ddp_cases(tmp_path / "conf")
    overrides = [o for o in tiny(epochs=2) if not o.startswith("model")]
    run_mgr("train", "-m", "trainer=ddp_cpu", f"+ddp_case={','.join(DDP_CASES)}", *overrides,
            f"hydra.searchpath=[file://{tmp_path / 'conf'}]")
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [j.name for j in jobs] == ["0", "1"]  # no extra directories from the second rank
    assert not (tmp_path / "logs" / "train" / "runs").exists()
    for job, (case, (model, _)) in zip(jobs, DDP_CASES.items()):
        assert OmegaConf.load(job / ".hydra" / "config.yaml").model.name == model
        trained = json.loads((job / "metrics.json").read_text())
        evaluated = run_dir_of(run_mgr("eval", f"ckpt_path={trained['best_checkpoint']}"))
        evaluation = json.loads((evaluated / "metrics.json").read_text())
        for key in KEYS:
            assert evaluation[key] == pytest.approx(trained[key], abs=1e-4), (case, key)
        assert evaluation["chunk_confusion"] == trained["chunk_confusion"]
        assert evaluation["track_confusion"] == trained["track_confusion"]
        spawned, single = check_predictions_match_metrics(job), check_predictions_match_metrics(evaluated)
        assert [r["path"] for r in spawned] == [r["path"] for r in single]
        for a, b in zip(spawned, single):
            assert (a["label"], a["prediction"], a["chunks"]) == (b["label"], b["prediction"], b["chunks"])
            assert [float(v) for k, v in a.items() if k.startswith("score_")] == \
                pytest.approx([float(v) for k, v in b.items() if k.startswith("score_")], abs=1e-4)
        assert trained["intervals"]["test/track_acc"] == evaluation["intervals"]["test/track_acc"]
        chunks = sum(map(sum, trained["chunk_confusion"]))
        assert chunks == 5 if case == "one_chunk" else chunks > 5  # every chunk counted once


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


@pytest.mark.slow
def test_ddp_sweep_gets_the_best_value_and_one_chunk_splits_score_as_in_one_process(run_mgr, tmp_path):
    manifest = one_chunk_eval_splits(tmp_path / "music")
    data = ["data=folder", f"data.root={manifest}", f"data.sample_rate={RATE}", "data.chunk_seconds=1.0",
            "data.batch_size=8", "data.train_chunks_per_track=2", "data.num_workers=0"]
    overrides = [o for o in tiny(epochs=3) if not o.startswith("data.")]
    # One Optuna trial over a one-point space: the sweep's best value is what the run returned.
    run_mgr("train", "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1", "model.dropout=choice(0.3)",
            "trainer=ddp_cpu", *overrides, *data, "optimizer.lr=3e-3")
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    with open(sweep / "0" / "csv" / "metrics.csv", newline="") as f:
        val_loss = [float(row["val/loss"]) for row in csv.DictReader(f) if row["val/loss"]]
    assert len(val_loss) == 3 and min(val_loss) < val_loss[-1], val_loss  # the last epoch is not the best
    returned = yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_value"]
    assert returned == pytest.approx(min(val_loss), abs=1e-6)
    trained = json.loads((sweep / "0" / "metrics.json").read_text())
    assert trained["chunk_confusion"] == [[0, 0], [1, 0]]  # the test chunk counted once, as high
    evaluation = metrics_of(run_mgr("eval", f"ckpt_path={trained['best_checkpoint']}"))
    for key in KEYS:
        assert evaluation[key] == pytest.approx(trained[key], abs=1e-5), key
    assert evaluation["track_confusion"] == trained["track_confusion"] == [[0, 0], [1, 0]]
    assert evaluation["test/loss"] == pytest.approx(returned, abs=1e-5)  # the val chunk, scored in one process
