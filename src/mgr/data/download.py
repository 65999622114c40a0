"""Fetch a public dataset: python -m mgr.data.download dataset=NAME root=PATH

NAME is gtzan, fma_small, fma_medium, fma_large (each with fma_metadata) or fma_metadata.

Each archive is downloaded to `<root>/.downloads/<name>.part` with a progress
bar, resumed with an HTTP Range request when interrupted (also on the next run),
checked against its published checksum, and extracted into a temporary folder
that is renamed into place only when complete. `mirror=URL` fetches
`URL/<archive name>` instead (an institutional copy, or a test server).
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig
from tqdm import tqdm

from mgr import MGRError
from mgr.utils.tasks import require, task


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
RETRIES = 3
CHUNK = 1 << 20


def fetch(url: str, target: Path, retries: int = RETRIES) -> Path:
    """Download `url` to `target`, resuming `target.part` left by an earlier attempt."""
    part = target.with_name(target.name + ".part")
    for attempt in range(1, retries + 1):
        try:
            _fetch_once(url, part)
            part.rename(target)
            return target
        except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, a dropped connection
            if isinstance(e, urllib.error.HTTPError) and e.code not in (408, 429, 500, 502, 503, 504):
                raise MGRError(f"Downloading {url} failed with HTTP {e.code} {e.reason}; check the URL or mirror=.") from None
            if attempt == retries:
                raise MGRError(f"Downloading {url} failed ({e}); run the same command again to resume.") from None
            print(f"Connection lost ({e}); resuming ({attempt}/{retries - 1})...", file=sys.stderr)
            time.sleep(attempt)
    raise AssertionError("unreachable")


def _fetch_once(url: str, part: Path) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to fetch: the part is complete
            return
        raise
    with response:
        if have and response.status != 206:  # the server ignores Range: start over
            have = 0
        total = response.headers.get("Content-Length")
        total = int(total) + have if total is not None else None
        with open(part, "ab" if have else "wb") as out, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name[:-5]
        ) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:
        raise ConnectionError(f"connection closed at {size} of {total} bytes")


def verify(path: Path, checksum: str) -> None:
    algorithm, expected = checksum.split(":", 1)
    h = hashlib.new(algorithm)
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=f"Checking {path.name}") as bar:
        while block := f.read(CHUNK):
            h.update(block)
            bar.update(len(block))
    if h.hexdigest() != expected.lower():
        path.unlink()
        raise MGRError(f"{path.name} does not match its published {algorithm} checksum (got {h.hexdigest()}, "
                       f"expected {expected}); it was deleted, run the command again to download it anew.")


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


USAGE = f"python -m mgr.data.download dataset={'|'.join(DATASETS)} root=PATH [mirror=URL] [keep_archives=true]"


@task
def download_command(cfg: DictConfig) -> list[Path]:
    require(cfg, "dataset", "root", usage=USAGE)
    return download(str(cfg.dataset), str(cfg.root), cfg.mirror, bool(cfg.keep_archives))


@hydra.main(version_base="1.3", config_path="pkg://mgr.conf", config_name="download")
def main(cfg: DictConfig) -> None:
    download_command(cfg)


if __name__ == "__main__":
    main()
