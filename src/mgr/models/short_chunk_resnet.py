"""Short-chunk ResNet of Won et al. 2020, "Evaluation of CNN-based automatic music
tagging models" (SMC), minzwon/sota-music-tagging-models (`ShortChunkCNN_Res`),
the best model of that study on MagnaTagATune and MSD.

Seven residual blocks (two 3x3 convs, the first with stride 2, projected
shortcut), 128-128-256-256-256-256-512 channels, global max-pool over time,
dense 512-BN-ReLU-dropout 0.5, output. Designed for 3.69 s at 16 kHz (128
mels, hop 256). Strided convolutions with padding never shrink an axis below
one cell, so any chunk length runs; on a frequency axis already down to one
bin the stride there is 1.
"""

from __future__ import annotations

from torch import nn

from mgr.models.base import GenreClassifier
from mgr.models.blocks import ResBlock, freq_pools


class ShortChunkResNet(GenreClassifier):
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
        freq, _ = freq_pools(self.n_bins, [2] * len(channels))
        chans = [1, *channels]
        self.conv = nn.Sequential(*(ResBlock(chans[i], chans[i + 1], (freq[i], 2)) for i in range(len(channels))))
        self.dense = nn.Sequential(nn.Linear(channels[-1], channels[-1]), nn.BatchNorm1d(channels[-1]), nn.ReLU(),
                                   nn.Dropout(dropout))
        self.head = nn.Linear(channels[-1], self.num_classes)

    def embed(self, spec):
        return self.dense(self.conv(spec).amax(dim=(2, 3)))
