"""The Hugging Face encoders: a tiny model of every family, saved as real weights are, loads from
its directory and from the HF cache by model id with no network, applies its own feature
extractor and gives every hidden layer pooled over time; a missing or unfit model is one clear
error saying where mgr looked."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_models import save_tiny, tiny_model
from mgr import MGRError
from mgr.encoders import BACKBONES

pytest.importorskip("transformers")

FAMILIES = ["mert", "hubert", "wav2vec2", "ast", "clap"]
RATES = {"mert": 24000, "hubert": 16000, "wav2vec2": 16000, "ast": 16000, "clap": 48000}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_loads_its_saved_weights_and_pools_every_layer(family, tmp_path):
    save_tiny(family, tmp_path / family)
    backbone = BACKBONES[family](weights=str(tmp_path / family))
    assert backbone.sample_rate == RATES[family]
    wave = torch.randn(2, backbone.sample_rate // 2)
    with torch.no_grad():
        layers = backbone(wave)
    assert [tuple(h.shape) for h in layers] == [(2, d) for d in backbone.layer_dims]
    # The same numbers as the model that was saved, run through its own feature extractor:
    # the weights were read (not initialised anew) and the input pipeline is the family's.
    model, extractor = tiny_model(family)
    inputs = extractor(list(wave.numpy()), sampling_rate=backbone.sample_rate, return_tensors="pt")
    with torch.no_grad():
        hidden = model.eval()(**inputs, output_hidden_states=True).hidden_states
    expected = [h.mean(dim=tuple(range(2, h.dim())) if h.dim() == 4 else 1) for h in hidden]
    assert len(layers) == len(expected)
    for got, want in zip(layers, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert [p.name for p in backbone.weight_files] == (["pytorch_model.bin"] if family == "mert" else ["model.safetensors"])


def test_clap_layers_differ_in_width_and_speech_layers_do_not(tmp_path):
    clap = BACKBONES["clap"](weights=str(save_tiny("clap", tmp_path / "clap")))
    assert len(set(clap.layer_dims)) > 1
    hubert = BACKBONES["hubert"](weights=str(save_tiny("hubert", tmp_path / "hubert")))
    assert hubert.layer_dims == [16, 16, 16]  # the CNN's projection, then each transformer layer


@pytest.mark.parametrize("flag", ["deepnorm", "feature_extractor_cqt"])
def test_mert_variants_hubert_does_not_compute_are_refused(flag, tmp_path):
    save_tiny("mert", tmp_path, **{flag: True})
    with pytest.raises(MGRError, match=f"sets {flag}=true, which transformers' HubertModel does not compute"):
        BACKBONES["mert"](weights=str(tmp_path))


def test_mert_attention_relax_is_loaded_as_plain_attention(tmp_path):
    save_tiny("mert", tmp_path, attention_relax=32.0)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "mert_model"
    assert BACKBONES["mert"](weights=str(tmp_path)).layer_dims == [16, 16, 16]


def fake_hf_cache(cache, model_id: str, source) -> None:
    """The HF cache's layout of one snapshot: models--org--name/{refs/main, snapshots/<commit>/...}."""
    repo = cache / f"models--{model_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots").mkdir()
    source.rename(repo / "snapshots" / commit)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_a_model_id_loads_from_the_hf_cache_with_no_network(offline_cache, tmp_path):
    fake_hf_cache(offline_cache, "org/tiny-hubert", save_tiny("hubert", tmp_path / "saved"))
    backbone = BACKBONES["hubert"](weights="org/tiny-hubert")
    assert backbone.layer_dims == [16, 16, 16] and str(offline_cache) in str(backbone.weight_files[0])


def test_a_model_id_not_in_the_cache_offline_is_one_clear_error(offline_cache):
    with pytest.raises(MGRError) as e:
        BACKBONES["mert"](weights="m-a-p/MERT-v1-95M")
    message = str(e.value)
    assert "'m-a-p/MERT-v1-95M' are not in the Hugging Face cache" in message and str(offline_cache) in message
    assert "HF_HUB_OFFLINE=1 is set" in message and "hf download m-a-p/MERT-v1-95M" in message
    assert "encoder.weights=<a local directory>" in message and "\n" not in message


def test_a_wrong_path_an_empty_directory_or_another_family_is_one_clear_error(tmp_path):
    with pytest.raises(MGRError, match=f"encoder.weights={tmp_path}/nowhere is not a directory"):
        BACKBONES["hubert"](weights=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MGRError, match="holds no model weights"):
        BACKBONES["hubert"](weights=str(tmp_path / "empty"))
    save_tiny("hubert", tmp_path / "hubert")
    with pytest.raises(MGRError, match=r"do not fit transformers' ASTModel .* is it a ast model\?"):
        BACKBONES["ast"](weights=str(tmp_path / "hubert"))
    (tmp_path / "hubert" / "model.safetensors").write_bytes(b"damaged")
    with pytest.raises(MGRError, match=r"does not hold a hubert model that transformers can load \(SafetensorError"):
        BACKBONES["hubert"](weights=str(tmp_path / "hubert"))


def test_feature_extractor_normalises_as_the_family_does(tmp_path):
    """wav2vec2-style inputs are standardised per clip: a louder copy gives the same layers."""
    backbone = BACKBONES["hubert"](weights=str(save_tiny("hubert", tmp_path)))
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 8000)).astype(np.float32))
    with torch.no_grad():
        quiet, loud = backbone(wave), backbone(wave * 10)
    torch.testing.assert_close(quiet[-1], loud[-1], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("family", ["hubert", "mert"])  # a weight-normed positional convolution each
def test_a_backbone_pickles_as_ddp_spawn_sends_it_to_every_rank(family, tmp_path):
    """Pickling (what ddp_spawn does to the model) keeps the weights as they are now, changed ones too
    (a fine-tuned encoder's), and the training mode."""
    import pickle

    save_tiny(family, tmp_path / family)
    backbone = BACKBONES[family](weights=str(tmp_path / family))
    with torch.no_grad():
        next(backbone.parameters()).add_(1.0)
    backbone.train()
    copy = pickle.loads(pickle.dumps(backbone))
    assert copy.training
    for (name, got), want in zip(copy.state_dict().items(), backbone.state_dict().values()):
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=name)
    wave = torch.randn(2, backbone.sample_rate // 2)
    with torch.no_grad():
        for got, want in zip(copy.eval()(wave), backbone.eval()(wave)):
            torch.testing.assert_close(got, want)
