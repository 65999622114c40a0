"""Layers and size arithmetic shared by several nets."""

from __future__ import annotations

from torch import nn

from mgr import MGRError


def pooled(size: int, kernel: int, stride: int | None = None) -> int:
    """Output length of a max-pool without padding."""
    return (size - kernel) // (stride or kernel) + 1


def min_input(pools: list[tuple[int, int]]) -> int:
    """Smallest input length that survives a chain of (kernel, stride) max-pools."""
    need = 1
    for kernel, stride in reversed(pools):
        need = (need - 1) * stride + kernel
    return need


def freq_pools(n_bins: int, pools: list[int]) -> tuple[list[int], int]:
    """Frequency pool sizes clipped to what is left, so narrow inputs (12 chroma bins,
    13 MFCCs) run through models designed for 96-128 mel bins; returns them and the bins left."""
    clipped = []
    for p in pools:
        p = max(1, min(p, n_bins))
        clipped.append(p)
        n_bins //= p
    return clipped, n_bins


class ConvBlock(nn.Sequential):
    """Conv2d(3x3, same padding)-BN-ReLU-MaxPool: Won et al.'s `Conv_2d`."""

    def __init__(self, in_ch: int, out_ch: int, pool: tuple[int, int]):
        super().__init__(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(),
                         nn.MaxPool2d(pool))


class ResBlock(nn.Module):
    """Two 3x3 convs with a (projected) shortcut, the first strided: Won et al.'s `Res_2d`."""

    def __init__(self, in_ch: int, out_ch: int, stride: tuple[int, int]):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(),
            nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch),
        )
        self.shortcut = nn.Identity()
        if tuple(stride) != (1, 1) or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        return (self.body(x) + self.shortcut(x)).relu()


def require_frames(net: nn.Module, n_frames: int, minimum: int, why: str) -> None:
    """One clear error when a chunk gives the net fewer feature frames than its pooling needs."""
    if n_frames < minimum:
        raise MGRError(
            f"{type(net).__name__} needs at least {minimum} feature frames ({why}), but one chunk gives "
            f"{n_frames}; raise data.chunk_seconds or lower feature.hop_length."
        )
