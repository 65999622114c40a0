"""The generated dataset as a source: mgr.data.synth_audio writes it under data.root on first use."""

from __future__ import annotations

from pathlib import Path

from mgr import MGRError
from mgr.data import synth_audio
from mgr.data.sources.base import TrackList
from mgr.data.sources.folder import FolderSource, read_manifest


class SynthSource(FolderSource):
    """The generated dataset (see mgr.data.synth_audio), listed as genre folders; with `multilabel`
    (data=synth_multilabel), the mixes of two styles, listed by the labels manifest written with them."""

    name = "synth"
    title = "The synth dataset"
    layout = "<root>/<its settings>/<class>/<file>"
    how_to_get = "mgr writes it there on first use"
    root_may_be_file = False  # the folder it writes into, never a manifest

    def __init__(self, root: str | None, tracks_per_class: int = 40, seconds=(6.0, 10.0), seed: int = 0,
                 multilabel: bool = False):
        super().__init__(root)
        self.settings = (int(tracks_per_class), (float(seconds[0]), float(seconds[1])), int(seed), bool(multilabel))
        tracks, secs, seed, _ = self.settings
        if tracks < 1 or not 0 < secs[0] <= secs[1]:
            raise MGRError("data.source_options needs tracks_per_class >= 1 and 0 < seconds[0] <= seconds[1].")

    def folder(self) -> Path:
        return synth_audio.generate(self.require_root(), *self.settings)  # instant once generated

    def list(self) -> TrackList:
        multilabel = self.settings[-1]
        return read_manifest(self.folder() / synth_audio.LABELS_MANIFEST) if multilabel else super().list()
