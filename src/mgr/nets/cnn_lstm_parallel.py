"""Parallel CNN and LSTM branches of seed report 000 (FMA, 8 genres).

CNN branch: conv layers with 3-wide, 1-high kernels (along time only, to keep
the frequency detail) + ReLU, followed by 2x2 and then 4x4 max-pooling with
stride 2. Other branch: a 4x2 max-pool (frequency x time) and an LSTM over
time. Both outputs are concatenated into one fully connected (output) layer.

The report's block diagram is lost; it gives neither channel counts nor the
number of conv layers. Its description matches the well-known Keras "parallel
CNN-RNN" genre model it builds on: five conv blocks of 16-32-64-64-64
channels, 2x2 pools on the first three and 4x4 on the last two, a 64-unit
recurrent layer. Those are the defaults here. The CNN output is flattened
(sizes from the input), as in that model; frequency pools are clipped to the
bins left so narrow features run.
"""

from __future__ import annotations

import torch
from torch import nn

from mgr.nets.blocks import min_input, pooled, require_frames


class CNNLSTMParallel(nn.Module):
    def __init__(
        self,
        n_bins: int,
        n_frames: int,
        channels: list[int] = (16, 32, 64, 64, 64),
        pools: list[int] = (2, 2, 2, 4, 4),
        pool_stride: int = 2,
        lstm_pool: list[int] = (4, 2),
        lstm_hidden: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        time_pools = [(p, pool_stride) for p in pools]
        need = max(min_input(time_pools), lstm_pool[1])
        require_frames(self, n_frames, need, f"max-pools {list(pools)} with stride {pool_stride}")
        blocks, in_ch, n_freq, n_time = [], 1, n_bins, n_frames
        for out_ch, p in zip(channels, pools):
            pf, sf = min(p, n_freq), min(pool_stride, n_freq)
            blocks += [nn.Conv2d(in_ch, out_ch, (1, 3), padding=(0, 1)), nn.ReLU(), nn.MaxPool2d((pf, p), (sf, pool_stride))]
            n_freq, n_time, in_ch = pooled(n_freq, pf, sf), pooled(n_time, p, pool_stride), out_ch
        self.cnn = nn.Sequential(*blocks, nn.Flatten())
        lstm_freq = min(lstm_pool[0], n_bins)
        self.lstm_pool = nn.MaxPool2d((lstm_freq, lstm_pool[1]))
        self.lstm = nn.LSTM(n_bins // lstm_freq, lstm_hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.embedding_dim = in_ch * n_freq * n_time + lstm_hidden

    def forward(self, spec):
        seq = self.lstm_pool(spec).squeeze(1).transpose(1, 2)  # [B, time, frequency]
        out, _ = self.lstm(seq)
        return self.dropout(torch.cat([self.cnn(spec), out[:, -1]], dim=1))
