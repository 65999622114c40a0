"""Fetch a public dataset: python -m mgr.download dataset=NAME root=PATH (the archives: mgr.data.archives)."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from mgr.data.archives import DATASETS, download
from mgr.entry import require, task

USAGE = f"python -m mgr.download dataset={'|'.join(DATASETS)} root=PATH [mirror=URL] [keep_archives=true]"


@task
def download_command(cfg: DictConfig) -> list[Path]:
    require(cfg, "dataset", "root", usage=USAGE)
    return download(str(cfg.dataset), str(cfg.root), cfg.mirror, bool(cfg.keep_archives))


@hydra.main(version_base="1.3", config_path="pkg://mgr.conf", config_name="download")
def main(cfg: DictConfig) -> None:
    download_command(cfg)


if __name__ == "__main__":
    main()
