"""The musicnn port: its tags and layers on real music equal the original's under TensorFlow
(tests/fixtures/musicnn: two 10 s excerpts and reference.npz, made by make_reference.py), the
weights are converted once and cached, and a missing wheel is one clear error.

The wheel comes from $MGR_MUSICNN_WHEEL, else `pip download` into a temp folder kept across runs.
Where neither works the parity tests skip with a loud reason, except on CI (CI=true), where they
fail: CI reaches PyPI, so a skip there would hide a broken port.
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import mgr.encoders.musicnn as musicnn
from mgr import MGRError
from mgr.encoders import BACKBONES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "musicnn"
EXCERPTS = ["hyperrogue_hr3-desert_30s-40s", "widelands_ingame_24_30s-40s"]
TAG_ATOL = 1e-5  # measured: at most 3e-6
LAYER_RTOL = 1e-4  # of the layer's largest magnitude; measured: musicnn 7e-6, vgg 2.4e-5
INPUT_ATOL = 1e-3  # a float16 rounding of the mel power flipped: log10 moves by 4.2e-4; measured 3.7e-4


@pytest.fixture(scope="session")
def wheel(musicnn_wheel) -> Path:
    return musicnn_wheel


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def reference() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / "reference.npz"))


def excerpt(name: str) -> torch.Tensor:
    samples, rate = sf.read(FIXTURES / f"{name}.flac", dtype="float32")
    assert rate == musicnn.SAMPLE_RATE
    return torch.from_numpy(samples)


@pytest.mark.parametrize("model", list(musicnn.MODELS))
@pytest.mark.parametrize("name", EXCERPTS)
def test_tags_and_layers_equal_the_originals(model, name, wheel, cache_dir, reference):
    backbone = musicnn.build(model, str(wheel), cache_dir)
    with torch.no_grad():
        layers = backbone(excerpt(name)[None])
    assert [layer.shape for layer in layers] == [(1, dim) for dim in backbone.layer_dims]
    key = f"{model}/{name}"
    for layer_name, layer in zip(backbone.layer_names, layers):
        expected = reference[f"{key}/{layer_name}"]
        scale = np.abs(expected).max()
        np.testing.assert_allclose(layer[0].numpy(), expected, rtol=0, atol=LAYER_RTOL * scale, err_msg=layer_name)
    tags = layers[-1][0].numpy()
    np.testing.assert_allclose(tags, reference[f"{key}/taggram"], rtol=0, atol=TAG_ATOL)
    assert list(np.argsort(-tags)[:5]) == list(np.argsort(-reference[f"{key}/taggram"])[:5])


@pytest.mark.parametrize("name", EXCERPTS)
def test_the_input_pipeline_is_musicnns(name, reference):
    patches = reference[f"{name}/patches"]
    filters = torch.from_numpy(musicnn.mel_filters(musicnn.SAMPLE_RATE, musicnn.N_FFT, musicnn.N_MELS))
    mel = musicnn.log_mel(excerpt(name)[None], musicnn.BlockedSpectrogram(musicnn.N_FFT, musicnn.HOP, "hann", filters))
    ours = mel[0, :patches.shape[0] * musicnn.PATCH_FRAMES].reshape(patches.shape).numpy()
    # equal to float32 rounding but for the float16 roundings that flipped (measured: 0.06-0.09 %)
    assert (np.abs(ours - patches) <= 1e-6).mean() > 0.998
    np.testing.assert_allclose(ours, patches, rtol=0, atol=INPUT_ATOL)


def test_the_net_on_musicnns_own_patches(wheel, cache_dir, reference):
    backbone = musicnn.build("MTT_musicnn", str(wheel), cache_dir)
    name = EXCERPTS[0]
    with torch.no_grad():
        taggram = backbone.net(torch.from_numpy(reference[f"{name}/patches"]))["taggram"]
    np.testing.assert_allclose(taggram.numpy(), reference[f"MTT_musicnn/{name}/taggram_per_patch"], rtol=0,
                               atol=TAG_ATOL)


def test_the_reference_was_checked_against_musicnns_documented_tags():
    checks = json.loads((FIXTURES / "reference.json").read_text())["checks"]
    assert any("README" in check for check in checks), "make_reference.py was run without --repo-audio"


def test_chunks_of_a_batch_are_independent_and_short_ones_run(wheel, cache_dir):
    # (cutting into 3 s patches and averaging them is what the parity test checks: 10 s, 3 patches)
    backbone = BACKBONES["msd_musicnn"](wheel=str(wheel), cache_dir=cache_dir)
    vgg = BACKBONES["mtt_vgg"](wheel=str(wheel), cache_dir=cache_dir)
    audio = excerpt(EXCERPTS[1])
    with torch.no_grad():
        both = backbone(torch.stack([audio[:48000], audio[32000:80000]]))
        first, second = backbone(audio[None, :48000]), backbone(audio[None, 32000:80000])
        short = backbone(audio[None, :16000])  # 1 s: one shorter patch, as musicnn's input_length=1
        vgg_short = vgg(audio[None, :16000])  # padded with silence to the 3 s its dense layer needs
    for pair, one, other in zip(both, first, second):
        torch.testing.assert_close(pair, torch.cat([one, other]), rtol=1e-4, atol=1e-4)  # conv sums reorder
    for net, layers in ((backbone, short), (vgg, vgg_short)):
        assert [layer.shape for layer in layers] == [(1, dim) for dim in net.layer_dims]
        assert all(torch.isfinite(layer).all() for layer in layers)


def test_weights_are_converted_once_and_cached(wheel, tmp_path, monkeypatch):
    musicnn.build("MSD_musicnn", str(wheel), str(tmp_path))
    (converted,) = (tmp_path / "encoders").glob("musicnn-*/MSD_musicnn-v*.pt")
    monkeypatch.setattr(musicnn, "read_bundle", lambda *a: pytest.fail("the wheel was converted again"))
    backbone = musicnn.build("MSD_musicnn", str(wheel), str(tmp_path))
    assert backbone.weight_files == [wheel] and backbone.tags == musicnn.MSD_TAGS
    assert converted.is_file()


def test_a_missing_wheel_is_one_clear_error(tmp_path):
    with pytest.raises(MGRError, match=r"musicnn wheel .*nowhere.whl does not exist; get it with `pip download"):
        BACKBONES["mtt_musicnn"](wheel=str(tmp_path / "nowhere.whl"), cache_dir=str(tmp_path))


def test_no_network_and_no_wheel_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(musicnn.WHEEL_ENV, raising=False)
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: Could not find a version that satisfies musicnn==0.1.0\n")
    monkeypatch.setattr(musicnn.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(MGRError) as error:
        BACKBONES["msd_musicnn"](cache_dir=str(tmp_path))
    message = str(error.value)
    assert "Could not find a version" in message and "`pip download --no-deps musicnn==0.1.0 -d DIR`" in message
    assert "encoder.wheel=" in message and "\n" not in message


def test_a_wheel_without_the_checkpoint_is_refused(tmp_path):
    fake = tmp_path / musicnn.WHEEL_FILE
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("musicnn/__init__.py", "")
    with pytest.raises(MGRError, match="holds no musicnn/MSD_musicnn checkpoint"):
        BACKBONES["msd_musicnn"](wheel=str(fake), cache_dir=str(tmp_path))
