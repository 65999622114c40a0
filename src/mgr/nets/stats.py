"""Summary statistics of a feature over time: the mean and standard deviation of
every bin, the clip descriptor of the classic genre-recognition baselines
(Tzanetakis & Cook 2002; Mandel & Ellis 2005, the artist20 baseline; seed
report 004's MFCC + SVM). No weights: a fitted head (an SVM) classifies it.
It takes the frontend's dB values as they are (`normalised_input = False`):
the SVM head standardises the statistics itself.
"""

from __future__ import annotations

import torch
from torch import nn

from mgr.nets.blocks import require_frames


class TimeStatistics(nn.Module):
    normalised_input = False

    def __init__(self, n_bins: int, n_frames: int):
        super().__init__()
        require_frames(self, n_frames, 2, "a standard deviation over time")
        self.embedding_dim = 2 * n_bins

    def forward(self, spec):
        x = spec.squeeze(1)
        return torch.cat([x.mean(dim=2), x.std(dim=2)], dim=1)
