"""Where the tracks come from: each source lists (files, labels, class names).

Sources are chosen by `data.source`, with `data.root` and `data.source_options`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mgr import MGRError
from mgr.data import synth
from mgr.data.audio import AUDIO_EXTENSIONS, is_audio_file


@dataclass
class TrackList:
    files: list[str]
    labels: list[int]
    class_names: list[str]


class FolderSource:
    """A user's own music laid out as `root/<genre>/<file>` (any depth below the genre)."""

    name = "folder"

    def __init__(self, root: str | None):
        self.root = Path(root).expanduser() if root else None

    def prepare(self) -> None:
        self.list()  # fail early and clearly, before any decoding

    def folder(self) -> Path:
        if self.root is None:
            raise MGRError("data=folder needs data.root=/path/to/music, a folder laid out as <root>/<genre>/<file>.")
        if not self.root.is_dir():
            raise MGRError(f"data.root={self.root} does not exist; point it at a folder laid out as <root>/<genre>/<file>.")
        return self.root

    def list(self) -> TrackList:
        root = self.folder()
        class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        files, labels, names = [], [], []
        for d in class_dirs:
            found = sorted(str(p.resolve()) for p in d.rglob("*") if is_audio_file(p))
            if not found:
                continue
            names.append(d.name)
            files += found
            labels += [len(names) - 1] * len(found)
        if len(names) < 2:
            raise MGRError(
                f"Found {len(names)} genre folder(s) with audio in {root}; need at least 2 folders "
                f"<root>/<genre>/ holding files with one of the extensions {', '.join(AUDIO_EXTENSIONS)}."
            )
        return TrackList(files, labels, names)


class SynthSource(FolderSource):
    """The generated dataset (see mgr.data.synth), written under `root` on first use."""

    name = "synth"

    def __init__(self, root: str, tracks_per_class: int = 40, seconds=(6.0, 10.0), seed: int = 0):
        super().__init__(root)
        self.settings = (int(tracks_per_class), (float(seconds[0]), float(seconds[1])), int(seed))
        tracks, secs, seed = self.settings
        if tracks < 1 or not 0 < secs[0] <= secs[1]:
            raise MGRError("data.source_options needs tracks_per_class >= 1 and 0 < seconds[0] <= seconds[1].")

    def folder(self) -> Path:
        return synth.generate(self.root, *self.settings)  # instant once generated


SOURCES = {s.name: s for s in (FolderSource, SynthSource)}


def build_source(name: str, root: str | None, options: dict) -> FolderSource:
    if name not in SOURCES:
        raise MGRError(f"Unknown data.source={name!r}; choose one of {sorted(SOURCES)}.")
    try:
        return SOURCES[name](root, **options)
    except TypeError as e:
        raise MGRError(f"Bad data.source_options for data.source={name}: {e}.") from None
