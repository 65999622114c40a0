"""Chunks drawn where the waveform cache lives (data.on_device): whole batches gathered by index
arithmetic from one tensor of every stored sample, in the training process, with no DataLoader
worker and no Python per chunk.

Where the samples live (`choose_home`): on a GPU, in its memory where the cache takes at most
half of what is free; otherwise (and on the CPU) in host memory, where the cache's memory map is
the tensor itself (no copy: the OS pages it in) and only each batch is copied to the device. A
cache that fits in neither keeps today's loaders (mgr.data.datasets through a DataLoader).

`DeviceChunks` serves the datasets the data module builds (RandomChunks, EvenChunks) with their
semantics: the same items (crops per track, evaluation's evenly spaced chunks), the same batches
as the stored samples (a compact cache's `Stored` pairs, dequantised on the model's device), the
same DDP shares (training: DistributedSampler's padded share of one permutation; evaluation:
disjoint unpadded shares, a rank without chunks scoring one PADDING_LABEL chunk, as
mgr.data.datamodule._shard gives them).

One difference, by design: where today's RandomChunks draws each crop's start from the torch RNG
of whichever process reads it (the DataLoader worker's, seeded by Lightning), here an epoch's
order and crop starts are a function of (PL_GLOBAL_SEED, epoch) alone: the same on every run and
on a resumed one, whatever the number of workers. The order is DistributedSampler's (its seeded
permutation, also on one process, where today's loader uses RandomSampler), so under DDP the
ranks read the items today's do, each cropped at other starts. Evaluation chunks and batches are
exactly today's.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from mgr import MGRError
from mgr.data.cache import DTYPES, WaveformCache, _size
from mgr.data.datasets import RandomChunks, Stored
from mgr.labels import PADDING_LABEL

log = logging.getLogger(__name__)

ON_DEVICE = ("auto", True, False)  # data.on_device
MEMORY_SHARE = 0.5  # of a device's free (or the host's available) memory the cache may take: the rest is training's


def check_on_device(setting) -> None:
    if isinstance(setting, (int, float)) and not isinstance(setting, bool) or setting not in ON_DEVICE:
        raise MGRError(f"data.on_device must be auto (where the waveform cache fits in memory), true or false; "
                       f"got {setting!r}.")


def host_memory_available() -> int:
    """Bytes the host can give without swapping (Linux's MemAvailable: free plus reclaimable page cache),
    or its physical memory where /proc/meminfo is absent."""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_budget(home: torch.device) -> tuple[int, str]:
    """The bytes the cache may take on `home` (a GPU or the host, "cpu"), and what they are, in words."""
    if home.type == "cuda":
        free, _ = torch.cuda.mem_get_info(home)
        return int(free * MEMORY_SHARE), f"{MEMORY_SHARE:.0%} of the {_size(free)} free on {home}"
    available = host_memory_available()
    return int(available * MEMORY_SHARE), f"{MEMORY_SHARE:.0%} of the {_size(available)} of host memory available"


def cache_bytes(cache: WaveformCache) -> int:
    return cache.itemsize * int(cache.lengths.sum())


def choose_home(setting, cache: WaveformCache, device: torch.device) -> torch.device | None:
    """Where the cache's samples are to live for a run on `device` (data.on_device): the GPU where they fit
    there, else the host where they fit there, else None (today's loaders), said in one log line;
    data.on_device=true where they fit nowhere stops the run."""
    if setting is False:
        return None
    need = cache_bytes(cache)
    homes = [device, torch.device("cpu")] if device.type == "cuda" else [torch.device("cpu")]
    budgets = []
    for home in homes:
        budget, what = memory_budget(home)
        if need <= budget:
            copied = "" if home == device else f", each batch copied to {device}"
            log.info("Chunks drawn on %s by index from the waveform cache (%s of %s, within %s)%s, without "
                     "DataLoader workers (data.on_device=%s).", home, _size(need), cache.dtype, what, copied,
                     "true" if setting is True else setting)
            return home
        budgets.append(what)
    where = " nor in ".join(budgets)
    if setting is True:
        smaller = ", or store it in half the bytes with data.cache_dtype=int16" if cache.dtype == "float32" else ""
        raise MGRError(f"data.on_device=true, but the waveform cache ({_size(need)} of {cache.dtype}) does not fit in "
                       f"{where}: set data.on_device=auto or false to read it with DataLoader workers{smaller}.")
    log.info("Chunks read by DataLoader workers: the waveform cache (%s of %s) does not fit in %s (data.on_device=auto).",
             _size(need), cache.dtype, where)
    return None


class ResidentSamples:
    """Every stored sample of a waveform cache as one flat tensor on `home`, with each file's offset,
    length and step (scale / 32767 for int16) there: what `chunks` cuts batches from."""

    def __init__(self, cache: WaveformCache, home: torch.device):
        self.cache, self.home = cache, home
        self._flat: torch.Tensor | None = None  # placed at the first batch: a loader only measured costs nothing
        self.offsets = torch.as_tensor(cache.offsets, device=home)
        self.lengths = torch.as_tensor(cache.lengths, device=home)
        self.steps = None if cache.dtype == "float32" else \
            torch.tensor([cache.step(i) for i in range(len(cache.files))], dtype=torch.float32, device=home)

    @property
    def flat(self) -> torch.Tensor:
        if self._flat is None:
            usable = np.flatnonzero(self.cache.lengths > 0)
            for i in usable:  # each file's checksum, once, as the loaders' first read of a file checks it
                self.cache.waveform(int(i))
            # Copy-on-write ("c"): a writable mapping, which torch takes without a copy, and nothing writes to.
            data = np.memmap(self.cache.data_path, dtype=DTYPES[self.cache.dtype], mode="c") if len(usable) else \
                np.zeros(0, DTYPES[self.cache.dtype])
            self._flat = torch.from_numpy(data).to(self.home)
        return self._flat

    def chunks(self, tracks: torch.Tensor, starts: torch.Tensor, length: int, padded: bool) -> torch.Tensor | Stored:
        """The `length` samples of each of `tracks` from its start, as mgr.data.datasets.cache_chunk cuts them
        with `stored` (float32, or a compact cache's samples and steps). `padded`: some track may be shorter
        than `length`, and gets zeros past its end."""
        offsets = self.offsets[tracks]
        if padded:
            samples = self._padded(offsets, self.lengths[tracks], starts, length)
        else:  # each chunk a row of one strided view of the samples: a batch is one copy, no index per sample
            windows = self.flat.as_strided((len(self.flat) - length + 1, length), (1, 1))
            samples = torch.index_select(windows, 0, offsets + starts)  # twice as fast here as windows[...]
        return samples if self.steps is None else Stored(samples, self.steps[tracks])

    def _padded(self, offsets, lengths, starts, length):
        """Chunks by one index per sample, those past a track's end read at its last sample, then zeroed."""
        position = starts[:, None] + torch.arange(length, device=self.home)
        ends = lengths[:, None]
        samples = self.flat[offsets[:, None] + position.minimum(ends - 1)]
        return samples.masked_fill_(position >= ends, 0)


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochOrder:
    """Which items of an epoch this rank reads, in order, and (for random crops) where each item's crop
    starts: the `sampler` Lightning calls set_epoch on. Shuffled, the order is DistributedSampler's for
    (seed, epoch) (one permutation of all items, padded by repeating its head to a multiple of the ranks,
    every world_size-th from the rank's own), and crop starts are drawn for all items from the same
    generator, so they depend on (seed, epoch) alone. In order (evaluation): the rank's every
    world_size-th item, unpadded (see mgr.data.datamodule._shard).

    Each draw reads the epoch set last and moves on to the next one, so that a loader read again without
    set_epoch (outside Lightning) reshuffles as a DataLoader's RandomSampler does, while Lightning's
    set_epoch before every epoch (a resumed one too) names each epoch's draw."""

    def __init__(self, items: int, shuffle: bool, seed: int, rank: int, world_size: int):
        self.items, self.shuffle, self.seed, self.rank, self.world_size = items, shuffle, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.shuffle:
            return -(-self.items // self.world_size)
        return len(range(self.rank, self.items, self.world_size))

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's items of the epoch, and a uniform number in [0, 1) per item of all ranks (its crop)."""
        if not self.shuffle:
            return torch.arange(self.rank, self.items, self.world_size), torch.zeros(0, dtype=torch.float64)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)  # as DistributedSampler seeds it
        self.epoch += 1
        order = torch.randperm(self.items, generator=generator)
        padding = len(self) * self.world_size - self.items
        if padding:
            order = torch.cat([order, order.repeat(-(-padding // self.items))[:padding]])
        uniform = torch.rand(self.items, generator=generator, dtype=torch.float64)
        return order[self.rank :: self.world_size], uniform


class DeviceChunks:
    """The batches of a RandomChunks or EvenChunks `dataset` (as the data module's loaders give them, with
    `stored`), gathered from `samples`: (waveforms, labels, track positions), each a tensor on the samples'
    home. Stands where the data module's DataLoader stands (len: batches; dataset, batch_size, sampler)."""

    def __init__(self, samples: ResidentSamples, dataset, batch_size: int, shuffle: bool, cache: WaveformCache):
        self.samples, self.dataset, self.batch_size, self.chunk = samples, dataset, batch_size, dataset.chunk
        home = samples.home
        self.tracks = torch.as_tensor(dataset.tracks, dtype=torch.int64).to(home)  # global track of each position
        self.labels = torch.as_tensor(dataset.labels).to(home)[self.tracks]  # ints, or multi-label rows
        lengths = cache.lengths[np.asarray(dataset.tracks, dtype=np.int64)]
        self.padded = bool((lengths < self.chunk).any())
        if isinstance(dataset, RandomChunks):
            self.positions = torch.as_tensor(dataset.items, dtype=torch.int64)
            # how many starts each item's crop can take (drawn on the host, as the permutation is)
            self.spans = torch.as_tensor(np.maximum(lengths - self.chunk, 0) + 1)[self.positions]
            self.starts = None  # drawn every epoch
        else:
            items = np.asarray(dataset.items, dtype=np.int64).reshape(-1, 2)
            self.positions, self.starts = torch.as_tensor(items[:, 0]), torch.as_tensor(items[:, 1]).to(home)
        self.positions = self.positions.to(home)
        rank, world_size = rank_and_world()
        self.sampler = EpochOrder(len(dataset), shuffle, int(os.environ.get("PL_GLOBAL_SEED", 0)), rank, world_size)
        self.batch_sampler = None  # what Lightning looks for beside the sampler, as on a DataLoader
        # A rank left without evaluation chunks scores one padding chunk (see _shard).
        self.padding = not shuffle and len(dataset) > 0 and len(self.sampler) == 0

    def __len__(self) -> int:
        chunks = 1 if self.padding else len(self.sampler)
        return -(-chunks // self.batch_size)

    def __iter__(self):
        share, uniform = self.sampler.draw()
        if self.padding:
            share = torch.zeros(1, dtype=torch.int64)
        home = self.samples.home
        share = share.to(home)
        if self.starts is None:  # a uniform start in [0, length - chunk] of each item's track
            starts = (uniform * self.spans).long().minimum(self.spans - 1).to(home)[share]
        else:
            starts = self.starts[share]
        # The whole epoch's tracks, starts and labels at once; each batch is then slices and one gather.
        positions = self.positions[share]
        tracks, labels = self.tracks[positions], self.labels[positions]
        if self.padding:
            labels = torch.full_like(labels, PADDING_LABEL)
        for first in range(0, len(share), self.batch_size):
            batch = slice(first, first + self.batch_size)
            yield (self.samples.chunks(tracks[batch], starts[batch], self.chunk, self.padded), labels[batch],
                   positions[batch])
