"""mgr.restore: the model and data of mgr.eval and mgr.embed from a checkpoint, checked to fit."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from conftest import mgr_command, mgr_in_process, save_checkpoint, write_tone
from mgr import MGRError
from mgr.data import synth_audio
from mgr.embed import embed
from mgr.eval import evaluate
from mgr.models import GenreClassifier
from mgr.restore import restore

RATE, CHUNK = 8000, 1.0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """An untrained tiny CNN of the synth classes, saved without a data module (no stored data settings)."""
    model = GenreClassifier(sorted(synth_audio.CLASSES), {"name": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 32}, RATE,
                            CHUNK, {"name": "cnn", "channels": [4, 8, 8], "hidden": 8})
    path = tmp_path_factory.mktemp("restore") / "no_data.ckpt"
    save_checkpoint(model, path)
    assert "datamodule_hyper_parameters" not in torch.load(path, weights_only=True)
    return str(path)


def synth_data(data_dir, **changes) -> dict:
    """A data=synth override of two-second tracks, at the model's rate and chunk length unless changed."""
    return {"_target_": "mgr.data.GenreDataModule", "source": "synth", "root": str(data_dir / "restore_synth"),
            "cache_dir": str(data_dir / "cache"), "source_options": {"tracks_per_class": 2, "seconds": [2.0, 2.0]},
            "sample_rate": RATE, "chunk_seconds": CHUNK, **changes}


def entry_cfg(checkpoint, data=None, **keys):
    return OmegaConf.create({"ckpt_path": checkpoint, "data": data, "device": "cpu", "split": "test",
                             "paths": {"data_dir": "data", "cache_dir": "data/cache"}, **keys})


def test_a_fitting_data_override_is_built_and_not_yet_decoded(checkpoint, data_dir):
    model, datamodule = restore(entry_cfg(checkpoint, synth_data(data_dir), track_aggregation="majority_vote"))
    assert model.track_aggregation.name == "majority_vote"  # the entry point's rule, not the checkpoint's
    assert datamodule.class_names == model.class_names and datamodule.cache is None


@pytest.mark.slow
def test_eval_of_a_checkpoint_without_data_settings_is_one_clear_error(checkpoint, tmp_path, data_dir):
    proc = mgr_command("eval", f"ckpt_path={checkpoint}", cwd=tmp_path, data_dir=data_dir, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mgr: error:")]
    assert len(errors) == 1 and "does not say which data it was trained on; pass data=<group>" in errors[0], proc.stderr


@pytest.mark.parametrize("changes,text", [
    ({"sample_rate": 16000}, "sample rate 16000 Hz, the model's 8000 Hz (set data.sample_rate=8000)"),
    ({"chunk_seconds": 2.5}, "chunk length 2.5 s, the model's 1 s (set data.chunk_seconds=1)"),
])
def test_eval_and_embed_refuse_data_the_model_cannot_hear_with_the_same_error(checkpoint, data_dir, changes, text):
    cfg = entry_cfg(checkpoint, synth_data(data_dir, **changes))
    messages = []
    for task in (evaluate, embed):
        with pytest.raises(MGRError) as error:
            task.__wrapped__(cfg)  # the task's body, without the wrapper that prints and exits
        messages.append(str(error.value))
    assert messages[0] == messages[1] == f"The data does not fit the model: {text}."


def test_eval_needs_the_models_classes_and_embed_does_not(checkpoint, tmp_path):
    for genre in ("jazz", "polka"):
        (tmp_path / genre).mkdir()
        sf.write(str(tmp_path / genre / "a.wav"), np.zeros(RATE, dtype=np.float32), RATE)
    cfg = entry_cfg(checkpoint, {"_target_": "mgr.data.GenreDataModule", "source": "folder", "root": str(tmp_path),
                                 "cache_dir": str(tmp_path / "cache"), "sample_rate": RATE, "chunk_seconds": CHUNK})
    with pytest.raises(MGRError, match=r"classes \['jazz', 'polka'\], the model's \['ambient_drone', .*\] \(choose a"):
        restore(cfg)
    _, datamodule = restore(cfg, same_classes=False)  # embeddings of other music: only what the model hears counts
    assert datamodule.class_names == ["jazz", "polka"]


def test_stored_data_settings_of_another_version_are_one_clear_error(checkpoint, tmp_path):
    stored = torch.load(checkpoint, weights_only=True)
    stored["datamodule_hyper_parameters"] = {"source": "synth", "root": None, "cache_dir": "c", "old_option": 1}
    torch.save(stored, tmp_path / "old.ckpt")
    with pytest.raises(MGRError, match="stores data settings this mgr cannot rebuild .*old_option.*pass data=<group>"):
        restore(entry_cfg(str(tmp_path / "old.ckpt")))


def test_eval_writes_only_where_the_users_paths_say_not_where_the_checkpoint_says(checkpoint, tmp_path):
    """The stored data settings name a cache and a synth root elsewhere: eval reads the dataset the
    checkpoint names, but generates it and caches it under the user's paths.data_dir."""
    elsewhere, user_data = tmp_path / "elsewhere", tmp_path / "user_data"
    stored = torch.load(checkpoint, weights_only=True)
    stored["datamodule_hyper_parameters"] = {
        "source": "synth", "root": str(elsewhere / "synth"), "cache_dir": str(elsewhere / "cache"),
        "source_options": {"tracks_per_class": 10, "seconds": [1.0, 1.0]}, "sample_rate": RATE, "chunk_seconds": CHUNK}
    torch.save(stored, tmp_path / "elsewhere.ckpt")
    mgr_in_process("eval", f"ckpt_path={tmp_path / 'elsewhere.ckpt'}", "trainer.enable_progress_bar=false",
                   "callbacks=none", cwd=tmp_path, data_dir=user_data)
    assert not elsewhere.exists()
    assert list((user_data / "synth").glob("v*-seed0-10x1-1s/settings.json")) and (user_data / "cache").is_dir()


def test_a_checkpoint_cannot_let_a_manifest_read_outside_its_folder(checkpoint, tmp_path):
    """A stored allow_outside_root=true (a crafted checkpoint naming a manifest of ../ paths) is not
    taken over: eval refuses the path as data=folder does without the user's consent."""
    (tmp_path / "music").mkdir()
    write_tone(tmp_path / "secret.wav", seconds=1.2)
    (tmp_path / "music" / "m.csv").write_text("path,label\n../secret.wav,a\n../secret.wav,b\n")
    stored = torch.load(checkpoint, weights_only=True)
    stored["datamodule_hyper_parameters"] = {
        "source": "folder", "root": str(tmp_path / "music" / "m.csv"), "allow_outside_root": True,
        "cache_dir": str(tmp_path / "cache"), "sample_rate": RATE, "chunk_seconds": CHUNK}
    torch.save(stored, tmp_path / "crafted.ckpt")
    proc = mgr_in_process("eval", f"ckpt_path={tmp_path / 'crafted.ckpt'}", "callbacks=none", cwd=tmp_path,
                          data_dir=tmp_path / "data", check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mgr: error:")]
    assert proc.returncode == 1 and len(errors) == 1 and "outside the manifest's folder" in errors[0], proc.stderr


class ConvertsIntoItsCache(torch.nn.Module):
    """A backbone that, like musicnn's, converts its weights into <cache_dir>/encoders/ on first use."""

    sample_rate = RATE
    layer_dims = [4]

    def __init__(self, cache_dir: str):
        super().__init__()
        self.weight_files = [Path(cache_dir) / "encoders" / "converted.pt"]
        if not self.weight_files[0].exists():
            self.weight_files[0].parent.mkdir(parents=True)
            torch.save({"scale": torch.ones(4)}, self.weight_files[0])
        self.scale = torch.nn.Parameter(torch.load(self.weight_files[0], weights_only=True)["scale"])

    def forward(self, wave):
        return [wave.mean(1, keepdim=True) * self.scale]


def test_a_probes_encoder_converts_its_weights_under_the_users_cache_not_the_checkpoints(tmp_path, monkeypatch):
    from mgr.encoders import BACKBONES
    from mgr.restore import load_trained_model

    monkeypatch.setitem(BACKBONES, "converts", ConvertsIntoItsCache)
    elsewhere, user_cache = tmp_path / "elsewhere", tmp_path / "user_cache"
    model = GenreClassifier(sorted(synth_audio.CLASSES), {"name": "mel"}, RATE, CHUNK, {"name": "probe"},
                            encoder={"name": "converts", "cache_dir": str(elsewhere)})
    save_checkpoint(model, tmp_path / "probe.ckpt")
    shutil.rmtree(elsewhere)  # the training machine's cache
    cfg = entry_cfg(str(tmp_path / "probe.ckpt"), paths={"data_dir": str(tmp_path), "cache_dir": str(user_cache)})
    assert load_trained_model(cfg).encoder.settings["cache_dir"] == str(user_cache)
    assert not elsewhere.exists() and (user_cache / "encoders" / "converted.pt").is_file()
