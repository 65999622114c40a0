"""The classification task (`GenreClassifier`: a `TrainedClassifier` or a `FittedClassifier`, as its
head learns), its encoder and heads, checkpoint loading, and the
average of several trained models (`Ensemble`). The architectures themselves are plain nets in mgr.nets."""

from mgr.models.checkpoints import CheckpointIO, read_checkpoint
from mgr.models.encoder import SpectrogramEncoder
from mgr.models.task import FittedClassifier, GenreClassifier, TrainedClassifier, load_model
from mgr.models.ensemble import Ensemble

__all__ = ["CheckpointIO", "Ensemble", "FittedClassifier", "GenreClassifier", "SpectrogramEncoder", "TrainedClassifier",
           "load_model", "read_checkpoint"]
