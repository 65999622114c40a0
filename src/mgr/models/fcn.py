"""Fully convolutional network of Choi et al. 2016, "Automatic tagging using deep
convolutional neural networks" (ISMIR), as in Won et al. 2020's
minzwon/sota-music-tagging-models (training/model.py, `FCN`).

Five Conv3x3-BN-ReLU-MaxPool blocks, 64-128-128-128-64 channels, pools
(2,4) (2,4) (2,4) (3,5) (4,4) as [frequency, time]; dropout 0.5 and a dense
output. Built for 29.1 s at 16 kHz (96 mels, hop 256: 1813 frames); the time
pools multiply to 1280 frames, so short chunks need smaller `pools`.
Frequency pools are clipped to the bins left (narrow features); a global
max-pool takes what is left of both axes (one cell at the design size).
"""

from __future__ import annotations

import math

from torch import nn

from mgr.models.base import GenreClassifier
from mgr.models.blocks import ConvBlock, freq_pools


class FCN(GenreClassifier):
    def __init__(
        self,
        class_names: list[str],
        feature: dict,
        sample_rate: int,
        chunk_seconds: float,
        channels: list[int] = (64, 128, 128, 128, 64),
        pools: list[list[int]] = ((2, 4), (2, 4), (2, 4), (3, 5), (4, 4)),
        dropout: float = 0.5,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
    ):
        super().__init__(class_names, feature, sample_rate, chunk_seconds, optimizer, scheduler)
        time = [p[1] for p in pools]
        self.check_min_frames(math.prod(time), f"the time pools {time} multiply to {math.prod(time)}")
        freq, _ = freq_pools(self.n_bins, [p[0] for p in pools])
        chans = [1, *channels]
        self.conv = nn.Sequential(*(ConvBlock(chans[i], chans[i + 1], (freq[i], time[i])) for i in range(len(channels))))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels[-1], self.num_classes)

    def embed(self, spec):
        return self.dropout(self.conv(spec).amax(dim=(2, 3)))
