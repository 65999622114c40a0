"""mgr.predict: any file a user has, labelled from the checkpoint alone."""

from __future__ import annotations

import csv
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from omegaconf import OmegaConf

from conftest import mgr_command, mgr_in_process, save_checkpoint, seed004_vote
from mgr.data import synth_audio
from mgr.models import GenreClassifier, load_model
from mgr import MGRError
from mgr.models.aggregation import TrackAggregation
from mgr.models.metrics import TrackMetrics
from mgr.models.novelty import NoveltyDetector
from mgr.predict import format_row, predict, predict_files, write_outputs

# (extension, soundfile format, subtype, sample rate, channels): every format mgr decodes,
# mono and stereo, at the rates users' files come in. Opus exists at 48 kHz only.
FORMATS = [
    ("wav", "WAV", "PCM_16", 44100, 1),
    ("flac", "FLAC", "PCM_24", 48000, 2),
    ("ogg", "OGG", "VORBIS", 22050, 1),
    ("mp3", "MP3", None, 44100, 2),
    ("opus", "OGG", "OPUS", 48000, 1),
    ("mp3", "MP3", None, 22050, 1),
    ("wav", "WAV", "FLOAT", 48000, 2),
]


def write_audio(path, label: int, seed: int, seconds: float, rate: int, channels: int, fmt: str, subtype) -> None:
    wave = synth_audio.render_track(label, seed, seconds)
    wave = soxr.resample(wave, synth_audio.RENDER_RATE, rate).astype(np.float32)
    if channels == 2:
        wave = np.stack([wave, 0.7 * wave], axis=1)
    sf.write(str(path), wave, rate, format=fmt, subtype=subtype)


@pytest.fixture(scope="module")
def best_checkpoint(trained_run) -> str:
    return json.loads((trained_run / "metrics.json").read_text())["best_checkpoint"]


def predict_cli(tmp_path, data_dir, *overrides, check=False, process=False):
    runner = mgr_command if process else mgr_in_process
    return runner("predict", *overrides, cwd=tmp_path, data_dir=data_dir, check=check)


def read_outputs(proc):
    line = next(l for l in proc.stdout.splitlines() if l.startswith("Labelled"))
    run_dir = line.rsplit(" in ", 1)[1].strip()
    rows = list(csv.DictReader(open(f"{run_dir}/predictions.csv")))
    return rows, json.loads(open(f"{run_dir}/predictions.json").read())


@pytest.mark.slow
def test_held_out_synth_files_are_labelled_correctly(best_checkpoint, tmp_path, data_dir):
    """New tracks (seeds the dataset never drew), in every format, rate and channel count."""
    music = tmp_path / "held_out"
    music.mkdir()
    for label in range(len(synth_audio.CLASSES)):
        for k, (ext, fmt, subtype, rate, channels) in enumerate(FORMATS[:5]):
            path = music / f"{synth_audio.CLASSES[label]}-{k}.{ext}"
            write_audio(path, label, 1000 + 10 * label + k, 3.0, rate, channels, fmt, subtype)
    proc = predict_cli(tmp_path, data_dir, f"ckpt_path={best_checkpoint}", f"inputs={music}")
    assert proc.returncode == 0, proc.stderr
    rows, _ = read_outputs(proc)
    assert len(rows) == 25 and all(r["status"] == "ok" for r in rows)
    correct = [r["path"].rsplit("/", 1)[1].split("-")[0] == r["genre"] for r in rows]
    assert np.mean(correct) >= 0.8, rows  # chance: 0.2; this model scores ~0.95 on its test split


@pytest.mark.slow
def test_any_format_rate_channels_and_length_and_a_corrupt_file(best_checkpoint, tmp_path, data_dir):
    music = tmp_path / "mixed"
    (music / "deeper").mkdir(parents=True)
    expected = {}
    for k, (ext, fmt, subtype, rate, channels) in enumerate(FORMATS):
        name = f"deeper/{k}_{rate}_{channels}ch.{ext}" if k % 2 else f"{k}_{rate}_{channels}ch.{ext}"
        write_audio(music / name, k % 5, k, 2.0, rate, channels, fmt, subtype)
        expected[name] = 2.0
    # Five minutes at a low rate (kept small), made of a repeated synth track.
    long = np.tile(synth_audio.render_track(0, 7, 6.0), 50)
    sf.write(str(music / "five_minutes.flac"), long, synth_audio.RENDER_RATE)
    expected["five_minutes.flac"] = 300.0
    (music / "corrupt.mp3").write_bytes(b"ID3" + bytes(range(256)) * 40)
    (music / "notes.txt").write_text("not audio, and not picked from a folder")
    missing = tmp_path / "no_such_song.wav"

    proc = predict_cli(tmp_path, data_dir, f"ckpt_path={best_checkpoint}", f"inputs=[{music},{missing}]", "top_k=2")
    assert proc.returncode == 2, proc.stderr  # some files failed, the others are labelled
    rows, report = read_outputs(proc)
    ok = {r["path"].split("/mixed/")[1]: r for r in rows if r["status"] == "ok"}
    assert set(ok) == set(expected)
    model = load_model(best_checkpoint)
    chunk, hop = model.hparams.chunk_seconds, model.hparams.chunk_seconds / 2
    for name, seconds in expected.items():
        row = ok[name]
        assert float(row["seconds"]) == pytest.approx(seconds, abs=0.06), name  # lossy codecs pad a little
        assert int(row["chunks"]) == 1 + int(np.ceil(round((float(row["seconds"]) - chunk) / hop, 6)))
        probabilities = [float(row[c]) for c in model.class_names]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-3)
        assert row["genre"] == model.class_names[int(np.argmax(probabilities))]
    failed = {r["path"].rsplit("/", 1)[1]: r["error"] for r in rows if r["status"] == "failed"}
    assert set(failed) == {"corrupt.mp3", "no_such_song.wav"}  # notes.txt: not audio, not picked
    assert failed["no_such_song.wav"] == "does not exist"
    assert "decode" in failed["corrupt.mp3"]
    # The table names every file, the failed ones with their reason; JSON holds the same.
    assert "FAILED: does not exist" in proc.stdout and "five_minutes.flac" in proc.stdout
    assert len(report["files"]) == len(rows) and report["class_names"] == model.class_names
    assert all(len(f["top"]) == 2 for f in report["files"] if f["status"] == "ok")


@pytest.mark.slow
def test_file_probabilities_are_the_softmax_of_mean_chunk_logits(best_checkpoint, tmp_path):
    model = load_model(best_checkpoint).eval()
    chunk = model.chunk_samples
    wave = synth_audio.render_track(3, 5, 4.0)
    wave = soxr.resample(wave, synth_audio.RENDER_RATE, model.hparams.sample_rate).astype(np.float32)[: 4 * chunk]
    sf.write(str(tmp_path / "x.wav"), wave, model.hparams.sample_rate, subtype="FLOAT")
    (p,) = predict_files(model, [tmp_path / "x.wav"], overlap=0.0)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(wave).reshape(4, chunk)).mean(0), 0)
    assert p.chunks == 4
    assert p.probabilities == pytest.approx(expected.tolist(), abs=1e-5)


def finished_within(seconds: float, fifos: list[Path], run):
    """run()'s result, or a failure if it is still running after `seconds`: then the FIFOs get a
    writer, so that a reader blocked on one returns and the test session is not left hanging."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=run()), daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for fifo in fifos:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(30)
        pytest.fail(f"still running after {seconds} s: opening a FIFO blocked it")
    return result["value"]


@pytest.mark.slow
def test_fifos_devices_and_symlink_loops_are_listed_as_failed_and_the_good_file_is_labelled(
        best_checkpoint, tmp_path, data_dir):
    """Given directly or found in a folder: none is opened, none stops the batch (opening a FIFO
    blocks until a writer comes; resolving a symlink loop raises)."""
    music = tmp_path / "music"
    music.mkdir()
    write_audio(music / "good.wav", 1, 3, 2.0, 22050, 1, "WAV", "PCM_16")
    fifos = [music / "stream.wav", tmp_path / "direct.flac"]
    for fifo in fifos:
        os.mkfifo(fifo)
    for loop in (music / "loop.mp3", tmp_path / "direct_loop.wav"):
        loop.symlink_to(loop.name)  # points at itself
    inputs = f"inputs=[{music},{fifos[1]},{tmp_path / 'direct_loop.wav'},/dev/zero]"

    proc = finished_within(60, fifos, lambda: predict_cli(tmp_path, data_dir, f"ckpt_path={best_checkpoint}", inputs))
    assert proc.returncode == 2, proc.stderr  # some failed, the others labelled
    rows, report = read_outputs(proc)
    status = {r["path"].rsplit("/", 1)[1]: (r["status"], r["error"]) for r in rows}
    assert status == {
        "good.wav": ("ok", ""),
        "stream.wav": ("failed", "not a regular file (FIFO)"),
        "loop.mp3": ("failed", "symlink loop"),
        "direct.flac": ("failed", "not a regular file (FIFO)"),
        "direct_loop.wav": ("failed", "symlink loop"),
        "zero": ("failed", "not a regular file (character device)"),
    }
    assert [f["status"] for f in report["files"]] == [r["status"] for r in rows]
    assert "FAILED: symlink loop" in proc.stdout and "Labelled 1 file(s), 5 failed" in proc.stdout


@pytest.mark.slow
def test_a_silent_file_is_marked_silent_not_labelled(best_checkpoint, tmp_path):
    """Silent: no sample above the floor the waveform cache drops silent files at (-80 dBFS)."""
    model = load_model(best_checkpoint)
    rate = model.hparams.sample_rate
    quiet = np.random.default_rng(0).uniform(-9e-5, 9e-5, 2 * rate).astype(np.float32)
    sf.write(str(tmp_path / "zeros.wav"), np.zeros(2 * rate, dtype=np.float32), rate, subtype="FLOAT")
    sf.write(str(tmp_path / "below_floor.wav"), quiet, rate, subtype="FLOAT")
    sf.write(str(tmp_path / "above_floor.wav"), quiet * 2, rate, subtype="FLOAT")  # peaks near -75 dBFS
    paths = [tmp_path / n for n in ("zeros.wav", "below_floor.wav", "above_floor.wav")]
    predictions = list(predict_files(model, paths))
    assert [len(p.probabilities) for p in predictions] == [0, 0, len(model.class_names)]
    assert [p.status for p in predictions] == ["silent", "silent", "ok"]
    assert predictions[0].seconds == pytest.approx(2.0)

    csv_path, json_path = write_outputs(predictions, model.class_names, 2, tmp_path, {})
    rows = list(csv.DictReader(open(csv_path)))
    assert [(r["status"], r["genre"], r["seconds"]) for r in rows[:2]] == [("silent", "", "2.00")] * 2
    assert rows[2]["status"] == "ok" and rows[2]["genre"] in model.class_names
    files = json.loads(json_path.read_text())["files"]
    assert [(f["status"], f["top"]) for f in files[:2]] == [("silent", [])] * 2


def evaluate_in_process(*overrides: str) -> dict:
    """`python -m mgr.eval ...` without a new interpreter: its metrics.json."""
    from hydra import compose, initialize_config_module

    from mgr.eval import evaluate

    with initialize_config_module("mgr.conf", version_base="1.3"):
        cfg = compose("eval", overrides=list(overrides))
    evaluate(cfg)
    return json.loads(Path(cfg.paths.output_dir, "metrics.json").read_text())


@pytest.fixture(scope="module")
def test_split(best_checkpoint):
    """The training run's test split as its test step scores it: the files, the EvenChunks logits,
    each chunk's label and track position, and the track labels."""
    from mgr.data import GenreDataModule
    from mgr.models import read_checkpoint

    model = load_model(best_checkpoint).eval()
    datamodule = GenreDataModule(**read_checkpoint(best_checkpoint)["datamodule_hyper_parameters"])
    datamodule.prepare_data()
    datamodule.setup()
    tracks = datamodule.split_tracks["test"]
    evaluation = datamodule.eval_dataset("test")
    waves, labels, positions = torch.utils.data.default_collate([evaluation[i] for i in range(len(evaluation))])
    with torch.no_grad():
        logits = model(waves)
    return {"files": [Path(datamodule.tracks.files[t]) for t in tracks], "logits": logits, "labels": labels,
            "positions": positions, "track_labels": [datamodule.tracks.labels[t] for t in tracks], "waves": waves}


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["mean_logits", "mean_probs", "majority_vote"])
def test_overlap_0_labels_the_test_split_as_its_track_metrics_score_it(best_checkpoint, trained_run, test_split, rule):
    """predict's chunks at overlap=0 are evaluation's: on the training run's test files, each file's
    probabilities are its track's under the rule (by default the softmax of the mean EvenChunks
    logits), and the default gives the run's test track accuracy."""
    model = load_model(best_checkpoint).eval()
    model.set_track_aggregation(rule)
    logits, positions = test_split["logits"], test_split["positions"]
    votes = TrackAggregation("majority_vote").scores(logits, positions, len(test_split["files"]))
    predictions = list(predict_files(model, test_split["files"], overlap=0.0))
    for k, p in enumerate(predictions):
        assert p.error is None and p.chunks == int((positions == k).sum())
        chunks = logits[positions == k]
        expected = {"mean_logits": torch.softmax(chunks.mean(0), 0), "mean_probs": torch.softmax(chunks, 1).mean(0),
                    "majority_vote": votes[k]}[rule]
        assert p.probabilities == pytest.approx(expected.tolist(), abs=1e-5)
    if rule == "mean_logits":
        labels = test_split["track_labels"]
        accuracy = np.mean([int(np.argmax(p.probabilities)) == y for p, y in zip(predictions, labels)])
        metrics = json.loads((trained_run / "metrics.json").read_text())
        assert accuracy == pytest.approx(metrics["test/track_acc"], abs=1e-6)


@pytest.mark.slow
def test_eval_and_predict_vote_as_the_training_run_s_track_metrics_do(best_checkpoint, trained_run, test_split,
                                                                      tmp_path, data_dir):
    """track_aggregation=majority_vote on mgr.eval and on mgr.predict (overlap=0, the test files) of the
    training run's checkpoint: the track metrics of the run's test step under that rule (TrackMetrics
    on the same chunk logits), which are seed 004's rule written out; the chunk metrics do not move."""
    vote = ["track_aggregation=majority_vote", "vote_threshold=0.5"]
    trained = json.loads((trained_run / "metrics.json").read_text())
    assert trained["track_aggregation"] == "mean_logits"  # the run's own (the default), as its checkpoint holds
    assert torch.load(best_checkpoint, weights_only=True)["hyper_parameters"]["track_aggregation"] == "mean_logits"
    evaluation = evaluate_in_process(f"ckpt_path={best_checkpoint}", *vote, "trainer.enable_progress_bar=false",
                                     f"paths.data_dir={data_dir}", f"paths.output_dir={tmp_path}")
    assert (evaluation["track_aggregation"], evaluation["vote_threshold"]) == ("majority_vote", 0.5)
    for key in ("test/acc", "test/f1", "test/loss"):
        assert evaluation[key] == pytest.approx(trained[key], abs=1e-4), key
    logits, positions, n_classes = test_split["logits"], test_split["positions"], len(trained["class_names"])
    metric = TrackMetrics(n_classes, TrackAggregation("majority_vote", 0.5))
    metric.update(logits, test_split["labels"], positions)
    expected = metric.compute()
    assert evaluation["test/track_acc"] == pytest.approx(float(expected["track_acc"]), abs=1e-4)
    assert evaluation["test/track_f1"] == pytest.approx(float(expected["track_f1"]), abs=1e-4)
    assert evaluation["track_confusion"] == expected["track_confusion"].tolist()
    voted = [seed004_vote(torch.softmax(logits[positions == k], 1), 0.5) for k in range(len(test_split["files"]))]
    confusion = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(confusion, (test_split["track_labels"], voted), 1)
    assert evaluation["track_confusion"] == confusion.tolist()

    inputs = "inputs=[" + ",".join(f"'{f}'" for f in test_split["files"]) + "]"
    proc = predict_cli(tmp_path, data_dir, f"ckpt_path={best_checkpoint}", inputs, "overlap=0", *vote, check=True)
    assert "majority vote of chunks (top probability above 0.5)" in proc.stdout
    _, report = read_outputs(proc)
    assert (report["track_aggregation"], report["vote_threshold"]) == ("majority_vote", 0.5)
    files = {f["path"]: f for f in report["files"]}
    shares = TrackAggregation("majority_vote", 0.5).scores(logits, positions, len(voted))
    for k, path in enumerate(test_split["files"]):
        labelled = files[str(path.resolve())]
        assert labelled["top"][0]["genre"] == trained["class_names"][voted[k]]
        assert list(labelled["probabilities"].values()) == pytest.approx(shares[k].tolist(), abs=1e-6)


@pytest.mark.slow
def test_a_run_fits_a_novelty_detector_that_predict_answers_unknown_by(best_checkpoint, trained_run, tmp_path):
    """mgr.train (novelty=true, the default) writes the fitted detector into the best checkpoint and its
    fit into metrics.json; mgr.predict scores every file by it, and with novelty=true answers `unknown`
    for a file above its threshold, saying why; without novelty=true it only reports the score."""
    fit = json.loads((trained_run / "metrics.json").read_text())["novelty_fit"]
    model = load_model(best_checkpoint)
    assert model.novelty.fitted and float(model.novelty.threshold) == pytest.approx(fit["threshold"])
    rate = model.hparams.sample_rate
    paths = []
    for k in range(2):
        paths.append(tmp_path / f"song{k}.wav")
        write_audio(paths[-1], label=k, seed=k, seconds=2.0, rate=rate, channels=1, fmt="WAV", subtype="PCM_16")
    reported = list(predict_files(model, paths))
    scores = [p.novelty for p in reported]
    assert all(s is not None and s >= 0 for s in scores) and not any(p.unknown for p in reported)
    model.novelty.threshold.fill_((scores[0] + scores[1]) / 2)  # the one file above it is novel
    answered = list(predict_files(model, paths, novelty=True))
    novel = [s > float(model.novelty.threshold) for s in scores]
    assert [p.novel for p in answered] == [p.unknown for p in answered] == novel and sum(novel) == 1
    assert "UNKNOWN, unlike the training data" in format_row(answered[novel.index(True)], model.class_names, 1, 20)
    rows = list(csv.DictReader(open(write_outputs(answered, model.class_names, 1, tmp_path, {})[0])))
    assert [float(r["novelty"]) for r in rows] == pytest.approx(scores, abs=1e-4)
    assert [r["genre"] == "unknown" for r in rows] == novel


def test_novelty_true_needs_a_checkpoint_with_a_detector(best_checkpoint, tmp_path):
    model = load_model(best_checkpoint)
    model.novelty = NoveltyDetector()  # as every checkpoint written before the detector existed loads
    path = tmp_path / "before.ckpt"
    save_checkpoint(model, path)
    song = tmp_path / "song.wav"
    sf.write(str(song), np.random.default_rng(0).uniform(-0.5, 0.5, 8000).astype(np.float32), 8000)
    cfg = OmegaConf.create({"ckpt_path": str(path), "inputs": [str(song)], "top_k": 3, "overlap": 0.5,
                            "batch_size": 8, "device": "cpu", "decode_threads": 1, "novelty": True})
    with pytest.raises(MGRError, match="novelty=true needs a checkpoint whose training fitted a novelty detector"):
        predict.__wrapped__(cfg)


def test_user_mistakes_end_in_one_clear_sentence(best_checkpoint, tmp_path, data_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    # In a new process: the exit code and the one line on stderr are what the shell sees.
    proc = predict_cli(tmp_path, data_dir, f"ckpt_path={best_checkpoint}", f"inputs=[{empty}]", process=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("mgr: error:")]
    assert len(errors) == 1 and "No audio files found" in errors[0], proc.stderr
    # The same checks in-process (the task's body, without the wrapper that prints and exits).
    song = tmp_path / "song.wav"
    sf.write(str(song), np.zeros(8000, dtype=np.float32), 8000)
    cases = [
        ({"ckpt_path": str(tmp_path / "nope.ckpt")}, "does not exist"),
        ({"overlap": 1.0}, "overlap=1.0"),
        ({"device": "tpu:7"}, "not a torch device"),
        ({"track_aggregation": "mode"}, "track_aggregation='mode' is not one of"),
        ({"vote_threshold": 1.5}, "vote_threshold=1.5 must be"),
        ({"min_confidence": 1.5}, "min_confidence=1.5 must be null"),
        ({"min_confidence": 0}, "min_confidence=0 must be null"),
    ]
    for changes, text in cases:
        cfg = OmegaConf.create({"ckpt_path": best_checkpoint, "inputs": [str(song)], "top_k": 3, "overlap": 0.5,
                                "batch_size": 8, "device": "cpu", "decode_threads": 1, **changes})
        with pytest.raises(MGRError, match=text):
            predict.__wrapped__(cfg)


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
def test_predict_runs_on_the_gpu(best_checkpoint, tmp_path):
    model = load_model(best_checkpoint)
    path = tmp_path / "x.wav"
    write_audio(path, 1, 3, 5.0, 44100, 2, "WAV", "PCM_16")
    (on_cpu,) = predict_files(model, [path], device="cpu")
    (on_gpu,) = predict_files(model, [path], device="cuda")
    assert next(model.parameters()).is_cuda
    assert on_gpu.probabilities == pytest.approx(on_cpu.probabilities, abs=1e-3)


def other_model(best_checkpoint, seed: int, **changes) -> GenreClassifier:
    """An untrained model of the trained run's settings (`changes` replace some), its logits 20 times
    as wide as its initial ones, so that its confident and often wrong chunks move an average."""
    torch.manual_seed(seed)
    model = GenreClassifier(**{**load_model(best_checkpoint).hparams, **changes})
    with torch.no_grad():
        model.head.weight *= 20
    return model.eval()


@pytest.fixture(scope="module")
def other_checkpoint(best_checkpoint, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("other") / "other.ckpt"
    save_checkpoint(other_model(best_checkpoint, seed=1), path)
    return str(path)


@pytest.mark.slow
def test_eval_and_predict_of_two_checkpoints_average_their_probabilities(best_checkpoint, other_checkpoint,
                                                                         trained_run, test_split, tmp_path, data_dir):
    """ckpt_path=[trained, other]: each test chunk gets the mean of the two models' softmax, computed here
    from each model alone; eval's metrics and predict's files (overlap=0: eval's chunks) follow from it,
    tracks combined by the first checkpoint's rule (mean_logits: the softmax of the mean log-probability)."""
    with torch.no_grad():
        other = load_model(other_checkpoint).eval()(test_split["waves"])
    mean = (torch.softmax(test_split["logits"], 1) + torch.softmax(other, 1)) / 2
    positions, labels, n = test_split["positions"], test_split["labels"], len(test_split["files"])
    track_logits = TrackAggregation("mean_logits").scores(mean.log(), positions, n)
    track_predictions = track_logits.argmax(1).tolist()
    assert track_predictions != TrackAggregation().scores(test_split["logits"], positions, n).argmax(1).tolist()

    both = f"ckpt_path=[{best_checkpoint},{other_checkpoint}]"
    evaluation = evaluate_in_process(both, "trainer.enable_progress_bar=false", f"paths.data_dir={data_dir}",
                                     f"paths.output_dir={tmp_path / 'eval'}")
    assert evaluation["checkpoints"] == [best_checkpoint, other_checkpoint] and "checkpoint" not in evaluation
    assert evaluation["test/acc"] == pytest.approx((mean.argmax(1) == labels).float().mean().item(), abs=1e-6)
    assert evaluation["test/loss"] == pytest.approx(-mean[torch.arange(len(labels)), labels].log().mean().item(),
                                                    abs=1e-5)
    track_labels = test_split["track_labels"]
    assert evaluation["test/track_acc"] == pytest.approx(np.mean(np.equal(track_predictions, track_labels)), abs=1e-6)
    confusion = np.zeros((len(evaluation["class_names"]),) * 2, dtype=int)
    np.add.at(confusion, (track_labels, track_predictions), 1)
    assert evaluation["track_confusion"] == confusion.tolist()
    rows = list(csv.DictReader(open(tmp_path / "eval" / "test_predictions.csv")))
    assert {r["checkpoints"] for r in rows} == {f"{best_checkpoint};{other_checkpoint}"}

    inputs = "inputs=[" + ",".join(f"'{f}'" for f in test_split["files"]) + "]"
    proc = predict_cli(tmp_path, data_dir, both, inputs, "overlap=0", check=True)
    assert "ensemble of 2 (cnn, cnn)" in proc.stdout
    rows, report = read_outputs(proc)
    assert report["checkpoints"] == [best_checkpoint, other_checkpoint] and report["track_aggregation"] == "mean_logits"
    assert {r["checkpoints"] for r in rows} == {f"{best_checkpoint};{other_checkpoint}"}
    files = {f["path"]: f for f in report["files"]}
    for k, path in enumerate(test_split["files"]):
        probabilities = list(files[str(path.resolve())]["probabilities"].values())
        assert probabilities == pytest.approx(torch.softmax(track_logits[k], 0).tolist(), abs=1e-5)


@pytest.mark.slow
def test_checkpoints_of_other_classes_are_one_sentence_and_nothing_is_written(best_checkpoint, tmp_path, data_dir):
    classes = load_model(best_checkpoint).class_names
    odd = tmp_path / "reversed.ckpt"
    save_checkpoint(other_model(best_checkpoint, seed=2, class_names=classes[::-1]), odd)
    song = tmp_path / "song.wav"
    write_audio(song, 1, 3, 2.0, 8000, 1, "WAV", "PCM_16")
    proc = predict_cli(tmp_path, data_dir, f"ckpt_path=[{best_checkpoint},{odd}]", f"inputs=[{song}]")
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mgr: error:")]
    assert errors == [f"mgr: error: Cannot average {odd} with {best_checkpoint}: it has classes {classes[::-1]}, "
                      f"not {classes}; average only models trained on the same classes (in the same order), sample "
                      "rate and chunk length."], proc.stderr
    assert not list(tmp_path.rglob("predictions.*"))


def pink_noise(rng, n: int) -> np.ndarray:
    """Noise whose power falls as 1/f: white noise's spectrum divided by sqrt(f)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum))
    f[0] = 1
    return np.fft.irfft(spectrum / np.sqrt(f), n)


SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Music genre recognition needs honest answers.",
             "Please call Stella and ask her to bring these things.", "It is raining in the city today.",
             "One two three four five six seven eight nine ten."]


def out_of_domain_audio(folder: Path) -> dict[str, list[Path]]:
    """Audio of kinds the synth model never heard: white, pink and brown noise (numpy), and speech
    (espeak-ng, where it is installed: `apt-get install espeak-ng`)."""
    import shutil
    import subprocess

    folder.mkdir()
    rng = np.random.default_rng(0)
    kinds = {"noise": [], "speech": []}
    makers = {"white": rng.standard_normal, "pink": lambda n: pink_noise(rng, n),
              "brown": lambda n: np.cumsum(rng.standard_normal(n))}
    for k in range(5):
        for name, make in makers.items():
            wave = make(22050 * 3)
            path = folder / f"{name}{k}.wav"
            sf.write(str(path), (0.3 * wave / np.abs(wave).max()).astype(np.float32), 22050)
            kinds["noise"].append(path)
    if shutil.which("espeak-ng"):
        for k, sentence in enumerate(SENTENCES):
            for voice in ("en", "en-us"):
                path = folder / f"speech{k}-{voice}.wav"
                subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), sentence], check=True, capture_output=True)
                kinds["speech"].append(path)
    return kinds


@pytest.mark.slow
def test_min_confidence_answers_unknown_below_it_and_keeps_the_probabilities(best_checkpoint, tmp_path, data_dir):
    """In-domain synth files and out-of-domain audio through `mgr.predict min_confidence=0.6`: a file is
    `unknown` exactly when its top (calibrated) probability is below 0.6, its probabilities kept, and most
    in-domain files stay labelled. The shares of each kind answered `unknown` are printed (pytest -s):
    docs/explanation/calibration.md reports them. They show that for this tiny model max-softmax
    abstention does NOT reject noise or speech: it rejects what the model is unsure of, not what it never heard."""
    music = tmp_path / "music"
    music.mkdir()
    for label in range(len(synth_audio.CLASSES)):
        for k in range(4):
            write_audio(music / f"{synth_audio.CLASSES[label]}-{k}.wav", label, 2000 + 10 * label + k, 3.0, 22050, 1,
                        "WAV", "FLOAT")
    kinds = {"music": sorted(music.iterdir()), **out_of_domain_audio(tmp_path / "other")}
    proc = predict_cli(tmp_path, data_dir, f"ckpt_path={best_checkpoint}", f"inputs=[{music},{tmp_path / 'other'}]",
                       "min_confidence=0.6")
    assert proc.returncode == 0, proc.stderr
    rows, outputs = read_outputs(proc)
    names = outputs["class_names"]
    assert outputs["min_confidence"] == 0.6 and outputs["temperature"] == load_model(best_checkpoint).temperature
    for row, file in zip(rows, outputs["files"]):
        probabilities = [float(row[c]) for c in names]
        assert float(row["probability"]) == pytest.approx(max(probabilities), abs=1e-4)
        unknown = max(file["probabilities"].values()) < 0.6
        assert (row["status"], row["genre"], file["genre"]) == (("unknown", "unknown", "unknown") if unknown else
                                                               ("ok", names[int(np.argmax(probabilities))], row["genre"]))
    unknown = {os.path.realpath(r["path"]) for r in rows if r["genre"] == "unknown"}
    shares = {kind: float(np.mean([os.path.realpath(p) in unknown for p in paths])) for kind, paths in kinds.items()
              if paths}
    print(f"\nshare answered unknown at min_confidence=0.6: {shares}")
    assert shares["music"] <= 0.2  # most in-domain files keep their label
    assert f"{sum(r['status'] == 'unknown' for r in rows)} unknown (below min_confidence=0.6)" in proc.stdout


def test_an_unknown_file_is_written_as_unknown_with_its_probabilities(tmp_path):
    from mgr.predict import FilePrediction

    predictions = [FilePrediction("a.wav", 3.0, 5, [0.5, 0.3, 0.2], unknown=True),
                   FilePrediction("b.wav", 3.0, 5, [0.1, 0.8, 0.1])]
    csv_path, json_path = write_outputs(predictions, ["x", "y", "z"], 2, tmp_path, {"min_confidence": 0.6})
    rows = list(csv.DictReader(open(csv_path)))
    assert [(r["status"], r["genre"], r["probability"], r["x"]) for r in rows] == \
        [("unknown", "unknown", "0.5000", "0.5000"), ("ok", "y", "0.8000", "0.1000")]
    files = json.loads(json_path.read_text())["files"]
    assert [(f["status"], f["genre"], f["probabilities"]["x"]) for f in files] == [("unknown", "unknown", 0.5),
                                                                                    ("ok", "y", 0.1)]
