"""The encoder: a waveform batch [B, samples] in, embeddings [B, embedding_dim] out.

A spectrogram frontend (mgr.features, computed on the model's device), the
per-bin input normalisation of seed report 001's "layer 0" (BatchNorm of each
frequency bin of the dB input, so no dataset statistics are needed), and a
plain net of mgr.nets. Training-time augmentation of the feature map is passed
in by the task, so the encoder itself is the same in training and inference.
"""

from __future__ import annotations

import torch
from torch import nn

from mgr import MGRError
from mgr.features import build_frontend
from mgr.nets import build_net


class SpectrogramEncoder(nn.Module):
    def __init__(self, feature: dict, sample_rate: int, chunk_seconds: float, net: dict):
        super().__init__()
        self.chunk_samples = int(round(chunk_seconds * sample_rate))
        self.frontend = build_frontend({**feature, "sample_rate": sample_rate})
        with torch.no_grad():
            try:
                _, _, self.n_bins, self.n_frames = self.frontend(torch.zeros(1, self.chunk_samples)).shape
            except (AssertionError, RuntimeError) as e:
                raise MGRError(f"data.chunk_seconds={chunk_seconds} is too short for this feature: {e}") from None
        self.net = build_net(net, self.n_bins, self.n_frames)
        normalised = getattr(self.net, "normalised_input", True)
        self.input_norm = nn.BatchNorm2d(self.n_bins) if normalised else nn.Identity()
        self.embedding_dim = self.net.embedding_dim
        # The settings as built (a net may resolve some, such as FCN's automatic pools).
        self.net_settings = {**net, **getattr(self.net, "built_settings", {})}

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, T] waveform -> normalised [B, 1, F, frames] feature map."""
        spec = self.frontend(wave)
        return self.input_norm(spec.transpose(1, 2)).transpose(1, 2)

    def forward(self, wave: torch.Tensor, augment: nn.Module | None = None) -> torch.Tensor:
        spec = self.features(wave)
        return self.net(augment(spec) if augment is not None else spec)
