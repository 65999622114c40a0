"""Lightning's CSVLogger, continuing the metrics.csv of its run directory.

A run directory holds one run (mgr.run_directory stops a new run in a used one), so a metrics.csv
already there is this run's history: written before the run was stopped and resumed, or by the
fit before the test phase, which a ddp_spawn trainer runs in new processes. Lightning's writer
deletes that file when it starts and, knowing no columns, would rewrite it under the new columns
only; this writer keeps it and starts from the header on disk. A resumed run first cuts the
history back to its checkpoint (`keep_rows_before`): the rows logged after the checkpoint was
saved describe training the resumed run repeats, and it logs its own.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger as LightningCSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter


class _ContinuingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        pass  # Lightning's warns here and deletes metrics.csv, the run's history (see above)

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


def keep_rows_before(metrics_file: str | Path, step: int) -> int:
    """Cut a metrics.csv back to its rows logged before training step `step` (a checkpoint's
    count of batches that stepped: Lightning logs every row with that count, an epoch's end rows
    with the count of its last batch, one less); returns how many rows were dropped. The rows of
    an epoch the resumed run repeats are dropped with it, so each epoch's rows are those of the
    run that completed it. Written beside the file and renamed over it: a kill leaves one history
    or the other, never half of one."""
    metrics_file = Path(metrics_file)
    with open(metrics_file, newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames or [], list(reader)
    kept = [row for row in rows if int(row["step"]) < step]
    if len(kept) < len(rows):
        partial = metrics_file.with_name(f".{metrics_file.name}.{os.getpid()}.tmp")
        with open(partial, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(partial, metrics_file)
    return len(rows) - len(kept)
