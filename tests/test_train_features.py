"""Every feature trains through `python -m mgr.train` with model=crnn and model=cnn (one
multirun, so Python starts once), and the run draws its feature images."""

from __future__ import annotations

from pathlib import Path

from conftest import TINY_DATA

from mgr.features import FRONTENDS


def test_every_feature_trains_with_crnn_and_cnn(run_mgr, tmp_path):
    features = ",".join(sorted(FRONTENDS))
    data = [o for o in TINY_DATA if not o.startswith(("data.sample_rate", "data.batch_size"))]
    proc = run_mgr("train", "-m", "model=crnn,cnn", f"feature={features}", *data, "data.sample_rate=16000",
                   "data.batch_size=8", "data.eval_batch_size=8", "augment=specaugment", "debug=fast_dev_run",
                   "trainer.enable_progress_bar=false")
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2 * len(FRONTENDS)
    assert proc.stdout.count("Test results") == len(jobs)
    for job in jobs:
        assert (job / "metrics.json").exists(), job
        png = job / "plots" / "feature_examples.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    overrides = [Path(job, ".hydra", "overrides.yaml").read_text() for job in jobs]
    assert all(any(f"feature={name}" in o for o in overrides) for name in FRONTENDS)
