"""CRNN of seed report 004, after Nasrullah & Zhao 2019,
"Music artist classification with convolutional recurrent neural networks"
(IJCNN), trained on short slices of artist20 songs.

Three conv blocks (Conv3x3-ELU-BN-MaxPool-Dropout 0.1), then permute and
reshape so every time step carries frequency x channels, two GRU layers of 32
units (the last state), dropout 0.3 and a dense output. The report states no
sizes; the defaults are those of the paper's code (64-128-128 filters, pools
(2,2) (4,2) (4,2) as [frequency, time]), cut to the report's three blocks.
Frequency pools are clipped to the bins left so narrow features run.
"""

from __future__ import annotations

import math

from torch import nn

from mgr.nets.blocks import freq_pools, require_frames


class CRNNArtist(nn.Module):
    def __init__(
        self,
        n_bins: int,
        n_frames: int,
        channels: list[int] = (64, 128, 128),
        pools: list[list[int]] = ((2, 2), (4, 2), (4, 2)),
        conv_dropout: float = 0.1,
        rnn_hidden: int = 32,
        rnn_layers: int = 2,
        dropout: float = 0.3,
    ):
        super().__init__()
        time = [p[1] for p in pools]
        require_frames(self, n_frames, math.prod(time), f"the time pools {time} multiply to {math.prod(time)}")
        freq, n_freq = freq_pools(n_bins, [p[0] for p in pools])
        blocks, in_ch = [], 1
        for out_ch, pf, pt in zip(channels, freq, time):
            blocks += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ELU(), nn.BatchNorm2d(out_ch),
                       nn.MaxPool2d((pf, pt)), nn.Dropout(conv_dropout)]
            in_ch = out_ch
        self.conv = nn.Sequential(*blocks)
        self.rnn = nn.GRU(in_ch * n_freq, rnn_hidden, num_layers=rnn_layers, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.embedding_dim = rnn_hidden

    def forward(self, spec):
        x = self.conv(spec)  # [B, C, F', T']
        x = x.permute(0, 3, 1, 2).flatten(2)  # [B, T', C * F']: the paper's Permute + Reshape
        out, _ = self.rnn(x)
        return self.dropout(out[:, -1])
