"""Files over HTTP: `fetch` downloads with a progress bar and resumes an interrupted download
with a Range request; `verify` checks a file against a published checksum and deletes it on a
mismatch. mgr.download fetches datasets with them, mgr.models.checkpoints checkpoint URLs."""

from __future__ import annotations

import hashlib
import http.client
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from mgr import MGRError

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
                raise MGRError(f"Downloading {url} failed with HTTP {e.code} {e.reason}; check the URL (for a dataset: its mirror=).") from None
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


def hasher(algorithm: str, size: int):
    """hashlib's `algorithm`, or for "git-blob" git's id of a file of `size` bytes (the sha1 of
    `blob <size>\\0` and the bytes): a commit's tree publishes it for every file of the commit."""
    if algorithm != "git-blob":
        return hashlib.new(algorithm)
    h = hashlib.sha1()
    h.update(b"blob %d\0" % size)
    return h


def verify(path: Path, checksum: str) -> None:
    """`checksum` is "<algorithm>:<hex digest>", a hashlib algorithm or git-blob."""
    algorithm, expected = checksum.split(":", 1)
    h = hasher(algorithm, path.stat().st_size)
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=f"Checking {path.name}") as bar:
        while block := f.read(CHUNK):
            h.update(block)
            bar.update(len(block))
    if h.hexdigest() != expected.lower():
        path.unlink()
        raise MGRError(f"{path.name} does not match its published {algorithm} checksum (got {h.hexdigest()}, "
                       f"expected {expected}); it was deleted, run the command again to download it anew.")
