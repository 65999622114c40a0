"""The public datasets' archives and how they are fetched (the command: python -m mgr.download).

NAME is gtzan, fma_small, fma_medium, fma_large (each with fma_metadata) or fma_metadata.

Each archive is downloaded to `<root>/.downloads/<name>.part` with a progress
bar, resumed with an HTTP Range request when interrupted (also on the next run),
checked against its published checksum, and extracted into a temporary folder
that is renamed into place only when complete. `mirror=URL` fetches
`URL/<archive name>` instead (an institutional copy, or a test server).
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mgr import MGRError
from mgr.remote import fetch, verify


@dataclass(frozen=True)
class Archive:
    url: str
    checksum: str  # "<algorithm>:<hex digest>" as published
    extracts_to: str  # the top-level folder the archive holds

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]


FMA = "https://os.unil.cloud.switch.ch/fma/"
ARCHIVES = {
    # GTZAN's home (opihi.cs.uvic.ca) is offline; the Internet Archive keeps the same file.
    "gtzan": Archive("https://web.archive.org/web/20220328223413/http://opihi.cs.uvic.ca/sound/genres.tar.gz",
                     "sha256:24347e0223d2ba798e0a558c4c172d9d4a19c00bb7963fe055d183dadb4ef2c6", "genres"),
    # Checksums from the FMA README (github.com/mdeff/fma).
    "fma_metadata": Archive(FMA + "fma_metadata.zip", "sha1:f0df49ffe5f2a6008d7dc83c6915b31835dfe733", "fma_metadata"),
    "fma_small": Archive(FMA + "fma_small.zip", "sha1:ade154f733639d52e35e32f5593efe5be76c6d70", "fma_small"),
    "fma_medium": Archive(FMA + "fma_medium.zip", "sha1:c67b69ea232021025fca9231fc1c7c1a063ab50b", "fma_medium"),
    "fma_large": Archive(FMA + "fma_large.zip", "sha1:497109f4dd721066b5ce5e5f250ec604dc78939e", "fma_large"),
}
# What each command fetches: an FMA audio set is useless without its metadata.
DATASETS = {"gtzan": ["gtzan"], "fma_metadata": ["fma_metadata"],
            "fma_small": ["fma_metadata", "fma_small"], "fma_medium": ["fma_metadata", "fma_medium"],
            "fma_large": ["fma_metadata", "fma_large"]}
def extract(archive: Path, into: Path, top: str) -> Path:
    """Unpack into a temporary folder, then move `top` into place in one rename."""
    tmp = into / f".{archive.name}.extracting"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
    else:
        with tarfile.open(archive) as t:
            t.extractall(tmp, filter="data")
    if not (tmp / top).is_dir():
        raise MGRError(f"{archive.name} does not hold the folder {top}/; is it the right archive?")
    (tmp / top).rename(into / top)
    shutil.rmtree(tmp)
    return into / top


def download(dataset: str, root: str | Path, mirror: str | None = None, keep_archives: bool = False) -> list[Path]:
    if dataset not in DATASETS:
        raise MGRError(f"Unknown dataset={dataset!r}; choose one of {', '.join(DATASETS)}.")
    root = Path(root).expanduser().resolve()
    done = []
    for name in DATASETS[dataset]:
        archive = ARCHIVES[name]
        if (root / archive.extracts_to).is_dir():
            print(f"{root / archive.extracts_to} exists; skipping {archive.filename}.")
            done.append(root / archive.extracts_to)
            continue
        url = f"{mirror.rstrip('/')}/{archive.filename}" if mirror else archive.url
        downloads = root / ".downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        target = downloads / archive.filename
        if not target.exists():
            fetch(url, target)
        verify(target, archive.checksum)
        done.append(extract(target, root, archive.extracts_to))
        if not keep_archives:
            target.unlink()
        print(f"{archive.filename}: verified and extracted to {done[-1]}")
    return done
