"""The architectures: plain `nn.Module`s, no Lightning. Each maps a normalised
feature map [B, 1, n_bins, n_frames] to embeddings [B, embedding_dim]; it is
built from the feature's size for one chunk (`n_bins`, `n_frames`) and its own
settings, and sets `embedding_dim`. The classification task (mgr.models)
holds one inside its encoder and adds the output layer.

Adding an architecture: one file here with the net, one line in `NETS`, one
config file conf/model/<name>.yaml with `name: <name>` (see docs/how-to/add-model.md).

Optional class attributes: `normalised_input = False` takes the frontend's dB
values without the per-bin input BatchNorm; an instance attribute
`built_settings` holds settings resolved at build time (FCN's automatic pools),
which the checkpoint stores in place of what was asked for.
"""

from __future__ import annotations

import inspect

from torch import nn

from mgr import MGRError
from mgr.nets.belov_cnn import BelovCNN
from mgr.nets.cnn import SmallCNN
from mgr.nets.cnn5 import CNN5
from mgr.nets.cnn_lstm_parallel import CNNLSTMParallel
from mgr.nets.crnn import CRNN
from mgr.nets.crnn_artist import CRNNArtist
from mgr.nets.fcn import FCN
from mgr.nets.musicnn import Musicnn
from mgr.nets.short_chunk import ShortChunkCNN
from mgr.nets.stats import TimeStatistics

NETS: dict[str, type[nn.Module]] = {
    "cnn": SmallCNN,
    "belov_cnn": BelovCNN,
    "cnn5": CNN5,
    "cnn_lstm_parallel": CNNLSTMParallel,
    "crnn": CRNN,
    "crnn_artist": CRNNArtist,
    "fcn": FCN,
    "musicnn": Musicnn,
    "short_chunk_cnn": ShortChunkCNN,
    "stats": TimeStatistics,
}


def build_net(settings: dict, n_bins: int, n_frames: int) -> nn.Module:
    """The net `settings["name"]` with the other settings as its arguments."""
    settings = dict(settings)
    name = settings.pop("name", None)
    if name not in NETS:
        raise MGRError(f"Unknown model.name={name!r}; choose one of {', '.join(NETS)}.")
    try:  # checked before building, so an error inside a net is never mistaken for a wrong override
        inspect.signature(NETS[name]).bind(n_bins, n_frames, **settings)
    except TypeError as e:
        raise MGRError(f"model={name} does not take these settings ({e}); see its options in "
                       f"mgr/nets/ ({NETS[name].__module__}).") from None
    return NETS[name](n_bins, n_frames, **settings)


__all__ = ["NETS", "build_net", *(cls.__name__ for cls in NETS.values())]
