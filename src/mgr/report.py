"""What a paper reports, from a sweep: python -m mgr.report sweep_dir=<multirun or runs directory>

The tables, tests and files are described in mgr.sweep_report."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mgr import MGRError
from mgr.entry import command, require, task
from mgr.sweep_report import write_report
from mgr.test_report import BOOTSTRAP


@task
def report(cfg: DictConfig) -> Path:
    require(cfg, "sweep_dir", usage="python -m mgr.report sweep_dir=logs/train/multiruns/<date_time>")
    directory = Path(cfg.sweep_dir).expanduser()
    if not directory.is_dir():
        raise MGRError(f"sweep_dir={directory} is not a directory; pass a multirun directory or any folder "
                       "holding run directories.")
    return write_report(directory, float(cfg.alpha), {**BOOTSTRAP, **(cfg.get("bootstrap") or {})})


main = command("report", report)


if __name__ == "__main__":
    main()
