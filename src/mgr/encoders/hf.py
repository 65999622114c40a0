"""Pretrained encoders of the Hugging Face ecosystem, loaded with `transformers` (an optional
dependency: `pip install mgr[hf]`) from a local directory or the Hugging Face cache.

`weights` is a directory holding the model's config.json, weights and
preprocessor_config.json (as `save_pretrained` writes them), or a model id (`m-a-p/MERT-v1-95M`):
the id's snapshot is taken from the HF cache, and downloaded first where the Hub is reachable
(HF_HUB_OFFLINE=1 never connects). Every family applies its own feature extractor (on the CPU,
as its reference code does) and exposes each hidden state it returns, mean-pooled over time
(over time and frequency for CLAP's 2-D stages):

- `mert`: MERT-v1 (m-a-p/MERT-v1-95M, -330M; 24 kHz). Its repository ships remote code
  (MERTModel), which mgr does not run: MERTModel is transformers' HuBERT with three extras, so
  its weights load into `HubertModel` from its own config.json, no trust_remote_code. The extras:
  `attention_relax` subtracts each row's maximum before the softmax, which leaves the softmax
  unchanged (a float16 safeguard), so it is ignored; `deepnorm` (scaled residuals) and
  `feature_extractor_cqt` (CQT input features) change the outputs and HuBERT has neither, so a
  config that enables them is refused. Every weight of the checkpoint must load.
- `hubert`, `wav2vec2`: HubertModel, Wav2Vec2Model (16 kHz), with Wav2Vec2FeatureExtractor.
- `ast`: the Audio Spectrogram Transformer (ASTModel + ASTFeatureExtractor, 16 kHz).
- `clap`: the audio tower of CLAP (laion/clap-htsat-unfused and -fused: ClapAudioModel +
  ClapFeatureExtractor, 48 kHz); its HTSAT stages differ in width, so pick one layer.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from mgr import MGRError

log = logging.getLogger(__name__)

# family -> (model class, feature extractor class) in transformers
FAMILIES = {
    "mert": ("HubertModel", "Wav2Vec2FeatureExtractor"),
    "hubert": ("HubertModel", "Wav2Vec2FeatureExtractor"),
    "wav2vec2": ("Wav2Vec2Model", "Wav2Vec2FeatureExtractor"),
    "ast": ("ASTModel", "ASTFeatureExtractor"),
    "clap": ("ClapAudioModel", "ClapFeatureExtractor"),
}
WEIGHT_SUFFIXES = (".safetensors", ".bin")  # what transformers reads weights from, preferred first


def resolve_weights(weights: str) -> Path:
    """The local directory of `weights`: the directory itself, or the snapshot of a model id in the
    HF cache (downloaded where the Hub is reachable), with one clear error where neither is."""
    path = Path(weights).expanduser()
    if path.is_dir():
        return path
    if path.exists() or str(weights).startswith(("/", "~", ".")) or str(weights).count("/") > 1:
        raise MGRError(f"encoder.weights={weights} is not a directory; give the directory that holds the model's "
                       "config.json and weights (as save_pretrained writes them), or a Hugging Face model id.")
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(weights, ignore_patterns=["*.h5", "*.msgpack", "*.onnx", "*.tflite", "*.ot"]))
    except Exception as e:
        offline = "HF_HUB_OFFLINE=1 is set" if constants.HF_HUB_OFFLINE else "the Hub was not reachable or has no such model"
        raise MGRError(
            f"The weights of {weights!r} are not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {offline} "
            f"({type(e).__name__}), and there is no directory {weights} either; download them where there is a network (`hf download {weights}`, then copy the "
            "cache here or set HF_HOME), or set encoder.weights=<a local directory>."
        ) from None


def weight_files(directory: Path) -> list[Path]:
    """The files transformers reads the weights from: the safetensors files, else the .bin files."""
    for suffix in WEIGHT_SUFFIXES:
        found = sorted(p for p in directory.iterdir() if p.name.endswith(suffix) and p.is_file())
        if found:
            return found
    raise MGRError(f"{directory} holds no model weights (*.safetensors or *.bin); give the directory save_pretrained "
                   "wrote, or a Hugging Face model id.")


def check_mert(config) -> None:
    """Refuse the MERT settings HuBERT does not compute (see the module docstring)."""
    for flag in ("deepnorm", "feature_extractor_cqt"):
        if getattr(config, flag, False):
            raise MGRError(f"This MERT checkpoint sets {flag}=true, which transformers' HubertModel does not compute "
                           "(mgr loads MERT-v1 without its remote code); use m-a-p/MERT-v1-95M or MERT-v1-330M.")


class HFBackbone(nn.Module):
    """A transformers audio model as a backbone of mgr.encoders (see its docstring)."""

    def __init__(self, family: str, weights: str):
        super().__init__()
        if family not in FAMILIES:
            raise MGRError(f"Unknown encoder family {family!r}; choose one of {', '.join(FAMILIES)}.")
        try:
            import transformers
        except ImportError:
            raise MGRError("Hugging Face encoders need transformers: pip install 'mgr[hf]'.") from None
        self.weights = weights
        directory = resolve_weights(weights)
        model_class, extractor_class = (getattr(transformers, name) for name in FAMILIES[family])
        self.weight_files = weight_files(directory)
        try:
            config = model_class.config_class.from_pretrained(directory)
            if family == "mert":
                check_mert(config)
            self.model, info = model_class.from_pretrained(directory, config=config, dtype=torch.float32,
                                                           output_loading_info=True)
            self.extractor = extractor_class.from_pretrained(directory)
        except MGRError:
            raise
        except Exception as e:  # a missing or damaged file, a config of another family
            first_line = (str(e).strip().splitlines() or [""])[0]
            raise MGRError(f"{directory} does not hold a {family} model that transformers can load "
                           f"({type(e).__name__}: {first_line}).") from None
        if info["missing_keys"] or info["mismatched_keys"]:
            missing = sorted(info["missing_keys"]) + [k for k, *_ in info["mismatched_keys"]]
            raise MGRError(f"The weights in {directory} do not fit transformers' {model_class.__name__} "
                           f"({len(missing)} weights missing or of another shape, such as {missing[0]}); "
                           f"is it a {family} model?")
        if info["unexpected_keys"]:
            log.info("%s: %d weights not used by %s.", directory, len(info["unexpected_keys"]), model_class.__name__)
        self.model.eval()
        self.family, self.sample_rate = family, int(self.extractor.sampling_rate)
        with torch.no_grad():
            self.layer_dims = [h.shape[1] for h in self(torch.zeros(1, self.sample_rate))]

    def __reduce_ex__(self, protocol):
        # ddp_spawn pickles the model into every rank, and a module with a parametrization (the
        # weight-normed positional convolution of HuBERT, wav2vec2 and MERT) pickles only through its
        # state dict (torch.nn.utils.parametrize): the copy is built from the same weights, then given
        # this one's state (a fine-tuned encoder's too) and mode.
        return rebuilt, (self.family, self.weights, self.state_dict(), self.training)

    def forward(self, wave: torch.Tensor) -> list[torch.Tensor]:
        inputs = self.extractor(list(wave.detach().float().cpu().numpy()), sampling_rate=self.sample_rate,
                                return_tensors="pt")
        inputs = {k: v.to(wave.device) for k, v in inputs.items()}
        hidden = self.model(**inputs, output_hidden_states=True).hidden_states
        return [h.mean(dim=(2, 3)) if h.dim() == 4 else h.mean(dim=1) for h in hidden]


def rebuilt(family: str, weights: str, state: dict, training: bool) -> HFBackbone:
    """An HFBackbone unpickled (HFBackbone.__reduce_ex__)."""
    backbone = HFBackbone(family, weights)
    backbone.load_state_dict(state)
    return backbone.train(training)


def fetch_weights(weights: str) -> None:
    """The weights of `weights` ready, without loading them: the directory, or the model id's snapshot
    downloaded into the HF cache, holding weight files."""
    weight_files(resolve_weights(weights))


def hf_builder(family: str):
    """The BACKBONES entry of a family: its settings are `weights` (a directory or a model id)."""
    def build(weights: str) -> HFBackbone:
        return HFBackbone(family, weights)

    build.__name__ = f"build_{family}"
    return build

