"""mgr's small CNN, a quick from-scratch baseline (no report's model; for seed
report 002's three-layer CNN see belov_cnn.py): three Conv3x3-BN-ReLU-MaxPool
blocks, a global max-pool, so any feature size runs, and one dense layer.
BatchNorm after each conv makes it train fast from scratch.
"""

from __future__ import annotations

from torch import nn

from mgr.nets.blocks import ConvBlock, freq_pools, require_frames


class SmallCNN(nn.Module):
    def __init__(
        self,
        n_bins: int,
        n_frames: int,
        channels: list[int] = (32, 64, 128),
        pool: int = 2,
        hidden: int = 128,
        dropout: float = 0.3,
    ):
        super().__init__()
        require_frames(self, n_frames, pool ** len(channels), f"{len(channels)} max-pools of {pool}")
        freq, _ = freq_pools(n_bins, [pool] * len(channels))
        self.conv = nn.Sequential(*(ConvBlock(i, o, (pf, pool)) for i, o, pf in zip([1, *channels], channels, freq)))
        self.dense = nn.Sequential(nn.Linear(channels[-1], hidden), nn.ReLU(), nn.Dropout(dropout))
        self.embedding_dim = hidden

    def forward(self, spec):
        return self.dense(self.conv(spec).amax(dim=(2, 3)))
