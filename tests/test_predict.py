"""mgr.predict: any file a user has, labelled from the checkpoint alone."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from omegaconf import OmegaConf

from conftest import mgr_command
from mgr.data import synth
from mgr.models import load_model
from mgr import MGRError
from mgr.data.chunking import chunk_starts
from mgr.predict import predict, predict_files

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
    wave = synth.render_track(label, seed, seconds)
    wave = soxr.resample(wave, synth.RENDER_RATE, rate).astype(np.float32)
    if channels == 2:
        wave = np.stack([wave, 0.7 * wave], axis=1)
    sf.write(str(path), wave, rate, format=fmt, subtype=subtype)


@pytest.fixture(scope="module")
def best_checkpoint(trained_run) -> str:
    return json.loads((trained_run / "metrics.json").read_text())["best_checkpoint"]


def predict_cli(tmp_path, data_dir, *overrides, check=False):
    return mgr_command("predict", *overrides, cwd=tmp_path, data_dir=data_dir, check=check)


def read_outputs(proc):
    line = next(l for l in proc.stdout.splitlines() if l.startswith("Labelled"))
    run_dir = line.rsplit(" in ", 1)[1].strip()
    rows = list(csv.DictReader(open(f"{run_dir}/predictions.csv")))
    return rows, json.loads(open(f"{run_dir}/predictions.json").read())


def test_held_out_synth_files_are_labelled_correctly(best_checkpoint, tmp_path, data_dir):
    """New tracks (seeds the dataset never drew), in every format, rate and channel count."""
    music = tmp_path / "held_out"
    music.mkdir()
    for label in range(len(synth.CLASSES)):
        for k, (ext, fmt, subtype, rate, channels) in enumerate(FORMATS[:5]):
            path = music / f"{synth.CLASSES[label]}-{k}.{ext}"
            write_audio(path, label, 1000 + 10 * label + k, 3.0, rate, channels, fmt, subtype)
    proc = predict_cli(tmp_path, data_dir, f"ckpt_path={best_checkpoint}", f"inputs={music}")
    assert proc.returncode == 0, proc.stderr
    rows, _ = read_outputs(proc)
    assert len(rows) == 25 and all(r["status"] == "ok" for r in rows)
    correct = [r["path"].rsplit("/", 1)[1].split("-")[0] == r["genre"] for r in rows]
    assert np.mean(correct) >= 0.8, rows  # chance: 0.2; this model scores ~0.95 on its test split


def test_any_format_rate_channels_and_length_and_a_corrupt_file(best_checkpoint, tmp_path, data_dir):
    music = tmp_path / "mixed"
    (music / "deeper").mkdir(parents=True)
    expected = {}
    for k, (ext, fmt, subtype, rate, channels) in enumerate(FORMATS):
        name = f"deeper/{k}_{rate}_{channels}ch.{ext}" if k % 2 else f"{k}_{rate}_{channels}ch.{ext}"
        write_audio(music / name, k % 5, k, 2.0, rate, channels, fmt, subtype)
        expected[name] = 2.0
    # Five minutes at a low rate (kept small), made of a repeated synth track.
    long = np.tile(synth.render_track(0, 7, 6.0), 50)
    sf.write(str(music / "five_minutes.flac"), long, synth.RENDER_RATE)
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


def test_file_probabilities_are_the_softmax_of_mean_chunk_logits(best_checkpoint, tmp_path):
    model = load_model(best_checkpoint).eval()
    chunk = model.chunk_samples
    wave = synth.render_track(3, 5, 4.0)
    wave = soxr.resample(wave, synth.RENDER_RATE, model.hparams.sample_rate).astype(np.float32)[: 4 * chunk]
    sf.write(str(tmp_path / "x.wav"), wave, model.hparams.sample_rate, subtype="FLOAT")
    (p,) = predict_files(model, [tmp_path / "x.wav"], overlap=0.0)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(wave).reshape(4, chunk)).mean(0), 0)
    assert p.chunks == 4
    assert p.probabilities == pytest.approx(expected.tolist(), abs=1e-5)


def test_overlap_0_labels_the_test_split_as_its_track_metrics_score_it(best_checkpoint, trained_run):
    """predict's chunks at overlap=0 are evaluation's: on the training run's test files, the same
    probabilities as the softmax of the mean EvenChunks logits, and the run's test track accuracy."""
    from mgr.data import GenreDataModule
    from mgr.models import read_checkpoint

    model = load_model(best_checkpoint).eval()
    datamodule = GenreDataModule(**read_checkpoint(best_checkpoint)["datamodule_hyper_parameters"])
    datamodule.prepare_data()
    datamodule.setup()
    tracks = datamodule.split_tracks["test"]
    evaluation = datamodule.eval_dataset("test")
    waves, _, positions = torch.utils.data.default_collate([evaluation[i] for i in range(len(evaluation))])
    with torch.no_grad():
        logits = model(waves)
    predictions = list(predict_files(model, [Path(datamodule.tracks.files[t]) for t in tracks], overlap=0.0))
    for k, p in enumerate(predictions):
        assert p.error is None and p.chunks == int((positions == k).sum())
        expected = torch.softmax(logits[positions == k].mean(0), 0)
        assert p.probabilities == pytest.approx(expected.tolist(), abs=1e-5)
    track_labels = [datamodule.tracks.labels[t] for t in tracks]
    accuracy = np.mean([int(np.argmax(p.probabilities)) == y for p, y in zip(predictions, track_labels)])
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["test/track_acc"], abs=1e-6)


def test_chunk_starts_cover_the_file_with_the_asked_overlap():
    starts = chunk_starts(1000, 100, 0.5)
    assert starts[0] == 0 and starts[-1] == 900
    assert np.diff(starts).max() <= 50
    assert list(chunk_starts(40, 100, 0.5)) == [0]  # shorter than a chunk: one zero-padded chunk
    assert list(chunk_starts(300, 100, 0.0)) == [0, 100, 200]


def test_user_mistakes_end_in_one_clear_sentence(best_checkpoint, tmp_path, data_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = predict_cli(tmp_path, data_dir, f"ckpt_path={best_checkpoint}", f"inputs=[{empty}]")
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
    ]
    for changes, text in cases:
        cfg = OmegaConf.create({"ckpt_path": best_checkpoint, "inputs": [str(song)], "top_k": 3, "overlap": 0.5,
                                "batch_size": 8, "device": "cpu", "decode_threads": 1, **changes})
        with pytest.raises(MGRError, match=text):
            predict.__wrapped__(cfg)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
def test_predict_runs_on_the_gpu(best_checkpoint, tmp_path):
    model = load_model(best_checkpoint)
    path = tmp_path / "x.wav"
    write_audio(path, 1, 3, 5.0, 44100, 2, "WAV", "PCM_16")
    (on_cpu,) = predict_files(model, [path], device="cpu")
    (on_gpu,) = predict_files(model, [path], device="cuda")
    assert next(model.parameters()).is_cuda
    assert on_gpu.probabilities == pytest.approx(on_cpu.probabilities, abs=1e-3)
