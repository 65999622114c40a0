"""SpecAugment (Park et al. 2019) on the feature map, for training steps only:
random frequency and time bands set to 0, the mean of the normalised input.

Masks are drawn as torchaudio's FrequencyMasking/TimeMasking(iid_masks=True) draw
them (a width uniform in [0, max), a start uniform over the positions where it
fits, independently per example; torchaudio's start never reaches the last
bin), written here in torch: torchaudio's compiled
library must match the installed torch, which broke fresh installs (see
pyproject.toml), and masking needs nothing compiled.
"""

from __future__ import annotations

import torch
from torch import nn

# Said by mgr.train before a probe's embeddings are extracted, and by a pretrained encoder given a mask.
NO_SPECTROGRAM = "augment={} masks a spectrogram, and a pretrained encoder takes the waveform; use augment=none."


def mask_band(spec: torch.Tensor, max_width: int, dim: int) -> torch.Tensor:
    """Zero one random band along `dim` (-2 frequency, -1 time) of each [.., F, T] map."""
    batch, size = spec.shape[:-2], spec.shape[dim]
    width = (torch.rand(batch, device=spec.device) * max_width).long()
    start = (torch.rand(batch, device=spec.device) * (size - width + 1)).long()  # the last bin can be masked too
    position = torch.arange(size, device=spec.device)
    inside = (position >= start[..., None]) & (position < (start + width)[..., None])  # [..., size]
    inside = inside.unsqueeze(-1) if dim == -2 else inside.unsqueeze(-2)
    return spec.masked_fill(inside, 0.0)


class SpecAugment(nn.Module):
    def __init__(self, n_bins: int, n_frames: int, freq_masks: int = 2, max_freq_fraction: float = 0.15,
                 time_masks: int = 2, max_time_fraction: float = 0.1):
        super().__init__()
        # Mask widths as fractions of the axis, so one setting suits 12 chroma bins and 1025 STFT bins.
        self.freq_width = max(1, int(max_freq_fraction * n_bins))
        self.time_width = max(1, int(max_time_fraction * n_frames))
        self.freq_masks, self.time_masks = freq_masks, time_masks

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return spec
        for _ in range(self.freq_masks):
            spec = mask_band(spec, self.freq_width, -2)
        for _ in range(self.time_masks):
            spec = mask_band(spec, self.time_width, -1)
        return spec
