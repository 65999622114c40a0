"""mgr.features.augment: SpecAugment masks in training only, bands of at most the width."""

from __future__ import annotations

import pytest
import torch

from mgr import MGRError
from mgr.features import build_augment


def test_specaugment_masks_in_training_only():
    augment = build_augment({"name": "specaugment", "freq_masks": 2, "time_masks": 2}, n_bins=40, n_frames=100)
    spec = torch.randn(4, 1, 40, 100) + 10
    augment.train()
    masked = augment(spec)
    assert (masked == 0).any() and (masked != 0).any()
    assert not torch.equal(masked[0], masked[1])  # each example gets its own masks
    augment.eval()
    assert torch.equal(augment(spec), spec)
    assert isinstance(build_augment({}, 40, 100), torch.nn.Identity)
    with pytest.raises(MGRError, match="Unknown augment"):
        build_augment({"name": "mixup"}, 40, 100)


@pytest.mark.parametrize("dim", [-2, -1])
def test_specaugment_masks_are_bands_of_at_most_the_width(dim):
    """Each example loses one contiguous band of width 0..max-1 per mask, anywhere it fits."""
    torch.manual_seed(0)
    masks = {"freq_masks": 1, "time_masks": 0} if dim == -2 else {"freq_masks": 0, "time_masks": 1}
    augment = build_augment({"name": "specaugment", "max_freq_fraction": 0.2, "max_time_fraction": 0.2, **masks},
                            n_bins=40, n_frames=50).train()
    spec = torch.rand(2000, 1, 40, 50) + 1
    zeroed = (augment(spec) == 0).squeeze(1)                       # [B, F, T]
    lines = zeroed.all(dim=-1 if dim == -2 else -2)                 # whole rows (or columns) zeroed
    assert torch.equal(zeroed.any(dim=-1 if dim == -2 else -2), lines)  # nothing but whole lines
    widths = lines.sum(-1)
    assert set(widths.tolist()) == set(range(8 if dim == -2 else 10))   # 0.2 * 40 = 8, 0.2 * 50 = 10
    first = lines.float().argmax(-1)
    contiguous = [lines[i, first[i]:first[i] + widths[i]].all() for i in range(len(lines)) if widths[i]]
    assert all(contiguous)
    assert first[widths > 0].min() == 0 and (first + widths).max() == lines.shape[-1]  # both edges reachable
