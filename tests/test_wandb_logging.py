"""W&B (mgr.wandb_logging): without credentials a run, trained or evaluated, logs offline (one
warning), with tags, config, metric summaries, the test report, and a finished run per multirun
job; a resumed run continues its W&B run."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from conftest import NO_PLOTS, compose_resolved, metrics_of, mgr_in_process, tiny
from mgr.wandb_logging import run_id_of

pytest.importorskip("wandb")


def read_wandb_records(path: Path, wait_s: float = 30.0, until=None) -> list:
    """The records of a finished .wandb transaction log. W&B's service process writes the log after the
    run's process has finished it, in no order we can rely on: read until its exit record is there and
    `until(records)` holds (or `wait_s` has passed)."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        try:
            records = parse_wandb_log(path)
        except Exception:  # a record still being written
            records = []
        finished = any(r.WhichOneof("record_type") == "exit" for r in records)
        if finished and (until is None or until(records)) or time.monotonic() > deadline:
            return records
        time.sleep(0.25)


def config_of(records: list) -> dict:
    return {i.key: json.loads(i.value_json) for r in records if r.WhichOneof("record_type") == "config"
            for i in r.config.update}


def parse_wandb_log(path: Path) -> list:
    """The records of a .wandb transaction log: a 7-byte header, then LevelDB-log blocks of protobufs."""
    from wandb.proto import wandb_internal_pb2

    data, pos, block, records, partial = path.read_bytes(), 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (kind == 0 and length == 0):
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        partial = chunk if kind in (1, 2) else partial + chunk
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(partial)
            records.append(record)
    return records


def without_wandb_login(monkeypatch, home: Path) -> None:
    monkeypatch.setenv("HOME", str(home))  # no ~/.netrc login
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)


def history_keys(records: list) -> set[str]:
    return {i.key or "/".join(i.nested_key) for r in records if r.WhichOneof("record_type") == "history"
            for i in r.history.item}


@pytest.mark.slow
def test_offline_runs_hold_metrics_config_and_report(tmp_path, data_dir, monkeypatch):
    without_wandb_login(monkeypatch, tmp_path)
    overrides = [o for o in tiny() if not o.startswith("model")]
    proc = mgr_in_process("train", "-m", "model=cnn,crnn", "logger=many", *overrides, "debug=limit",
                       cwd=tmp_path, data_dir=data_dir)
    assert (proc.stdout + proc.stderr).count("logging offline") == 1  # one warning for the whole sweep
    runs = sorted(tmp_path.glob("logs/train/multiruns/*/*/wandb/offline-run-*"))
    assert len(runs) == 2  # each job finished its own W&B run
    for run, model in zip(runs, ("cnn", "crnn")):
        records = read_wandb_records(next(run.glob("run-*.wandb")), until=lambda rs: "model" in config_of(rs)
                                     and "test/track_acc" in history_keys(rs))
        kinds = [r.WhichOneof("record_type") for r in records]
        assert "exit" in kinds
        (run_record,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        assert set(run_record.tags) == {"data:synth", "feature:mel", f"model:{model}"}
        history = history_keys(records)
        assert {"val/acc", "val/track_acc", "train/loss", "test/track_acc", "test/per_class/_type"} <= history
        assert any(k.startswith("test/track_confusion") for k in history)
        summaries = {r.metric.name: r.metric.summary for r in records if r.WhichOneof("record_type") == "metric"}
        assert summaries["val/acc"].max and summaries["val/loss"].min
        config = config_of(records)
        assert config["model"]["name"] == model and config["feature"]["name"] == "mel"
        assert list(run.glob("files/media/table/test/per_class_*.table.json"))
        assert list(run.glob("files/media/images/plots/confusion_track_*.png"))


@pytest.mark.slow
def test_a_multilabel_run_logs_its_per_tag_table_and_summaries_offline(tmp_path, data_dir, monkeypatch):
    without_wandb_login(monkeypatch, tmp_path)
    mgr_in_process("train", "task=multilabel", "data=synth_multilabel", *tiny("cnn", "mel", epochs=2),
                   "data.source_options.tracks_per_class=12", "logger=wandb", "debug=limit", cwd=tmp_path,
                   data_dir=data_dir)
    (run,) = tmp_path.glob("logs/train/runs/*/wandb/offline-run-*")
    records = read_wandb_records(next(run.glob("run-*.wandb")), until=lambda rs: "test/track_auc" in history_keys(rs))
    history = history_keys(records)
    assert {"val/track_auc", "test/track_auc", "test/per_class/_type"} <= history
    assert not any(k.startswith("test/track_confusion") for k in history)  # no confusion matrix of tags
    summaries = {r.metric.name: r.metric.summary for r in records if r.WhichOneof("record_type") == "metric"}
    assert summaries["val/track_auc"].max
    (table,) = run.glob("files/media/table/test/per_class_*.table.json")
    assert "roc_auc" in json.loads(table.read_text())["columns"]


@pytest.mark.parametrize("key,url,reason", [
    (None, None, "No W&B API key found"),
    ("0" * 40, "http://127.0.0.1:9", "cannot be reached"),  # a key, but no server: no waiting
])
def test_wandb_goes_offline_without_key_or_network(monkeypatch, tmp_path, key, url, reason, caplog):
    from mgr.wandb_logging import choose_wandb_mode

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    for name, value in (("WANDB_API_KEY", key), ("WANDB_BASE_URL", url)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    choose_wandb_mode()
    assert os.environ["WANDB_MODE"] == "offline"
    assert reason in caplog.text


@pytest.mark.slow
def test_eval_logs_offline_without_a_key_as_train_does(trained_proc, tmp_path, data_dir, monkeypatch):
    without_wandb_login(monkeypatch, tmp_path)
    best = metrics_of(trained_proc)["best_checkpoint"]
    proc = mgr_in_process("eval", f"ckpt_path={best}", "logger=wandb", cwd=tmp_path, data_dir=data_dir)
    assert (proc.stdout + proc.stderr).count("logging offline") == 1
    (run,) = tmp_path.glob("logs/eval/runs/*/wandb/offline-run-*")
    records = read_wandb_records(next(run.glob("run-*.wandb")))
    (run_record,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run_record.job_type == "eval"
    assert {"test/track_acc", "test/per_class/_type"} <= history_keys(records)  # the metrics and the report


def test_a_resumed_run_continues_its_wandb_run_and_leaves_the_config_as_it_was(tmp_path, monkeypatch):
    """The id comes from <run dir>/wandb/latest-run (offline runs too), passed to W&B, not written into cfg."""
    from hydra.utils import instantiate

    monkeypatch.setenv("WANDB_MODE", "offline")
    (tmp_path / "wandb" / "offline-run-20260101_000000-abc123").mkdir(parents=True)
    (tmp_path / "wandb" / "latest-run").symlink_to("offline-run-20260101_000000-abc123")
    resumed = compose_resolved("train", ["logger=wandb", "ckpt_path=last", f"paths.output_dir={tmp_path}"])
    logger = instantiate(resumed.logger.wandb)
    assert logger._wandb_init["id"] == "abc123" and logger._wandb_init["resume"] == "allow"
    assert resumed.logger.wandb.id is None
    fresh = instantiate(compose_resolved("train", ["logger=wandb", f"paths.output_dir={tmp_path}"]).logger.wandb)
    assert fresh._wandb_init["id"] is None  # a new run: a new W&B run


def test_the_run_id_is_read_from_a_run_folder_also_when_w_and_b_started_it_twice_in_a_second():
    assert run_id_of("offline-run-20261207_162316-q8cahhi4") == "q8cahhi4"
    assert run_id_of("offline-run-20261207_162316-q8cahhi4-1") == "q8cahhi4"  # a resume within the second
    assert run_id_of("run-20261207_162316-abc123") == "abc123"
    assert run_id_of("latest-run") is None


@pytest.mark.slow
def test_a_run_resumed_in_its_directory_logs_to_its_wandb_run(tmp_path, data_dir, monkeypatch):
    without_wandb_login(monkeypatch, tmp_path)
    run_dir = tmp_path / "run"
    common = [*tiny(), *NO_PLOTS, "logger=wandb", "test=false", f"hydra.run.dir={run_dir}"]
    mgr_in_process("train", *common, cwd=tmp_path, data_dir=data_dir)
    mgr_in_process("train", *common, "ckpt_path=last", "trainer.max_epochs=2", cwd=tmp_path, data_dir=data_dir)
    runs = sorted(run_dir.glob("wandb/offline-run-*"))  # one folder per start (-1 after it within a second)
    assert len(runs) == 2 and len({run_id_of(r.name) for r in runs}) == 1  # one W&B run id
    records = read_wandb_records(sorted(runs[-1].glob("run-*.wandb"))[-1], until=lambda rs: "logger" in config_of(rs))
    config = config_of(records)
    assert "logger" in config, sorted(config)
    assert config["logger"]["wandb"]["id"] is None  # the id went to W&B, the config stayed as given
