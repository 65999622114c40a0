"""CRNN of seed report 001 (after Choi et al. 2017,
"Convolutional recurrent neural networks for music classification").

Layer 0 zero-pads time and batch-normalises the dB input (the base class's
per-bin BatchNorm); four blocks of Conv2d(3x3)-BN-ELU-MaxPool-Dropout(0.1); a
3-layer GRU (or LSTM) over the remaining time steps; a dense output layer.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import nn

from mgr import MGRError
from mgr.nets.blocks import freq_pools, require_frames

RNNS = {"gru": nn.GRU, "lstm": nn.LSTM}


class CRNN(nn.Module):
    def __init__(
        self,
        n_bins: int,
        n_frames: int,
        channels: list[int] = (64, 128, 128, 128),
        pools: list[list[int]] = ((2, 2), (3, 2), (4, 2), (4, 2)),
        dropout: float = 0.1,
        rnn: str = "gru",
        rnn_hidden: int = 32,
        rnn_layers: int = 3,
    ):
        super().__init__()
        time_factor = math.prod(p[1] for p in pools)
        require_frames(self, n_frames, time_factor, f"the time pools {[p[1] for p in pools]} multiply to {time_factor}")
        self.time_factor = time_factor
        freq, _ = freq_pools(n_bins, [p[0] for p in pools])
        blocks, in_ch = [], 1
        for out_ch, pf, (_, pt) in zip(channels, freq, pools):
            blocks += [
                nn.Conv2d(in_ch, out_ch, 3, padding=1),
                nn.BatchNorm2d(out_ch),
                nn.ELU(),
                nn.MaxPool2d((pf, pt)),
                nn.Dropout(dropout),
            ]
            in_ch = out_ch
        self.conv = nn.Sequential(*blocks)
        if rnn not in RNNS:
            raise MGRError(f"Unknown model.rnn={rnn!r}; choose one of {', '.join(RNNS)}.")
        rnn_cls = RNNS[rnn]
        self.rnn = rnn_cls(in_ch, rnn_hidden, num_layers=rnn_layers, batch_first=True,
                           dropout=dropout if rnn_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.embedding_dim = rnn_hidden

    def forward(self, spec):
        pad = -spec.shape[-1] % self.time_factor  # layer 0: zero-pad time to a multiple of the pools
        x = self.conv(F.pad(spec, (0, pad)))
        x = x.amax(dim=2).transpose(1, 2)  # [B, time, channels]; max over what is left of frequency
        out, _ = self.rnn(x)
        return self.dropout(out[:, -1])
