"""Short-chunk CNN of Won et al. 2020, "Evaluation of CNN-based automatic music
tagging models" (SMC), minzwon/sota-music-tagging-models (`ShortChunkCNN`).

Seven Conv3x3-BN-ReLU-MaxPool(2x2) blocks, 128-128-256-256-256-256-512
channels, global max-pool over time, dense 512-BN-ReLU-dropout 0.5, output.
Designed for 3.69 s at 16 kHz (128 mels, hop 256: 231 frames): the seven time
pools need 128 frames. Frequency pools are clipped to the bins left.
"""

from __future__ import annotations

from torch import nn

from mgr.models.base import GenreClassifier
from mgr.models.blocks import ConvBlock, freq_pools


class ShortChunkCNN(GenreClassifier):
    def __init__(
        self,
        class_names: list[str],
        feature: dict,
        sample_rate: int,
        chunk_seconds: float,
        channels: list[int] = (128, 128, 256, 256, 256, 256, 512),
        dropout: float = 0.5,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
    ):
        super().__init__(class_names, feature, sample_rate, chunk_seconds, optimizer, scheduler)
        self.check_min_frames(2 ** len(channels), f"{len(channels)} time pools of 2")
        freq, _ = freq_pools(self.n_bins, [2] * len(channels))
        chans = [1, *channels]
        self.conv = nn.Sequential(*(ConvBlock(chans[i], chans[i + 1], (freq[i], 2)) for i in range(len(channels))))
        self.dense = nn.Sequential(nn.Linear(channels[-1], channels[-1]), nn.BatchNorm1d(channels[-1]), nn.ReLU(),
                                   nn.Dropout(dropout))
        self.head = nn.Linear(channels[-1], self.num_classes)

    def embed(self, spec):
        return self.dense(self.conv(spec).amax(dim=(2, 3)))
