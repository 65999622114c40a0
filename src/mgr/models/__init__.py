"""The classification task (`GenreClassifier`), its encoder and heads, and checkpoint loading.
The architectures themselves are plain nets in mgr.nets."""

from mgr.models.checkpoints import CheckpointIO, read_checkpoint
from mgr.models.encoder import SpectrogramEncoder
from mgr.models.task import GenreClassifier, load_model, test_confusions

__all__ = ["CheckpointIO", "GenreClassifier", "SpectrogramEncoder", "load_model", "read_checkpoint", "test_confusions"]
