"""Tiny randomly initialised models of every Hugging Face family mgr loads (mgr.encoders.hf),
written with save_pretrained as a user's downloaded weights are, so tests load them through the
same path; nothing downloads. MERT's directory is written as its Hub repository is: a
config.json of model_type mert_model that names its remote code, weights in pytorch_model.bin."""

from __future__ import annotations

import json
from pathlib import Path

import torch

SPEECH = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8),
              conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
# MERT-v1-95M's config.json keys that HuBERT's has not, as m-a-p's repository writes them.
MERT_EXTRAS = {"model_type": "mert_model", "architectures": ["MERTModel"],
               "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"},
               "feature_extractor_cqt": False, "feature_extractor_cqt_bins": 336, "deepnorm": False,
               "attention_relax": -1.0, "sample_rate": 24000}


def tiny_model(family: str):
    """(model, feature extractor) of the family, randomly initialised with a fixed seed."""
    import transformers as T

    torch.manual_seed(0)
    if family in ("mert", "hubert"):
        rate = 24000 if family == "mert" else 16000
        return (T.HubertModel(T.HubertConfig(**SPEECH)),
                T.Wav2Vec2FeatureExtractor(sampling_rate=rate, do_normalize=True, return_attention_mask=True))
    if family == "wav2vec2":
        return T.Wav2Vec2Model(T.Wav2Vec2Config(**SPEECH)), T.Wav2Vec2FeatureExtractor(sampling_rate=16000)
    if family == "ast":
        config = T.ASTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                             max_length=128, num_mel_bins=32)
        return T.ASTModel(config), T.ASTFeatureExtractor(num_mel_bins=32, max_length=128)
    if family == "clap":
        config = T.ClapAudioConfig(hidden_size=32, depths=[1, 1], num_attention_heads=[2, 2],
                                   patch_embeds_hidden_size=16, window_size=8, projection_dim=16)
        return T.ClapAudioModel(config), T.ClapFeatureExtractor(truncation="rand_trunc")
    raise ValueError(family)


def save_tiny(family: str, directory: Path, **mert_config) -> Path:
    """Write the family's tiny model and feature extractor to `directory`; returns it."""
    model, extractor = tiny_model(family)
    model.save_pretrained(directory)
    extractor.save_pretrained(directory)
    if family == "mert":
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps({**config, **MERT_EXTRAS, **mert_config}, indent=2))
        torch.save(model.state_dict(), directory / "pytorch_model.bin")
        (directory / "model.safetensors").unlink()
    return directory
