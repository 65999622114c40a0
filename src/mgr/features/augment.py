"""SpecAugment (Park et al. 2019) on the feature map, for training steps only:
random frequency and time bands set to 0, the mean of the normalised input."""

from __future__ import annotations

import torch
from torch import nn


class SpecAugment(nn.Module):
    def __init__(self, n_bins: int, n_frames: int, freq_masks: int = 2, max_freq_fraction: float = 0.15,
                 time_masks: int = 2, max_time_fraction: float = 0.1):
        super().__init__()
        import torchaudio

        # Mask widths as fractions of the axis, so one setting suits 12 chroma bins and 1025 STFT bins.
        freq_width = max(1, int(max_freq_fraction * n_bins))
        time_width = max(1, int(max_time_fraction * n_frames))
        masks = [torchaudio.transforms.FrequencyMasking(freq_width, iid_masks=True) for _ in range(freq_masks)]
        masks += [torchaudio.transforms.TimeMasking(time_width, iid_masks=True) for _ in range(time_masks)]
        self.masks = nn.Sequential(*masks)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.masks(spec) if self.training else spec
