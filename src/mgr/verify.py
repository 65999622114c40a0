"""Check caches against their checksums: python -m mgr.verify [caches=PATH] (the checks: mgr.data.integrity)."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, ListConfig

from mgr.data.integrity import caches_in, verify
from mgr.entry import command, task

@task
def verify_command(cfg: DictConfig) -> bool:
    """Check every cache named by `caches`; whether all are whole."""
    paths = cfg.caches if isinstance(cfg.caches, ListConfig) else [cfg.caches]
    directories = [d for path in paths for d in caches_in(Path(str(path)).expanduser())]
    states = []
    for directory in directories:
        whole, line = verify(directory)
        states.append(line.split()[0])
        print(line, flush=True)
    damaged, unchecked = states.count("DAMAGED"), states.count("unchecked")
    if len(directories) > 1:
        print(f"{len(directories)} caches, " + (f"{damaged} damaged" if damaged else
              f"none damaged, {unchecked} without checksums yet" if unchecked else "every checksum matches"))
    return not damaged


def verify_and_exit(cfg: DictConfig) -> None:
    if not verify_command(cfg):
        sys.exit(1)


main = command("verify", verify_and_exit)


if __name__ == "__main__":
    main()
