"""What the data and the model agree on about labels, below both layers: the data module
(mgr.data.datamodule) gives a DDP rank left without evaluation chunks one padding chunk, and the
task (mgr.models.task) leaves it out of every metric. Neither imports the other (tests/test_layout.py)."""

# The label of a padding chunk: it belongs to no class and counts in no metric.
PADDING_LABEL = -1
