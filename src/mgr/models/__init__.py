"""The classification task (`GenreClassifier`), its encoder and heads, checkpoint loading, and the
average of several trained models (`Ensemble`). The architectures themselves are plain nets in mgr.nets."""

from mgr.models.checkpoints import CheckpointIO, read_checkpoint
from mgr.models.encoder import SpectrogramEncoder
from mgr.models.task import GenreClassifier, load_model, test_confusions
from mgr.models.ensemble import Ensemble

__all__ = ["CheckpointIO", "Ensemble", "GenreClassifier", "SpectrogramEncoder", "load_model", "read_checkpoint", "test_confusions"]
