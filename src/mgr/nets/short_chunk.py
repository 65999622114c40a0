"""Short-chunk CNN and short-chunk ResNet of Won et al. 2020, "Evaluation of
CNN-based automatic music tagging models" (SMC), minzwon/sota-music-tagging-models
(`ShortChunkCNN`, `ShortChunkCNN_Res`; the ResNet was that study's best model on
MagnaTagATune and MSD). The two differ only in their block:

- `block="conv"`: Conv3x3-BN-ReLU-MaxPool(2x2). The seven time pools need 128 frames.
- `block="res"`: two 3x3 convs, the first with stride 2, and a projected shortcut.
  Strided convolutions with padding never shrink an axis below one cell, so any
  chunk length runs; on a frequency axis already down to one bin the stride is 1.

Seven blocks of 128-128-256-256-256-256-512 channels, a global max-pool, then
dense 512-BN-ReLU-dropout 0.5. Designed for 3.69 s at 16 kHz (128 mels, hop
256: 231 frames). Frequency pools are clipped to the bins left.
"""

from __future__ import annotations

from torch import nn

from mgr import MGRError
from mgr.nets.blocks import ConvBlock, ResBlock, freq_pools, require_frames

BLOCKS = {"conv": ConvBlock, "res": ResBlock}


class ShortChunkCNN(nn.Module):
    def __init__(
        self,
        n_bins: int,
        n_frames: int,
        block: str = "conv",
        channels: list[int] = (128, 128, 256, 256, 256, 256, 512),
        dropout: float = 0.5,
    ):
        super().__init__()
        if block not in BLOCKS:
            raise MGRError(f"Unknown model.block={block!r}; choose one of {', '.join(BLOCKS)}.")
        if block == "conv":
            require_frames(self, n_frames, 2 ** len(channels), f"{len(channels)} time pools of 2")
        freq, _ = freq_pools(n_bins, [2] * len(channels))
        chans = [1, *channels]
        self.conv = nn.Sequential(*(BLOCKS[block](chans[i], chans[i + 1], (freq[i], 2)) for i in range(len(channels))))
        self.dense = nn.Sequential(nn.Linear(channels[-1], channels[-1]), nn.BatchNorm1d(channels[-1]), nn.ReLU(),
                                   nn.Dropout(dropout))
        self.embedding_dim = channels[-1]

    def forward(self, spec):
        return self.dense(self.conv(spec).amax(dim=(2, 3)))
