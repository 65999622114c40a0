"""Where the tracks come from: each source lists files, labels and class names,
and knows the splits its dataset defines (one file per source, the shared part in
base.py). This module is the registry: data.source names the class, built with
data.root and data.source_options. Sources import base, never this registry.
"""

from __future__ import annotations

from mgr import MGRError
from mgr.data.sources.artist20 import Artist20Source
from mgr.data.sources.base import Source, TrackList
from mgr.data.sources.fma import FMASource
from mgr.data.sources.folder import FolderSource, read_manifest
from mgr.data.sources.gtzan import GTZANSource
from mgr.data.sources.mtat import MTATSource
from mgr.data.sources.mtg_jamendo import MTGJamendoSource
from mgr.data.sources.synth import SynthSource

__all__ = ["SOURCES", "Source", "TrackList", "build_source", "read_manifest"]

SOURCES: dict[str, type[Source]] = {s.name: s for s in (FolderSource, SynthSource, GTZANSource, FMASource,
                                                         Artist20Source, MTGJamendoSource, MTATSource)}


def build_source(name: str, root: str | None, options: dict, allow_outside_root: bool = False) -> Source:
    """data.source built with data.root and data.source_options; data.allow_outside_root is set on
    every source alike (Source.allow_outside_root), so no source's own options need to take it."""
    if name not in SOURCES:
        raise MGRError(f"Unknown data.source={name!r}; choose one of {sorted(SOURCES)}.")
    try:
        source = SOURCES[name](root, **options)
    except TypeError as e:
        raise MGRError(f"Bad data.source_options for data.source={name}: {e}.") from None
    source.allow_outside_root = bool(allow_outside_root)
    return source
