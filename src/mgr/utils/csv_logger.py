"""Lightning's CSVLogger, able to continue a metrics.csv written by another process.

A fresh writer knows no columns; when metrics.csv already exists (the test
phase after a ddp_spawn fit runs in new processes, a resumed run reopens its
directory) Lightning rewrites the file under the new columns only and fails
on the old rows. This writer starts from the header already on disk.
"""

from __future__ import annotations

import csv
import os

from pytorch_lightning.loggers import CSVLogger as LightningCSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter


class _ContinuingWriter(ExperimentWriter):
    def save(self) -> None:
        # Read at every save: this writer may have been pickled into a process before the file existed.
        if self.metrics and os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                on_disk = next(csv.reader(f), [])
            self.metrics_keys = sorted(set(self.metrics_keys) | set(on_disk))
        super().save()


class CSVLogger(LightningCSVLogger):
    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(log_dir=self.log_dir)
        return self._experiment
