"""The classification task (`GenreClassifier`), its encoder and heads, and checkpoint loading.
The architectures themselves are plain nets in mgr.nets."""

from mgr.models.checkpoints import load_model, read_checkpoint
from mgr.models.encoder import SpectrogramEncoder
from mgr.models.task import GenreClassifier, test_confusions

__all__ = ["GenreClassifier", "SpectrogramEncoder", "load_model", "read_checkpoint", "test_confusions"]
