"""Five-layer CNN of seed report 003 (GTZAN, mel at 22.05 kHz,
PyTorch, SGD with momentum).

Five conv + max-pool layers, a dropout layer, then the flattened maps through
five linear layers with ReLU (the last one the output). The report states no
sizes; the defaults double the filters per layer (16-32-64-128-256, 3x3, 2x2
pools) and halve the linear widths (512-256-128-64, then the output), and
dropout is torch's default 0.5. The last conv output is max-pooled to a fixed
`summary` grid [frequency, time] before the flatten, so the first linear
layer does not depend on the feature size or chunk length.
"""

from __future__ import annotations

from torch import nn

from mgr.nets.blocks import freq_pools, require_frames


class CNN5(nn.Module):
    def __init__(
        self,
        n_bins: int,
        n_frames: int,
        channels: list[int] = (16, 32, 64, 128, 256),
        pool: int = 2,
        summary: list[int] = (4, 4),
        linear: list[int] = (512, 256, 128, 64),
        dropout: float = 0.5,
    ):
        super().__init__()
        require_frames(self, n_frames, pool ** len(channels), f"{len(channels)} max-pools of {pool}")
        freq, _ = freq_pools(n_bins, [pool] * len(channels))
        layers, in_ch = [], 1
        for out_ch, pf in zip(channels, freq):
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d((pf, pool))]
            in_ch = out_ch
        self.conv = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(tuple(summary)), nn.Flatten(), nn.Dropout(dropout))
        dense, width = [], in_ch * summary[0] * summary[1]
        for out in linear:
            dense += [nn.Linear(width, out), nn.ReLU()]
            width = out
        self.dense = nn.Sequential(*dense)
        self.embedding_dim = width

    def forward(self, spec):
        return self.dense(self.conv(spec))
