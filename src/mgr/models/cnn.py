"""A plain convolutional classifier in the spirit of seed 002 (002_bb68449879d8f1cb.txt,
Belov): three conv layers with max-pooling in between, a fully connected layer
and the output layer. BatchNorm after each conv makes it train fast from scratch;
a global max-pool before the dense layer lets it take any feature size.
"""

from __future__ import annotations

from torch import nn

from mgr.models.base import GenreClassifier
from mgr.models.blocks import ConvBlock, freq_pools


class CNN(GenreClassifier):
    def __init__(
        self,
        class_names: list[str],
        feature: dict,
        sample_rate: int,
        chunk_seconds: float,
        channels: list[int] = (32, 64, 128),
        pool: int = 2,
        hidden: int = 128,
        dropout: float = 0.3,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
    ):
        super().__init__(class_names, feature, sample_rate, chunk_seconds, optimizer, scheduler)
        self.check_min_frames(pool ** len(channels), f"{len(channels)} max-pools of {pool}")
        freq, _ = freq_pools(self.n_bins, [pool] * len(channels))
        self.conv = nn.Sequential(*(ConvBlock(i, o, (pf, pool)) for i, o, pf in zip([1, *channels], channels, freq)))
        self.dense = nn.Sequential(nn.Linear(channels[-1], hidden), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(hidden, self.num_classes)

    def embed(self, spec):
        return self.dense(self.conv(spec).amax(dim=(2, 3)))
