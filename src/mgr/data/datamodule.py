"""The LightningDataModule: source -> split by track -> waveform cache -> chunk loaders (batches gathered
from the cache held in memory, mgr.data.device_chunks, where data.on_device places it; DataLoader
workers otherwise)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler

from mgr import MGRError
from mgr.data.cache import WaveformCache, check_dtype
from mgr.data.datasets import EVEN, EvenChunks, RandomChunks, check_chunks_per_track, dequantise
from mgr.data.device_chunks import DeviceChunks, ResidentSamples, check_on_device, choose_home
from mgr.data.embeddings import ChunkEmbeddings, EmbeddedChunks
from mgr.data.sources import TrackList, build_source
from mgr.data.splits import SPLITS, check_split
from mgr.labels import PADDING_LABEL  # a padding chunk's (see _shard)

log = logging.getLogger(__name__)


# The splits a Lightning stage cannot run without.
STAGE_SPLITS = {"fit": ("training", ("train", "val")), "validate": ("validation", ("val",)), "test": ("testing", ("test",))}


def check_positive(**settings: float | None) -> None:
    """Sizes that must be above zero (None: unset), refused before any data work."""
    for name, value in settings.items():
        if value is not None and not value > 0:
            raise MGRError(f"data.{name}={value} is not accepted: it must be above 0.")


class GenreDataModule(pl.LightningDataModule):
    def __init__(
        self,
        source: str,
        root: str | None,
        cache_dir: str,
        source_options: dict | None = None,
        sample_rate: int = 22050,
        chunk_seconds: float = 3.0,
        split: dict | str | None = None,
        split_seed: int = 0,
        folds: int | None = None,
        fold: int | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        train_chunks_per_track: int | str = 1,
        eval_max_chunks: int | None = None,
        num_workers: int | str = 0,
        pin_memory: bool = False,
        min_seconds: float = 0.0,
        max_bad_fraction: float = 0.25,
        allow_outside_root: bool = False,
        cache_dtype: str | None = None,
        on_device: str | bool = "auto",
    ):
        super().__init__()
        check_positive(batch_size=batch_size, eval_batch_size=eval_batch_size, sample_rate=sample_rate,
                       chunk_seconds=chunk_seconds, eval_max_chunks=eval_max_chunks)
        check_chunks_per_track(train_chunks_per_track)  # before the cache, which can take hours to decode
        check_dtype(cache_dtype)
        check_on_device(on_device)
        # Absolute paths, so mgr.eval finds the data from any working directory (realpath, not
        # resolve: a symlink loop is left for the source to refuse in one sentence).
        root = os.path.realpath(Path(root).expanduser()) if root else None
        cache_dir = os.path.realpath(Path(cache_dir).expanduser())
        # Plain values only: the checkpoint stores them so mgr.eval can rebuild this module.
        self.save_hyperparameters()
        self.source = build_source(source, root, source_options or {}, allow_outside_root)
        self.chunk = int(round(chunk_seconds * sample_rate))
        self.num_workers = resolve_workers(num_workers)
        self._tracks: TrackList | None = None
        self.cache: WaveformCache | None = None
        self.split_tracks: dict[str, list[int]] = {}
        self.embeddings: tuple[ChunkEmbeddings, list[int]] | None = None  # see use_embeddings
        self._homes: dict[torch.device, torch.device | None] = {}  # where the samples live, per run device
        self._resident: ResidentSamples | None = None

    def __getstate__(self):
        # ddp_spawn pickles this module into its ranks: each places the samples itself, on its own device.
        return {**self.__dict__, "_homes": {}, "_resident": None}

    @property
    def tracks(self) -> TrackList:
        if self._tracks is None:
            self._tracks = self.source.list()
        return self._tracks

    @property
    def class_names(self) -> list[str]:
        return self.tracks.class_names

    @property
    def class_parents(self) -> dict[str, str | None] | None:
        """Each class's parent class where the data has a genre tree over its classes (FMA with
        labels=genres_all, mgr.data.genre_tree), for the model to roll its answers up; None elsewhere."""
        return self.source.class_parents(self.class_names)

    def prepare_data(self) -> None:
        self._build_cache()  # lists the tracks first: a missing dataset fails before any decoding

    def _build_cache(self) -> WaveformCache:
        if self.cache is None:  # DDP ranks other than 0 find here what rank 0 built
            h = self.hparams
            self.cache = WaveformCache.build(
                self.tracks.files, h.sample_rate, h.cache_dir, self.source.name,
                known_bad=self.tracks.known_bad, min_seconds=h.min_seconds,
                # Decoding is CPU-bound and runs alone: every usable CPU, unless told otherwise.
                num_workers=usable_cpus() if h.num_workers == "auto" else self.num_workers,
                dtype=h.get("cache_dtype"),  # absent from the checkpoints of older runs
            )
            self.cache.check_bad_fraction(h.max_bad_fraction)
        return self.cache

    def setup(self, stage: str | None = None) -> None:
        if not self.split_tracks:
            self._split()
        doing, needed = STAGE_SPLITS.get(stage, ("", ()))
        for name in needed:  # Lightning would train without validation, then fail at its first monitor
            if not self.split_tracks[name]:
                sizes = ", ".join(f"{k} {len(v)}" for k, v in self.split_tracks.items())
                raise MGRError(f"The {name} split is empty (tracks: {sizes}); {doing} needs tracks there: add music "
                               "(a few tracks of each class per split) or choose data.split.")

    def _split(self) -> None:
        h = self.hparams
        self._build_cache()
        # Split on all listed tracks, then drop unusable ones: a bad file never moves others.
        splits = self.source.split(self.tracks, h.split, h.split_seed, h.folds, h.fold)
        check_split(splits, self.tracks.files, self.source.leak_groups(self.tracks, h.split, h.folds))
        self.split_tracks = {k: [i for i in v if self.cache.is_ok(i)] for k, v in splits.items()}
        for name in SPLITS:
            if splits[name] and not self.split_tracks[name]:
                raise MGRError(f"The {name} split has no usable tracks; see {self.cache.report_path} or change data.split.")
        dropped = sum(len(splits[k]) - len(self.split_tracks[k]) for k in SPLITS)
        fold = "" if h.fold is None else f" (fold {h.fold}" + (f" of {h.folds}" if h.folds else "") + ")"
        log.info("Split%s: %s tracks%s.", fold, ", ".join(f"{k} {len(v)}" for k, v in self.split_tracks.items()),
                 f" ({dropped} unusable left out)" if dropped else "")

    def _loader(self, dataset, batch_size: int, shuffle: bool) -> DataLoader | DeviceChunks:
        h = self.hparams
        samples = self._resident_samples() if self.embeddings is None else None  # a probe keeps its loaders
        if samples is not None:
            return DeviceChunks(samples, dataset, batch_size, shuffle, self.cache)
        dataset, sampler = _shard(dataset, shuffle)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            # Pinned pages only speed up copies to a GPU; without one PyTorch warns and ignores it.
            pin_memory=h.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def _resident_samples(self) -> ResidentSamples | None:
        """The cache's samples where data.on_device places them for the device this module's trainer runs on
        (the CPU without one), or None for DataLoader workers; chosen, and said, once per device."""
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if device not in self._homes:
            self._homes[device] = choose_home(self.hparams.get("on_device", "auto"), self.cache, device)
        home = self._homes[device]
        if home is None:
            return None
        if self._resident is None or self._resident.home != home:
            self._resident = ResidentSamples(self.cache, home)
        return self._resident

    def train_dataloader(self) -> DataLoader | DeviceChunks:
        h = self.hparams
        if self.embeddings is not None:  # every chunk of every training track once per epoch, shuffled
            return self._loader(self._as_fed(self._even_chunks("train", None)), h.batch_size, shuffle=True)
        if h.train_chunks_per_track == EVEN:
            ds = self._even_chunks("train", None, stored=True)
            log.info("Training epoch: the %d evenly spaced chunks of %s s of %d tracks.", len(ds), h.chunk_seconds,
                     len(ds.tracks))
        else:
            ds = RandomChunks(self.cache, self.split_tracks["train"], self.tracks.labels, self.chunk,
                              h.train_chunks_per_track, stored=True)
            log.info("Training epoch: %d crops of %s s from %d tracks.", len(ds), h.chunk_seconds, len(ds.tracks))
        return self._loader(ds, h.batch_size, shuffle=True)

    def eval_dataset(self, split: str, stored: bool = False) -> Dataset:
        """The chunks a split is scored on (at most data.eval_max_chunks per track), as float32 waveforms
        (with `stored`, as the cache stores them: see on_after_batch_transfer) or, after use_embeddings,
        as their cached layers."""
        return self._as_fed(self._even_chunks(split, self.hparams.eval_max_chunks, stored))

    def _even_chunks(self, split: str, max_chunks: int | None, stored: bool = False) -> EvenChunks:
        return EvenChunks(self.cache, self.split_tracks[split], self.tracks.labels, self.chunk, max_chunks, stored)

    def _as_fed(self, chunks: EvenChunks) -> Dataset:
        if self.embeddings is None:
            return chunks
        store, layers = self.embeddings
        return EmbeddedChunks(store, chunks.tracks, chunks.labels, chunks.items, layers)

    def track_groups(self, split: str) -> list[int]:
        """The group of each track of `split`, in the order its chunks number the tracks: a number shared
        by the tracks that must stay on one side of any split (a piece's clips, an album, as the split
        keeps them; each track its own where the data names none), so that whatever holds some of them
        out (the probe's inner folds, model.head.folds) holds them out together."""
        h = self.hparams
        groups = self.source.leak_groups(self.tracks, h.split, h.folds) or list(range(len(self.tracks.files)))
        number = {g: i for i, g in enumerate(dict.fromkeys(groups))}
        return [number[groups[t]] for t in self.split_tracks[split]]

    def use_encoder(self, encoder, device: torch.device, batch_size: int) -> None:
        """Feed a frozen pretrained `encoder`'s probe its embeddings instead of waveforms: the encoder is a
        fixed function of the chunk, so its layers are computed once per chunk of every split into the
        embedding cache (mgr.data.embeddings), on `device` (the run's), and read from there."""
        self.setup("fit")
        encoder.to(device)
        store = ChunkEmbeddings.build(self.cache, self.embedding_chunks(), self.chunk, encoder.identity,
                                      encoder.layer_dims, encoder.layers, self.hparams.cache_dir,
                                      device=device, batch_size=batch_size, name=encoder.settings["name"])
        encoder.cpu()
        self.use_embeddings(*encoder.cached_input(store))  # every layer is cached; the encoder says which it takes

    def use_embeddings(self, store: ChunkEmbeddings, layers: list[int]) -> None:
        """From now on, give the cached `layers` of each chunk instead of its waveform (a frozen
        encoder's probe; use_encoder)."""
        self.embeddings = (store, list(layers))

    def embedding_chunks(self) -> list[tuple[int, int]]:
        """The (track, start) chunks the embedding cache must hold: every chunk of every split, and
        those data.eval_max_chunks picks."""
        wanted = []
        for split in SPLITS:
            for max_chunks in {None, self.hparams.eval_max_chunks}:
                chunks = self._even_chunks(split, max_chunks)
                wanted += [(chunks.tracks[k], s) for k, s in chunks.items]
        return wanted

    def val_dataloader(self) -> DataLoader | DeviceChunks:
        return self._loader(self.eval_dataset("val", stored=True), self.hparams.eval_batch_size or self.hparams.batch_size,
                            False)

    def test_dataloader(self) -> DataLoader | DeviceChunks:
        return self._loader(self.eval_dataset("test", stored=True), self.hparams.eval_batch_size or self.hparams.batch_size,
                            False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """On the model's device: a compact cache's chunks, which the loaders hand over as stored (half the
        bytes of float32 to batch and copy), become float32 before the model sees the batch."""
        wave, *rest = batch
        return [dequantise(wave), *rest]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which SLURM and containers set),
    not the machine's count that os.cpu_count() reports."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_workers(num_workers: int | str) -> int:
    """`auto`: one worker per usable CPU of this rank, at most 4, keeping one CPU for the
    training process itself. Workers only slice the memory-mapped cache, so a few suffice;
    more than the CPUs make PyTorch warn and slow every process down."""
    if num_workers != "auto":
        if not isinstance(num_workers, int) or num_workers < 0:
            raise MGRError(f"data.num_workers must be 'auto' or a whole number >= 0, got {num_workers!r}.")
        return num_workers
    # The ranks on this node share its CPUs: torchrun says how many (LOCAL_WORLD_SIZE), srun per node.
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("SLURM_NTASKS_PER_NODE", "1").split("(")[0] or 1)
    return max(0, min(4, usable_cpus() // ranks - 1))


def _shard(dataset, shuffle: bool) -> tuple[Dataset, Iterable[int]]:
    """The dataset and sampler of this DDP rank's share. Evaluation shards are disjoint and
    unpadded: Lightning's DistributedSampler repeats chunks to even out the ranks, and a repeated
    chunk would count twice in the test metrics (so the trainer configs set
    use_distributed_sampler: false and this function decides). A rank left without chunks (fewer
    than ranks) still needs one batch, or Lightning stops and the other ranks' metric syncs wait
    for it: it gets one chunk labelled PADDING_LABEL, which the model leaves out of every metric."""
    if not (dist.is_available() and dist.is_initialized()):
        return dataset, RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    if shuffle:  # Lightning calls set_epoch on it every epoch
        return dataset, DistributedSampler(dataset, shuffle=True, seed=int(os.environ.get("PL_GLOBAL_SEED", 0)))
    share = range(dist.get_rank(), len(dataset), dist.get_world_size())
    if len(dataset) and not share:
        return _Padding(dataset), [0]
    return dataset, share


class _Padding(Dataset):
    """One chunk of `dataset` that belongs to no class (see _shard)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int):
        wave, _, track = self.dataset[0]
        return wave, PADDING_LABEL, track
