"""Fetch a public dataset: python -m mgr.download dataset=NAME root=PATH, for NAME gtzan, fma_*, mtg_jamendo*
or mtat (what each fetches and how it is checked: mgr.data.archives)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mgr.data.archives import DATASETS, download
from mgr.entry import command, require, task

USAGE = f"python -m mgr.download dataset={'|'.join(DATASETS)} root=PATH [mirror=URL] [keep_archives=true]"


@task
def download_command(cfg: DictConfig) -> list[Path]:
    require(cfg, "dataset", "root", usage=USAGE)
    return download(str(cfg.dataset), str(cfg.root), cfg.mirror, bool(cfg.keep_archives))


main = command("download", download_command)


if __name__ == "__main__":
    main()
