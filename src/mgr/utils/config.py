"""Config values as plain Python: what checkpoints and loggers store."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


def resolved_dict(node: DictConfig) -> dict:
    """A config node as plain Python values, interpolations resolved."""
    return OmegaConf.to_container(node, resolve=True)
