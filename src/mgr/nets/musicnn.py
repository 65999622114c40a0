"""Musicnn of Pons et al. 2018, "End-to-end learning for music audio tagging at
scale" (ISMIR), in the version Won et al. 2020 evaluated
(minzwon/sota-music-tagging-models, `Musicnn`, MagnaTagATune sizes).

Front end, musically motivated: 204 + 204 timbral filters spanning 70% and 40%
of the frequency axis (7 frames wide, max-pooled over frequency) and 3 x 51
temporal filters of 129, 65 and 33 frames on the frequency-averaged input.
Back end: three 1-D convs (64 channels, width 7) with residual connections;
max- and mean-pool over time of everything; dense 200-BN-ReLU-dropout 0.5,
output. The filter heights follow the number of input bins, so any feature and
any chunk length run.
"""

from __future__ import annotations

import torch
from torch import nn



class _Timbral(nn.Module):
    """Vertical filters over `height` bins, max-pooled over frequency: [B,1,F,T] -> [B,C,T]."""

    def __init__(self, channels: int, height: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, channels, (height, 7), padding=(0, 3)), nn.BatchNorm2d(channels), nn.ReLU())

    def forward(self, x):
        return self.conv(x).amax(dim=2)


class _Temporal(nn.Module):
    """Horizontal filters of `width` frames on the frequency-averaged input: [B,1,F,T] -> [B,C,T]."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(1, channels, width, padding=width // 2), nn.BatchNorm1d(channels), nn.ReLU())

    def forward(self, x):
        return self.conv(x.mean(dim=2))


def _conv1d(in_ch: int, out_ch: int) -> nn.Module:
    return nn.Sequential(nn.Conv1d(in_ch, out_ch, 7, padding=3), nn.BatchNorm1d(out_ch), nn.ReLU())


class Musicnn(nn.Module):
    def __init__(
        self,
        n_bins: int,
        n_frames: int,
        timbral_filters: int = 204,
        timbral_heights: list[float] = (0.7, 0.4),
        temporal_filters: int = 51,
        temporal_widths: list[int] = (129, 65, 33),
        backend_channels: int = 64,
        dense: int = 200,
        dropout: float = 0.5,
    ):
        super().__init__()
        self.front = nn.ModuleList(
            [_Timbral(timbral_filters, max(1, int(h * n_bins))) for h in timbral_heights]
            + [_Temporal(temporal_filters, w) for w in temporal_widths]
        )
        front_ch = timbral_filters * len(timbral_heights) + temporal_filters * len(temporal_widths)
        self.back = nn.ModuleList([_conv1d(front_ch, backend_channels), _conv1d(backend_channels, backend_channels),
                                   _conv1d(backend_channels, backend_channels)])
        pooled = 2 * (front_ch + 3 * backend_channels)  # max and mean of front end and every back-end layer
        self.dense = nn.Sequential(nn.Linear(pooled, dense), nn.BatchNorm1d(dense), nn.ReLU(), nn.Dropout(dropout))
        self.embedding_dim = dense

    def forward(self, spec):
        front = torch.cat([layer(spec) for layer in self.front], dim=1)
        res1 = self.back[0](front)
        res2 = self.back[1](res1) + res1
        res3 = self.back[2](res2) + res2
        x = torch.cat([front, res1, res2, res3], dim=1)
        return self.dense(torch.cat([x.amax(dim=2), x.mean(dim=2)], dim=1))
