from mgr.data.datamodule import GenreDataModule

__all__ = ["GenreDataModule"]
