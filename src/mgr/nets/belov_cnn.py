"""Three-layer CNN of seed report 002 (Belov, "Deep learning for music genre recognition", GTZAN/FMA on
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

from mgr.nets.blocks import freq_pools, require_frames


class BelovCNN(nn.Module):
    def __init__(
        self,
        n_bins: int,
        n_frames: int,
        channels: list[int] = (32, 64, 64),
        pool: int = 2,
        summary: list[int] = (4, 4),
        hidden: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        n_pools = len(channels) - 1  # pools only between conv layers
        require_frames(self, n_frames, pool ** n_pools, f"{n_pools} max-pools of {pool} between the conv layers")
        freq, _ = freq_pools(n_bins, [pool] * n_pools)
        layers, in_ch = [], 1
        for i, out_ch in enumerate(channels):
            if i:
                layers.append(nn.MaxPool2d((freq[i - 1], pool)))
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU()]
            in_ch = out_ch
        self.conv = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(tuple(summary)), nn.Flatten())
        self.dense = nn.Sequential(nn.Linear(in_ch * summary[0] * summary[1], hidden), nn.ReLU(), nn.Dropout(dropout))
        self.embedding_dim = hidden

    def forward(self, spec):
        return self.dense(self.conv(spec))
