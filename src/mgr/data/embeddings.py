"""The embedding cache: a frozen encoder's layers for every chunk, computed once.

A probe of a frozen pretrained encoder (`model=probe`) would run the encoder on every chunk of
every epoch, and a sweep over layers or learning rates would run it again per run. Instead its
embeddings are computed once per chunk and memory-mapped, like the waveform cache they come from:
a probe then trains in seconds, and every layer choice of a sweep reads the same cache.

What is cached: every layer the encoder exposes (so `encoder.layer` can change freely), for the
chunks evaluation scores (`EvenChunks`: the evenly spaced chunks that cover each track; with
data.eval_max_chunks, also those). Training reads every chunk of its tracks once per epoch, in a
random order: epochs sized by the audio, where the waveform path draws random crops.

The folder's name carries a key over what determines the values: the waveform cache (itself keyed
by the file list and decode settings), the chunk length, and the encoder's identity (its name,
settings and weights' sha256; `identity` of mgr.encoders.pretrained.PretrainedEncoder).

Building is crash-safe and resumable: chunk rows are appended to one file per layer, and
`meta.json`, written atomically after the rows are on disk, says how many rows count and holds
each file's CRC-32 over them. A killed build resumes at the last committed row; a later run that
needs chunks the cache lacks (another eval_max_chunks) appends only those. A file lock lets one
process build while others wait.

A cache is never trusted blindly, as the waveform cache is not: opening one checks its files'
sizes and its chunk positions' checksum; each layer's checksum is checked the first time a process
reads that layer, never per batch. A build checks every file, once per run before training reads
any, and computes a damaged cache again; a mismatch found while reading stops the run, naming the
folder to delete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from filelock import FileLock
from torch.utils.data import Dataset
from tqdm import tqdm

from mgr.data.cache import CacheDamaged, WaveformCache, checksum
from mgr.data.datasets import cache_chunk

log = logging.getLogger(__name__)

EMBEDDINGS_VERSION = 1  # in the key: changes only when the stored values would differ
META = "meta.json"
ITEMS = "items.i64"  # (track, start sample) per row
COMMIT_SECONDS = 2.0  # how much extraction a kill can lose

LayersFn = Callable[[torch.Tensor], list[torch.Tensor]]  # waveform [B, T] -> layers [B, D_i]


def embeddings_key(waveforms: WaveformCache, chunk: int, identity: dict) -> str:
    text = json.dumps({"v": EMBEDDINGS_VERSION, "waveforms": waveforms.directory.name, "chunk": chunk,
                       "encoder": identity}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


class ChunkEmbeddings:
    """Read access to a built embedding cache; `ChunkEmbeddings.build` makes, extends or finds one."""

    def __init__(self, directory: str | Path):
        """Opens a cache, raising CacheDamaged unless its files hold the rows its meta counts and its
        chunk positions match their checksum."""
        self.directory = Path(directory)
        try:
            self.meta: dict = json.loads((self.directory / META).read_text())
            self.layer_dims: list[int] = [int(d) for d in self.meta["layer_dims"]]
            self.n_rows = int(self.meta["rows"])
            # one per file of _files(); None: written before mgr recorded checksums
            self.checksums: list[int] | None = self.meta.get("crc32")
        except (OSError, ValueError, KeyError, TypeError):
            raise self._damaged(f"its {META} is missing or cannot be read") from None
        if self.checksums is not None and len(self.checksums) != len(self._files()):
            raise self._damaged(f"its {META} does not give one checksum per file")
        for path, width in self._files():
            size = path.stat().st_size if path.exists() else 0
            if size < self.n_rows * width * _itemsize(path):
                raise self._damaged(f"{path.name} holds fewer rows than {META} says")
        items = self._items()
        self._check(0, items)  # a wrong position would feed a chunk another chunk's row
        self.row_of: dict[tuple[int, int], int] = {(int(t), int(s)): r for r, (t, s) in enumerate(items)}
        self._layers: list[np.ndarray] | None = None
        self._verified: set[int] = set()  # layers whose checksum this process has checked

    def _files(self) -> list[tuple[Path, int]]:
        return [(self.directory / ITEMS, 2)] + [(self.directory / f"layer{i}.f32", d) for i, d in enumerate(self.layer_dims)]

    def _damaged(self, reason: str) -> CacheDamaged:
        return CacheDamaged(f"The embedding cache {self.directory} is damaged: {reason}; delete that folder and the "
                            "next run computes it again.", reason)

    def _items(self) -> np.ndarray:
        return np.fromfile(self.directory / ITEMS, dtype=np.int64, count=2 * self.n_rows).reshape(-1, 2) \
            if self.n_rows else np.zeros((0, 2), np.int64)

    def _check(self, file: int, rows: np.ndarray) -> None:
        """Raise CacheDamaged unless the committed `rows` of file `file` of _files() match their checksum."""
        if self.checksums is not None and checksum(rows) != self.checksums[file]:
            raise self._damaged(f"{self._files()[file][0].name} does not match the checksum written when it "
                                "was computed")

    def layer(self, i: int) -> np.ndarray:
        """Layer i of every committed row, [rows, layer_dims[i]], memory-mapped. The first read of a
        layer in a process checks its checksum (the whole layer, once)."""
        if self._layers is None:
            self._layers = [np.memmap(self.directory / f"layer{k}.f32", dtype=np.float32, mode="r",
                                      shape=(self.n_rows, d)) if self.n_rows else np.zeros((0, d), np.float32)
                            for k, d in enumerate(self.layer_dims)]
        if i not in self._verified:
            self._check(1 + i, self._layers[i])
            self._verified.add(i)
        return self._layers[i]

    def verify(self) -> None:
        """Check every layer's checksum (reads the whole cache)."""
        for i in range(len(self.layer_dims)):
            self.layer(i)

    def record_checksums(self) -> None:
        """Upgrade a cache written before checksums (its sizes already checked): compute and store them."""
        started = time.monotonic()
        self.checksums = [checksum(self._items())] + [checksum(self.layer(i)) for i in range(len(self.layer_dims))]
        self.meta = {**self.meta, "crc32": self.checksums}
        _write_meta(self.directory, self.meta)
        log.warning("The embedding cache %s was written before mgr recorded checksums: its files hold the rows its "
                    "meta counts, so their checksums were recorded now (%.1f s); delete it to compute it anew if "
                    "it was ever damaged.", self.directory, time.monotonic() - started)

    def rows(self, items: list[tuple[int, int]]) -> np.ndarray:
        """The row of each (track, start) chunk."""
        return np.array([self.row_of[(int(t), int(s))] for t, s in items], dtype=np.int64)

    def __getstate__(self):
        # DataLoader workers and spawned DDP ranks re-open the memmaps. They keep the layers checked
        # here: the same read-only files, checked in this run (a build checks every layer), so
        # that a worker started each epoch does not read the whole layer again.
        return {**self.__dict__, "_layers": None}

    @classmethod
    def build(cls, waveforms: WaveformCache, wanted: list[tuple[int, int]], chunk: int, identity: dict,
              layer_dims: list[int], layers_of: LayersFn, cache_root: str | Path, *, device: torch.device,
              batch_size: int = 32, name: str = "encoder") -> "ChunkEmbeddings":
        """The cache of `identity`'s embeddings of the `wanted` (track, start) chunks of `waveforms`,
        computing (on `device`) only the chunks it lacks."""
        directory = Path(cache_root) / "embeddings" / f"{waveforms.directory.name}-{name}-" \
            f"{embeddings_key(waveforms, chunk, identity)}"
        directory.mkdir(parents=True, exist_ok=True)
        with FileLock(str(directory) + ".lock"):
            empty = {"version": EMBEDDINGS_VERSION, "encoder": identity, "chunk": chunk, "waveforms": str(waveforms.directory),
                     "layer_dims": list(layer_dims), "rows": 0, "crc32": [0] * (1 + len(layer_dims))}  # CRC-32 of nothing
            store = cls._verified_or_emptied(directory, empty)
            if store.layer_dims != list(layer_dims):
                raise store._damaged(f"its layer widths {store.layer_dims} are not the encoder's {list(layer_dims)}")
            todo = list(dict.fromkeys((int(t), int(s)) for t, s in wanted if (int(t), int(s)) not in store.row_of))
            if todo:
                _extend(store, todo, waveforms, chunk, layers_of, device, batch_size, name)
                store = cls(directory)
        return store

    @classmethod
    def _verified_or_emptied(cls, directory: Path, empty: dict) -> "ChunkEmbeddings":
        """The cache in `directory` with every file checked, or, when there is none or it is damaged,
        an empty one to compute (a damaged cache's rows are all computed again: the encoder gives
        every layer of a chunk at once, so there is nothing to gain from keeping intact layers)."""
        if not (directory / META).exists():
            _write_meta(directory, empty)
        try:
            store = cls(directory)
            if store.checksums is None:
                store.record_checksums()
            store.verify()
            return store
        except CacheDamaged as e:
            log.warning("The embedding cache %s is damaged: %s; computing its chunks again.", directory, e.reason)
            _write_meta(directory, empty)
            return cls(directory)


def _extend(store: ChunkEmbeddings, todo, waveforms, chunk, layers_of, device, batch_size, name) -> None:
    """Append the rows of `todo` after the committed ones, committing every few seconds."""
    rows = store.n_rows
    sums = list(store.checksums)  # over the committed rows, carried on over the appended ones
    handles = []
    for path, width in store._files():  # drop rows a killed build wrote but never committed
        f = open(path, "r+b" if path.exists() else "w+b")
        f.truncate(rows * width * _itemsize(path))
        f.seek(0, os.SEEK_END)
        handles.append(f)
    done = 0
    desc = f"Embedding chunks with {name}" + (f" (resumed after {rows})" if rows else "")
    last_commit = time.monotonic()
    try:
        with tqdm(total=len(todo), desc=desc, unit="chunk", smoothing=0.1) as bar, torch.inference_mode():
            for begin in range(0, len(todo), batch_size):
                batch = todo[begin:begin + batch_size]
                wave = torch.stack([cache_chunk(waveforms, t, s, chunk) for t, s in batch]).to(device)  # float32
                layers = layers_of(wave)
                values = [np.asarray(batch, dtype=np.int64).tobytes()] + \
                    [layer.float().cpu().numpy().astype(np.float32, copy=False).tobytes() for layer in layers]
                for k, (f, data) in enumerate(zip(handles, values)):
                    f.write(data)
                    sums[k] = checksum(data, sums[k])
                done += len(batch)
                bar.update(len(batch))
                if time.monotonic() - last_commit > COMMIT_SECONDS or done == len(todo):
                    _commit(store, handles, rows + done, sums)
                    last_commit = time.monotonic()
    finally:
        for f in handles:
            f.close()
    log.info("Embeddings of %d chunks written to %s.", done, store.directory)


def _itemsize(path: Path) -> int:
    return 8 if path.name == ITEMS else 4  # int64 items, float32 layers


def _commit(store: ChunkEmbeddings, handles, rows: int, sums: list[int]) -> None:
    # The rows reach the disk before the meta that counts them and vouches for them.
    for f in handles:
        f.flush()
        os.fsync(f.fileno())
    _write_meta(store.directory, {**store.meta, "rows": rows, "crc32": sums})


def _write_meta(directory: Path, meta: dict) -> None:
    tmp = directory / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, directory / META)


class EmbeddedChunks(Dataset):
    """The chunks of a chunk dataset (`items`: (position in `tracks`, start) as EvenChunks lists them),
    as their cached layers: an item is (layers [len(layers), D], label, position), in the same order
    and with the same labels and positions as the waveform dataset it replaces."""

    def __init__(self, store: ChunkEmbeddings, tracks: list[int], labels: list[int], items: list[tuple[int, int]],
                 layers: list[int]):
        self.store, self.layers = store, list(layers)
        self.positions = [k for k, _ in items]
        self.labels = [labels[tracks[k]] for k, _ in items]
        self.row = store.rows([(tracks[k], s) for k, s in items])

    def __len__(self) -> int:
        return len(self.row)

    def __getitem__(self, i: int):
        r = self.row[i]
        layers = torch.from_numpy(np.stack([self.store.layer(j)[r] for j in self.layers]))
        return layers, self.labels[i], self.positions[i]
