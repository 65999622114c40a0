"""Data: sources, splits, the waveform cache and the DataModule.

GenreDataModule is imported on first use, so that decoding worker processes
(which import mgr.data.cache) do not pay for importing Lightning.
"""

__all__ = ["GenreDataModule"]


def __getattr__(name: str):
    if name == "GenreDataModule":
        from mgr.data.datamodule import GenreDataModule

        return GenreDataModule
    raise AttributeError(f"module 'mgr.data' has no attribute {name!r}")
