"""Fully convolutional network of Choi et al. 2016, "Automatic tagging using deep
convolutional neural networks" (ISMIR), as in Won et al. 2020's
minzwon/sota-music-tagging-models (training/model.py, `FCN`).

Five Conv3x3-BN-ReLU-MaxPool blocks, 64-128-128-128-64 channels, pools
(2,4) (2,4) (2,4) (3,5) (4,4) as [frequency, time]; dropout 0.5 and a dense
output. Built for 29.1 s at 16 kHz (96 mels, hop 256: 1819 frames), which the
time pools, multiplying to 1280, bring down to one cell.

`pools="auto"` (the default) fits the time pools to the chunk, so FCN runs on
the 3 s chunks of the other models too: Choi's when a chunk gives at least
1280 frames, else lowered one step at a time, always the one largest relative
to Choi's, until they multiply to no more than the frames (130 frames of the
default 3 s log-mel: 2, 2, 3, 3, 3). Choi's 29.1 s setup therefore gets Choi's
pools as they are; `pools=[[2,4],[2,4],[2,4],[3,5],[4,4]]` forces them on any
chunk of at least 1280 frames. The checkpoint keeps the pools the model was
built with. Frequency pools are clipped to the bins left (narrow features); a
global max-pool takes what is left of both axes.
"""

from __future__ import annotations

import math

from torch import nn

from mgr import MGRError
from mgr.nets.blocks import ConvBlock, freq_pools, require_frames

CHOI_POOLS = ((2, 4), (2, 4), (2, 4), (3, 5), (4, 4))  # [frequency, time] per block


def fit_time_pools(reference: list[int], n_frames: int) -> list[int]:
    """`reference` time pools lowered, one step at a time and always the one largest relative to its
    reference (the first of equals), until they multiply to at most `n_frames`."""
    pools = list(reference)
    while math.prod(pools) > n_frames:
        i = max(range(len(pools)), key=lambda j: pools[j] / reference[j])
        pools[i] -= 1
    return pools


class FCN(nn.Module):
    def __init__(
        self,
        n_bins: int,
        n_frames: int,
        channels: list[int] = (64, 128, 128, 128, 64),
        pools: list[list[int]] | str = "auto",
        dropout: float = 0.5,
    ):
        super().__init__()
        if pools == "auto":
            time = fit_time_pools([t for _, t in CHOI_POOLS], n_frames)
            pools = [[f, t] for (f, _), t in zip(CHOI_POOLS, time)]
        elif isinstance(pools, str):
            raise MGRError(f"model.pools={pools!r} must be auto or a list of [frequency, time] pools, one per block.")
        pools = [[int(f), int(t)] for f, t in pools]
        if len(pools) != len(channels):
            raise MGRError(f"model.pools has {len(pools)} pools for {len(channels)} blocks (model.channels); "
                           "give one [frequency, time] pool per block.")
        self.built_settings = {"pools": pools}  # what was built, so a checkpoint restores it as it is
        time = [t for _, t in pools]
        require_frames(self, n_frames, math.prod(time), f"the time pools {time} multiply to {math.prod(time)}")
        freq, _ = freq_pools(n_bins, [f for f, _ in pools])
        chans = [1, *channels]
        self.conv = nn.Sequential(*(ConvBlock(chans[i], chans[i + 1], (freq[i], time[i])) for i in range(len(channels))))
        self.dropout = nn.Dropout(dropout)
        self.embedding_dim = channels[-1]

    def forward(self, spec):
        return self.dropout(self.conv(spec).amax(dim=(2, 3)))
