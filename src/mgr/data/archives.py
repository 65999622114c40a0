"""The public datasets and how they are fetched (the command: python -m mgr.download).

NAME is gtzan, fma_small, fma_medium, fma_large (each with fma_metadata), fma_metadata,
mtg_jamendo, mtg_jamendo_low (each with mtg_jamendo_metadata), mtg_jamendo_metadata, or mtat.

A dataset is a list of parts (DATASETS), each part a few downloadable items of four kinds:

- Archive: an archive with a published checksum, holding one folder (GTZAN, FMA);
- File: a plain file, checked against a checksum where one is known (MTG-Jamendo's metadata, by the
  git blob ids of a pinned commit listed in mtg_jamendo_files.txt; MagnaTagATune's annotations: none);
- TarSet: tars whose sha256s come from a fetched list, each holding one folder (MTG-Jamendo's audio);
- SplitZip: the byte parts of one zip, joined and extracted (MagnaTagATune's audio: no checksum is
  published, so the checks are each part's full length and the CRC-32 of every member of the zip).

Each download goes to `<root>/.downloads/` with a progress bar, is resumed with an HTTP Range
request when interrupted (also on the next run) and checked; only then is it put in place: a file
in one rename, an archive extracted into a temporary folder that is renamed into place when
complete. What is in place already is skipped. `mirror=URL` fetches `URL/<file name>` instead (an
institutional copy, or a test server); MTG-Jamendo's metadata files from `URL/<path in its
repository>`, e.g. `URL/data/splits/split-0/autotagging_genre-test.tsv`.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mgr import MGRError
from mgr.data.sources.mtat import FOLDERS as MTAT_FOLDERS
from mgr.remote import fetch, verify


@dataclass(frozen=True)
class Destination:
    """Where the items of one command go (root), and where from (mirror=)."""
    root: Path
    mirror: str | None = None
    keep_archives: bool = False

    @property
    def downloads(self) -> Path:
        return self.root / ".downloads"

    def fetched(self, url: str, name: str) -> Path:
        """<root>/.downloads/<name>: fetched from `url` (or mirror=URL/<name>) unless an earlier run
        left it whole (fetch renames a download to its name only once complete)."""
        target = self.downloads / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fetch(f"{self.mirror.rstrip('/')}/{name}" if self.mirror else url, target)
        return target

    def done_with(self, archive: Path) -> None:
        if not self.keep_archives:
            archive.unlink()


class Item:
    """Something to download: `check` runs for every item of a dataset before any is fetched; `get`
    fetches it, checks it and puts it in place (or finds it there), and returns where it is."""

    def check(self, to: Destination) -> None:
        """Refuse, before anything of the dataset is downloaded, what cannot end well (most: nothing)."""

    def get(self, to: Destination) -> Path:
        raise NotImplementedError


@dataclass(frozen=True)
class Archive(Item):
    """An archive with a published checksum that holds the folder `extracts_to`."""
    url: str
    checksum: str  # "<algorithm>:<hex digest>" as published
    extracts_to: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]

    def get(self, to: Destination, into: Path | None = None) -> Path:
        """The folder, at <into (default: root)>/<extracts_to>."""
        into = into or to.root
        if (into / self.extracts_to).is_dir():
            print(f"{into / self.extracts_to} exists; skipping {self.filename}.")
            return into / self.extracts_to
        archive = to.fetched(self.url, self.filename)
        verify(archive, self.checksum)
        folder = extract(archive, into, self.extracts_to)
        to.done_with(archive)
        print(f"{self.filename}: verified and extracted to {folder}")
        return folder


@dataclass(frozen=True)
class File(Item):
    """A plain file that goes to <root>/<path>; `path` is also its name under mirror=."""
    url: str
    path: str
    checksum: str | None = None  # None: none is published; fetch's check of the full length is all

    def get(self, to: Destination) -> Path:
        place = to.root / self.path
        if place.is_file():
            return place
        download = to.fetched(self.url, self.path)
        if self.checksum:
            verify(download, self.checksum)
        place.parent.mkdir(parents=True, exist_ok=True)
        download.rename(place)
        with contextlib.suppress(OSError):  # the folders it was fetched into (.downloads/data/splits/...), now empty
            for folder in Path(self.path).parents[:-1]:
                (to.downloads / folder).rmdir()
        print(f"{self.path}: {'verified and ' if self.checksum else ''}saved to {place}")
        return place


@dataclass(frozen=True)
class TarSet(Item):
    """Tars listed with their sha256s in the file `checksums` (`<sha256> <name>` lines), each named
    `...-NN.tar` and holding the one folder NN/, which goes to <root>/<extracts_to>/NN. A folder there
    already is skipped, so a second run costs nothing. `low_quality`: the tars hold MTG-Jamendo's
    low-quality copies (`NN/<id>.low.mp3`), which cannot share folders with the full-quality files."""
    checksums: File
    url: str  # the folder the tars are in
    extracts_to: str
    low_quality: bool = False

    def check(self, to: Destination) -> None:
        into = to.root / self.extracts_to
        other = next((f for f in into.glob("*/*.mp3") if f.name.endswith(".low.mp3") != self.low_quality), None)
        if other is not None:
            raise MGRError(f"{into} holds MTG-Jamendo's {'full' if self.low_quality else 'low'}-quality audio "
                           f"({other.relative_to(into)}) and both qualities would share its folders; "
                           f"give the {'low' if self.low_quality else 'full'}-quality audio a root= of its own.")

    def archives(self, to: Destination) -> list[Archive]:
        listed = [line.split() for line in self.checksums.get(to).read_text().splitlines() if line.strip()]
        return [Archive(self.url + name, f"sha256:{digest}", re.search(r"-(\d+)\.tar$", name)[1])
                for digest, name in listed]

    def get(self, to: Destination) -> Path:
        into = to.root / self.extracts_to
        archives = self.archives(to)
        missing = [a for a in archives if not (into / a.extracts_to).is_dir()]
        print(f"{into}: {len(archives) - len(missing)} of {len(archives)} folders there; fetching {len(missing)} tars.")
        for archive in missing:
            archive.get(to, into)
        return into


@dataclass(frozen=True)
class SplitZip(Item):
    """One zip cut into byte parts (`<url>.001`, `.002`, ...), joined and unpacked; its top-level
    `folders` go into <root>/<extracts_to>. No checksum is published: the checks are each part's
    full length (fetch) and the CRC-32 of every member (zipfile, while extracting)."""
    url: str
    parts: int
    extracts_to: str
    folders: tuple[str, ...]

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]

    def get(self, to: Destination) -> Path:
        if (to.root / self.extracts_to).is_dir():
            print(f"{to.root / self.extracts_to} exists; skipping {self.filename}.")
            return to.root / self.extracts_to
        parts = [to.fetched(f"{self.url}.{n:03d}", f"{self.filename}.{n:03d}") for n in range(1, self.parts + 1)]
        joined = to.downloads / self.filename
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out)
        try:
            folder = extract(joined, to.root, self.extracts_to, bare_folders=self.folders)
        except (zipfile.BadZipFile, zlib.error) as e:  # a damaged byte: a CRC-32 or the zip's structure
            for file in (joined, *parts):  # which part holds it is unknown
                file.unlink()
            raise MGRError(f"{self.filename}, joined from {', '.join(p.name for p in parts)}, is damaged ({e}); "
                           "no checksum is published to tell which part, so all were deleted: run the command "
                           "again to download them anew.") from None
        joined.unlink()  # the parts are what was downloaded: keep_archives keeps them
        for part in parts:
            to.done_with(part)
        print(f"{self.filename}: joined, extracted (every member's CRC-32 checked) to {folder}")
        return folder


def unpack(archive: Path, into: Path) -> None:
    into.mkdir(parents=True)
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            z.extractall(into)  # checks each member's CRC-32
    else:
        with tarfile.open(archive) as t:
            t.extractall(into, filter="data")


def extract(archive: Path, into: Path, top: str, bare_folders: tuple[str, ...] = ()) -> Path:
    """Unpack into a temporary folder, then move `top` into place in one rename. An archive without a
    folder of its own, whose top level is `bare_folders`, is unpacked into `top`."""
    tmp = into / f".{archive.name}.extracting"
    shutil.rmtree(tmp, ignore_errors=True)
    unpacked = tmp / top if bare_folders else tmp
    try:
        unpack(archive, unpacked)
        missing = [f"{folder}/" for folder in bare_folders or (top,) if not (unpacked / folder).is_dir()]
        if missing:
            raise MGRError(f"{archive.name} does not hold the folder {', '.join(missing)}; is it the right archive?")
        (tmp / top).rename(into / top)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return into / top


# --- the datasets -------------------------------------------------------------------------------

FMA = "https://os.unil.cloud.switch.ch/fma/"
# The MTG-Jamendo repository pinned to one commit, whose files' git blob ids mgr ships.
MTG_COMMIT = "1b4fa8c32e076c73b5175c1703ae805b4109309d"
MTG_RAW = f"https://raw.githubusercontent.com/MTG/mtg-jamendo-dataset/{MTG_COMMIT}/"
MTG_MANIFEST = Path(str(resources.files("mgr.data") / "mtg_jamendo_files.txt"))
# The "mtg-fast" server of the repository's scripts/download/download.py.
MTG_AUDIO = "https://cdn.freesound.org/mtg-jamendo/raw_30s/"
MTAT = "https://mirg.city.ac.uk/datasets/magnatagatune/"


def read_manifest(path: Path) -> dict[str, str]:
    """Path -> checksum ("git-blob:<id>") of a manifest's `<git blob id> <path>` lines (# comments)."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {file: f"git-blob:{blob}" for blob, file in lines}


def mtg_jamendo_parts(manifest: dict[str, str]) -> dict[str, tuple[Item, ...]]:
    """MTG-Jamendo's parts: the split files (data/splits/...) and the audio of each quality, whose
    tars' sha256 list is a file of the repository; every repository file checked against `manifest`."""
    def file(path: str) -> File:
        return File(MTG_RAW + path, path, manifest[path])

    def audio(kind: str) -> TarSet:  # kind: audio or audio-low, as the repository names them
        return TarSet(file(f"data/download/raw_30s_{kind}_sha256_tars.txt"), f"{MTG_AUDIO}{kind}/", "audio",
                      low_quality=kind == "audio-low")

    return {"mtg_jamendo_metadata": tuple(file(p) for p in manifest if p.startswith("data/splits/")),
            "mtg_jamendo_audio": (audio("audio"),), "mtg_jamendo_audio_low": (audio("audio-low"),)}


PARTS: dict[str, tuple[Item, ...]] = {
    # GTZAN's home (opihi.cs.uvic.ca) is offline; the Internet Archive keeps the same file.
    "gtzan": (Archive("https://web.archive.org/web/20220328223413/http://opihi.cs.uvic.ca/sound/genres.tar.gz",
                      "sha256:24347e0223d2ba798e0a558c4c172d9d4a19c00bb7963fe055d183dadb4ef2c6", "genres"),),
    # Checksums from the FMA README (github.com/mdeff/fma).
    "fma_metadata": (Archive(FMA + "fma_metadata.zip", "sha1:f0df49ffe5f2a6008d7dc83c6915b31835dfe733", "fma_metadata"),),
    "fma_small": (Archive(FMA + "fma_small.zip", "sha1:ade154f733639d52e35e32f5593efe5be76c6d70", "fma_small"),),
    "fma_medium": (Archive(FMA + "fma_medium.zip", "sha1:c67b69ea232021025fca9231fc1c7c1a063ab50b", "fma_medium"),),
    "fma_large": (Archive(FMA + "fma_large.zip", "sha1:497109f4dd721066b5ce5e5f250ec604dc78939e", "fma_large"),),
    **mtg_jamendo_parts(read_manifest(MTG_MANIFEST)),
    "mtat_annotations": (File(MTAT + "annotations_final.csv", "annotations_final.csv"),),
    "mtat_audio": (SplitZip(MTAT + "mp3.zip", 3, "mp3", MTAT_FOLDERS),),
}
# What each command fetches: audio is useless without its metadata.
DATASETS = {"gtzan": ["gtzan"], "fma_metadata": ["fma_metadata"],
            "fma_small": ["fma_metadata", "fma_small"], "fma_medium": ["fma_metadata", "fma_medium"],
            "fma_large": ["fma_metadata", "fma_large"],
            "mtg_jamendo_metadata": ["mtg_jamendo_metadata"],
            "mtg_jamendo": ["mtg_jamendo_metadata", "mtg_jamendo_audio"],
            "mtg_jamendo_low": ["mtg_jamendo_metadata", "mtg_jamendo_audio_low"],
            "mtat": ["mtat_annotations", "mtat_audio"]}


def download(dataset: str, root: str | Path, mirror: str | None = None, keep_archives: bool = False) -> list[Path]:
    if dataset not in DATASETS:
        raise MGRError(f"Unknown dataset={dataset!r}; choose one of {', '.join(DATASETS)}.")
    to = Destination(Path(root).expanduser().resolve(), mirror, keep_archives)
    items = [item for part in DATASETS[dataset] for item in PARTS[part]]
    for item in items:
        item.check(to)
    return [item.get(to) for item in items]
