"""mgr.data.synth_audio and its source: the same seed gives the same audio in several formats, and
the classes differ in sound."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from mgr.data import synth_audio
from mgr.data.sources.synth import SynthSource


def _digest(folder: Path) -> dict[str, str]:
    """Hash of the decoded audio (Ogg streams carry a random serial number, so bytes differ)."""
    return {
        str(p.relative_to(folder)): hashlib.sha1(sf.read(str(p), dtype="float32")[0].tobytes()).hexdigest()
        for p in sorted(folder.rglob("*.*"))
        if p.suffix != ".json"
    }


def test_synth_is_deterministic_and_mixes_formats(tmp_path):
    a = synth_audio.generate(tmp_path / "a", 3, (1.0, 2.0), seed=7)
    b = synth_audio.generate(tmp_path / "b", 3, (1.0, 2.0), seed=7)
    c = synth_audio.generate(tmp_path / "c", 3, (1.0, 2.0), seed=8)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    tracks = SynthSource(str(tmp_path / "a"), 3, (1.0, 2.0), 7).list()
    assert len(tracks.class_names) >= 4 and len(tracks.files) == 3 * len(tracks.class_names)
    assert {Path(f).suffix for f in tracks.files} == {".wav", ".flac", ".ogg"}
    assert {sf.info(f).channels for f in tracks.files} == {1}  # stereo appears from the 4th track on
    assert {sf.info(f).samplerate for f in tracks.files} == {22050}  # other rates from the 4th track on
    # Asking again reuses the files instead of generating anew.
    mtime = Path(tracks.files[0]).stat().st_mtime_ns
    synth_audio.generate(tmp_path / "a", 3, (1.0, 2.0), seed=7)
    assert Path(tracks.files[0]).stat().st_mtime_ns == mtime


def test_parallel_runs_generate_the_dataset_once(tmp_path, monkeypatch):
    """A fresh sweep's parallel workers ask for the same dataset at once: one writes it, the others
    wait for it and read it (each used to write its own copy beside the others)."""
    written = []
    render = synth_audio.render_track
    monkeypatch.setattr(synth_audio, "render_track", lambda *a: written.append(a) or render(*a))
    with ThreadPoolExecutor(3) as pool:
        folders = list(pool.map(lambda _: synth_audio.generate(tmp_path, 2, (0.5, 1.0), seed=3), range(3)))
    assert len(set(folders)) == 1 and len(written) == 2 * len(synth_audio.CLASSES)
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_synth_classes_differ_in_sound():
    """Each class has its own spectral shape: the class means of a coarse spectrum are far apart."""
    def spectrum(label, seed):
        x = synth_audio.render_track(label, seed, 2.0)
        s = np.abs(np.fft.rfft(x))[: 8000]
        return np.log(s.reshape(40, -1).mean(1) + 1e-6)

    means = [np.mean([spectrum(c, s) for s in range(3)], axis=0) for c in range(len(synth_audio.CLASSES))]
    for i in range(len(means)):
        for j in range(i + 1, len(means)):
            assert np.abs(means[i] - means[j]).mean() > 0.3, (synth_audio.CLASSES[i], synth_audio.CLASSES[j])
