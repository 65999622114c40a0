"""Three-layer CNN of seed 002 (002_bb68449879d8f1cb.txt, Belov, GTZAN/FMA on
spectrogram, chroma and tempogram of 5 s excerpts).

Three conv layers with max-pooling between them, a fully connected layer and
the N-unit output layer. The report's figure is lost and states no sizes; the
defaults (3x3 kernels, 32-64-64 filters, 2x2 pools, dense 64, ReLU) are the
small Keras image-classifier pattern its description follows. Its flatten
would tie the dense layer to one input size (and give a 50M-weight layer on a
1025-bin spectrogram), so the last conv output is max-pooled to a fixed
`summary` grid [frequency, time] and then flattened: the same dense layer on
chroma (12 bins), tempogram and spectrogram.
"""

from __future__ import annotations

from torch import nn

from mgr.models.base import GenreClassifier
from mgr.models.blocks import freq_pools


class CNN3(GenreClassifier):
    def __init__(
        self,
        class_names: list[str],
        feature: dict,
        sample_rate: int,
        chunk_seconds: float,
        channels: list[int] = (32, 64, 64),
        pool: int = 2,
        summary: list[int] = (4, 4),
        hidden: int = 64,
        dropout: float = 0.0,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
    ):
        super().__init__(class_names, feature, sample_rate, chunk_seconds, optimizer, scheduler)
        n_pools = len(channels) - 1  # pools only between conv layers
        self.check_min_frames(pool ** n_pools, f"{n_pools} max-pools of {pool} between the conv layers")
        freq, _ = freq_pools(self.n_bins, [pool] * n_pools)
        layers, in_ch = [], 1
        for i, out_ch in enumerate(channels):
            if i:
                layers.append(nn.MaxPool2d((freq[i - 1], pool)))
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU()]
            in_ch = out_ch
        self.conv = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(tuple(summary)), nn.Flatten())
        self.dense = nn.Sequential(nn.Linear(in_ch * summary[0] * summary[1], hidden), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(hidden, self.num_classes)

    def embed(self, spec):
        return self.dense(self.conv(spec))
