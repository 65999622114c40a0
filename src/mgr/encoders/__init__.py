"""Pretrained encoders ("backbones"): networks trained elsewhere whose hidden layers mgr
probes or fine-tunes (issue 15). A backbone is an `nn.Module` with

- `sample_rate: int`, the rate it was trained at (the wrapper resamples the data's waveform to it),
- `layer_dims: list[int]`, the width of each layer it exposes, in order,
- `forward(wave: Tensor[B, T at sample_rate]) -> list[Tensor[B, layer_dims[i]]]`: every exposed
  layer, pooled over time, applying the backbone's own input pipeline (normalisation, patching),
- `weight_files: list[Path]`, the files its weights were read from: a frozen probe's checkpoint
  holds their sha256 instead of the weights (mgr.encoders.pretrained).

`BACKBONES` maps a name (the `encoder=` choice) to a function building one from its settings
(weights path or model id, ...), with one clear MGRError when the weights are missing.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from mgr.encoders.hf import FAMILIES, hf_builder
from mgr.encoders.musicnn import msd_musicnn, msd_vgg, mtt_musicnn, mtt_vgg

BACKBONES: dict[str, Callable[..., nn.Module]] = {family: hf_builder(family) for family in FAMILIES}
# musicnn's own trained weights, from its PyPI wheel (settings: wheel=None, cache_dir)
BACKBONES.update(msd_musicnn=msd_musicnn, mtt_musicnn=mtt_musicnn, msd_vgg=msd_vgg, mtt_vgg=mtt_vgg)
