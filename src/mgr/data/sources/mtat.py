"""MagnaTagATune (Law et al., ISMIR 2009): 25,863 clips of about 29 s from 5,223 songs, each with
0/1 votes for 188 tags, so a multi-label source; the tagging literature scores its 50 most frequent
tags (Won et al. 2020, the short-chunk and musicnn models of mgr's zoo).

Under data.root: `annotations_final.csv` and the audio as mp3.zip unpacks it, 16 folders `0`..`9`,
`a`..`f` (directly under data.root or under `mp3/`, where `python -m mgr.download dataset=mtat` puts
them). Despite its name the annotation file is tab-separated, every field in double quotes, CRLF
lines: clip_id, the 188 tags (0/1), mp3_path (the clip below the audio folder:
`f/american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-30-59.mp3`).
The classes are the `top_k` (50) tags with the most clips (ties: the file's column order), named as
the header names them; a clip carrying none of them stays, negative for every tag.

The split, `folders`, is the folder rule many MagnaTagATune papers share (Dieleman & Schrauwen 2014,
Pons et al. 2018; see https://github.com/keunwoochoi/magnatagatune-list): folders 0-b train, c
validation, d-f test. Won et al. 2020 use Lee et al. 2017's file lists instead (split/mtat/*.npy of
https://github.com/minzwon/sota-music-tagging-models, entries `<row of binary.npy>\t<mp3_path>`),
which drop the clips with no top-50 tag and those under 29.1 s, so their numbers are not directly
comparable; mgr does not read them. The clips of one song form a group (the mp3 name without
`-<start>-<end>.mp3`): mgr's random splits and folds keep a song whole. Whether the folder rule does
is not documented; it is used as published, unchecked.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from mgr import MGRError
from mgr.data.sources.base import Source, TrackList, multi_hot

ANNOTATIONS = "annotations_final.csv"
FOLDERS = tuple("0123456789abcdef")
FOLDER_SIDES = {**{f: "train" for f in "0123456789ab"}, "c": "val", **{f: "test" for f in "def"}}
# The part of a clip's name after its song's: the seconds the clip spans (`-30-59.mp3`).
CLIP_SPAN = re.compile(r"-\d+-\d+\.mp3$")
HOMEPAGE = "https://mirg.city.ac.uk/codeapps/the-magnatagatune-dataset"


def read_annotations(path: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """The tag names, the [clips, tags] 0/1 votes and the mp3 paths of annotations_final.csv."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, [])
        if len(header) < 3 or header[0] != "clip_id" or header[-1] != "mp3_path":
            raise MGRError(f"{path} does not have the tab-separated header clip_id, <tags>, mp3_path; is it "
                           f"MagnaTagATune's {ANNOTATIONS} ({HOMEPAGE})?")
        rows = [row for row in reader if row]
    votes = np.array([[int(v) for v in row[1:-1]] for row in rows], dtype=np.int64).reshape(len(rows), -1)
    return header[1:-1], votes, [row[-1] for row in rows]


def top_tags(names: list[str], votes: np.ndarray, k: int) -> list[str]:
    """The k tags with the most clips, ties in the file's order."""
    order = np.argsort(-votes.sum(axis=0), kind="stable")
    return [names[i] for i in order[:k]]


def song_of(mp3_path: str) -> str:
    """A clip's song: its file name without the `-<start>-<end>.mp3` span."""
    return CLIP_SPAN.sub("", Path(mp3_path).name)


class MTATSource(Source):
    name = "mtat"
    shipped_split = "folders"
    title = "MagnaTagATune"
    group_noun = "songs"
    layout = f"<root>/{ANNOTATIONS} and <root>/<folder>/<clip>.mp3 (folders 0-9, a-f, or under <root>/mp3/)"
    download = "mtat"
    # By hand instead of mgr.download (advice() names the download while `download` is set):
    how_to_get = (f"download annotations_final.csv and the three parts of mp3.zip from {HOMEPAGE}, join the "
                  "parts (cat mp3.zip.* > mp3.zip) and unzip it")

    def __init__(self, root: str | None, top_k: int = 50):
        if not isinstance(top_k, int) or top_k < 1:
            raise MGRError(f"data.source_options.top_k={top_k!r}; give a positive number of tags (50: the "
                           "tagging literature's top 50).")
        super().__init__(root)
        self.top_k = top_k

    def audio_folder(self) -> Path:
        return self.find("mp3", ".", accept=lambda p: any((p / f).is_dir() for f in FOLDERS),
                         what="MagnaTagATune audio (folders 0-9, a-f of mp3.zip)")

    def list(self) -> TrackList:
        names, votes, paths = read_annotations(self.find(ANNOTATIONS, what=f"MagnaTagATune's {ANNOTATIONS}"))
        if self.top_k > len(names):
            raise MGRError(f"data.source_options.top_k={self.top_k} but {ANNOTATIONS} has {len(names)} tags; "
                           f"choose at most {len(names)}.")
        audio = self.audio_folder()
        tags = sorted(top_tags(names, votes, self.top_k))
        column = {n: i for i, n in enumerate(names)}
        clip_tags = [[t for t in tags if votes[c, column[t]]] for c in range(len(paths))]
        files, known_bad = [], {}
        for p in paths:
            path = audio / p
            files.append(str(path.resolve()))
            if not path.exists():
                known_bad[files[-1]] = f"missing: listed in {ANNOTATIONS} but not under {audio}"
        return TrackList(files, multi_hot(clip_tags, tags), tags, groups=[song_of(p) for p in paths],
                         given_splits=[FOLDER_SIDES.get(p.split("/")[0]) for p in paths], known_bad=known_bad)

    def leak_groups(self, tracks: TrackList, split, folds: int | None = None) -> list[str] | None:
        # The folder rule is the literature's split as published; mgr's own splits keep songs whole.
        return None if split in (None, self.shipped_split) and folds is None else tracks.groups
