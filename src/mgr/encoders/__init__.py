"""Pretrained encoders ("backbones"): networks trained elsewhere whose hidden layers mgr
probes or fine-tunes (issue 15). A backbone is an `nn.Module` with

- `sample_rate: int`, the rate it was trained at (the wrapper resamples the data's waveform to it),
- `layer_dims: list[int]`, the width of each layer it exposes, in order,
- `forward(wave: Tensor[B, T at sample_rate]) -> list[Tensor[B, layer_dims[i]]]`: every exposed
  layer, pooled over time, applying the backbone's own input pipeline (normalisation, patching),
- `weight_files: list[Path]`, the files its weights were read from: a frozen probe's checkpoint
  holds their sha256 instead of the weights (mgr.encoders.pretrained).

`BACKBONES` maps a name (the `encoder=` choice) to a function building one from its settings
(weights path or model id, ...), with one clear MGRError when the weights are missing;
`fetch_weights` readies those weights alone, so mgr.train stops on missing ones before it decodes data.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Callable

from torch import nn

from mgr.encoders import hf, musicnn
from mgr.encoders.hf import FAMILIES, hf_builder

BACKBONES: dict[str, Callable[..., nn.Module]] = {family: hf_builder(family) for family in FAMILIES}
# musicnn's own trained weights, from its PyPI wheel (settings: wheel=None, cache_dir)
BACKBONES.update({name: partial(musicnn.build, model) for name, model in musicnn.ENCODERS.items()})

# Each backbone's weights alone, from the same settings: downloaded, converted, checked, not loaded.
WEIGHTS: dict[str, Callable[..., None]] = {family: hf.fetch_weights for family in FAMILIES}
WEIGHTS.update({name: partial(musicnn.fetch_weights, model) for name, model in musicnn.ENCODERS.items()})


def fetch_weights(settings: dict) -> None:
    """Ready the weights of the encoder `settings` (an `encoder=` config) describe, with one clear MGRError
    where they are missing; an unknown name is left to the encoder's own error."""
    fetch = WEIGHTS.get(settings.get("name"))
    if fetch is not None:
        own = inspect.signature(fetch).parameters
        fetch(**{key: value for key, value in settings.items() if key in own})
