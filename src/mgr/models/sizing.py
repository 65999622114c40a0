"""Sizing the model a checkpoint's hyperparameters ask for, before anything is built: a checkpoint
from someone else cannot make mgr allocate hundreds of gigabytes. `load_model` calls
`check_model_size` first.

A checkpoint's hyperparameters say what to build. Its weights cannot vouch for the size (they are
loaded only into a model already built), so the model is sized first: the frontend's settings are
bounded (its filter banks are built with numpy, from them), then the net and head are built on
PyTorch's meta device (shapes, no memory) and one chunk runs through frontend and net there, its
every intermediate output counted.
"""

from __future__ import annotations

from functools import partial

import torch

from mgr import MGRError

# 4x the largest FFT (2048) and 20x the largest bin count (win_length 384) of the shipped feature
# configs; at this bound the largest table a frontend builds (nnAudio's Fourier kernels, n_fft
# rows of n_fft / 2 + 1 complex values) is 0.5 GB.
MAX_FEATURE_SETTING = 8192
MAX_SAMPLE_RATE = 384_000  # the highest rate of studio audio; mgr's configs use 8 to 22.05 kHz
# A constant-Q frontend's filters: its bins times the longest filter's samples (1e6 for the shipped
# cqt, 9e6 for chroma's). At this bound nnAudio's kernels take 2 GB, and the torch backend's 0.3 GB.
MAX_CONSTANT_Q_SAMPLES = 2**27
# 4 GB of float32 weights: 300x the largest shipped net (cnn5, 2.7 M at 128 mels), and more than a
# model trained on a genre dataset of a few thousand tracks could use.
MAX_PARAMETERS = 1_000_000_000
# The outputs of all layers for one chunk, the input included. mgr's nets need 0.05 to 0.4 GiB for
# a 30-s chunk of 128 mels at 22.05 kHz, short_chunk_cnn 3 GiB on its full STFT. Training holds them
# for a batch of 16 or more chunks: 16 GiB a chunk could not train on any one GPU.
MAX_CHUNK_ACTIVATION_BYTES = 16 * 2**30


def check_model_size(hparams: dict, path) -> None:
    """Refuse, in one sentence and before anything large is allocated, a spectrogram model whose
    hyperparameters ask for more than MAX_PARAMETERS or more than MAX_CHUNK_ACTIVATION_BYTES of
    activations for one chunk. A probe's backbone is built from the user's own verified weight
    files (mgr.encoders), whatever the checkpoint says, so only spectrogram models are sized."""
    if hparams.get("encoder") is not None:
        return
    from mgr.features import build_frontend
    from mgr.models.heads import build_head
    from mgr.nets import build_net

    feature, sample_rate = dict(hparams["feature"]), hparams["sample_rate"]
    _check_feature_settings(feature, sample_rate, path)
    _check_constant_q_filters(feature, sample_rate, path)
    samples = int(round(float(hparams["chunk_seconds"]) * sample_rate))
    frontend = build_frontend({**feature, "sample_rate": sample_rate}).to("meta")  # small, by the bounds above
    wave = torch.zeros(1, samples, device="meta")
    spectrogram, frontend_bytes = _meta_outputs(frontend, frontend.compute, wave)
    _, n_bins, n_frames = spectrogram.shape
    with torch.device("meta"):
        net = build_net(hparams["net"], n_bins, n_frames).eval()  # eval: batch norm takes one example
        for rnn in (m for m in net.modules() if isinstance(m, torch.nn.RNNBase)):
            rnn.forward = partial(_rnn_outputs, rnn)  # on meta, torch steps an RNN frame by frame in Python
        head = build_head(hparams.get("head"), net.embedding_dim, len(hparams["class_names"]))
        _, net_bytes = _meta_outputs(net, net, torch.zeros(1, 1, n_bins, n_frames))
    parameters = sum(t.numel() for module in (frontend, net, head) for t in [*module.parameters(), *module.buffers()])
    activation_bytes = wave.numel() * wave.element_size() + frontend_bytes + net_bytes
    if parameters > MAX_PARAMETERS or activation_bytes > MAX_CHUNK_ACTIVATION_BYTES:
        raise MGRError(f"Refused to build the model of {path}: its hyperparameters ask for {parameters:,} parameters "
                       f"and {activation_bytes / 2**30:.3g} GiB of activations per chunk (mgr builds at most "
                       f"{MAX_PARAMETERS:,} and {MAX_CHUNK_ACTIVATION_BYTES / 2**30:g} GiB); use a checkpoint written "
                       "by mgr.train with sane settings.")


def _check_feature_settings(feature: dict, sample_rate, path) -> None:
    """The settings the frontend's filter banks are built from: every size (n_fft, n_mels, n_bins,
    n_chroma, win_length, bins_per_octave, ...: the keys that count bins or samples) at most
    MAX_FEATURE_SETTING, and the sample rate at most MAX_SAMPLE_RATE."""
    limits = {k: MAX_FEATURE_SETTING for k in feature if k.startswith("n_") or k in ("win_length", "bins_per_octave")}
    limits["sample_rate"] = MAX_SAMPLE_RATE
    values = {**feature, "sample_rate": sample_rate}
    large = {k: values[k] for k, limit in limits.items()
             if isinstance(values[k], (int, float)) and not isinstance(values[k], bool) and values[k] > limit}
    if large:
        raise MGRError(f"Refused to build the model of {path}: its feature settings "
                       f"{', '.join(f'{k}={v}' for k, v in large.items())} are beyond what mgr builds (at most "
                       f"{MAX_FEATURE_SETTING} for a size, {MAX_SAMPLE_RATE} Hz for the sample rate); use a "
                       "checkpoint written by mgr.train with sane settings.")


def _check_constant_q_filters(feature: dict, sample_rate, path) -> None:
    """A constant-Q frontend (cqt, vqt, chroma of a CQT) builds a filter per bin, the longest at fmin:
    filter_scale * Q * sample_rate / fmin samples (librosa's, Q = 1 / (2^(1/bins_per_octave) - 1));
    its bins times that at most MAX_CONSTANT_Q_SAMPLES. Missing settings take the frontends' defaults."""
    from mgr.features.constant_q import C1_HZ

    name = feature.get("name")
    if name not in ("cqt", "vqt") and not (name == "chroma" and feature.get("source") == "cqt"):
        return
    per_octave = feature.get("bins_per_octave", 36 if name == "chroma" else 12)
    n_bins = feature.get("n_octaves", 7) * per_octave if name == "chroma" else feature.get("n_bins", 84)
    q = feature.get("filter_scale", 1.0) / (2 ** (1 / per_octave) - 1)
    samples = n_bins * q * sample_rate / feature.get("fmin", C1_HZ)
    if not 0 < samples <= MAX_CONSTANT_Q_SAMPLES:
        raise MGRError(f"Refused to build the model of {path}: its constant-Q filters (fmin={feature.get('fmin', C1_HZ)}, "
                       f"bins_per_octave={per_octave}, filter_scale={feature.get('filter_scale', 1.0)}, {n_bins} bins) "
                       f"would hold {samples:.3g} samples, and mgr builds at most {MAX_CONSTANT_Q_SAMPLES:.3g}; use a "
                       "checkpoint written by mgr.train with sane settings.")


def _meta_outputs(module: torch.nn.Module, run, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """`run(x)` on the meta device, and the bytes of every distinct tensor that `module` or any module
    inside it output on the way, the result included."""
    outputs: dict[int, torch.Tensor] = {}  # by id, each kept alive so that no id is reused

    def record(_module, _args, out) -> None:
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                outputs[id(t)] = t

    hooks = [m.register_forward_hook(record) for m in module.modules()]
    try:
        result = run(x)
    finally:
        for hook in hooks:
            hook.remove()
    record(None, None, result)
    return result, sum(t.numel() * t.element_size() for t in outputs.values())


def _rnn_outputs(rnn: torch.nn.RNNBase, x: torch.Tensor, hx=None):
    """What `rnn(x)` returns, as empty tensors of its shapes (output, h_n, and c_n of an LSTM)."""
    directions = 2 if rnn.bidirectional else 1
    out_size = rnn.proj_size if getattr(rnn, "proj_size", 0) else rnn.hidden_size
    batch = x.shape[:-2] if rnn.batch_first or x.dim() == 2 else x.shape[1:2]
    output = x.new_empty(*x.shape[:-1], out_size * directions)
    h = x.new_empty(rnn.num_layers * directions, *batch[:1], out_size)
    if isinstance(rnn, torch.nn.LSTM):
        return output, (h, x.new_empty(rnn.num_layers * directions, *batch[:1], rnn.hidden_size))
    return output, h
