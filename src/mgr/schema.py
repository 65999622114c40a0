"""The `model` config group's schema, made from the code: every net's settings and their
defaults come from its signature (mgr.nets), so conf/model/*.yaml state only the net's name
and what differs from the code, yet every setting can be overridden (`model.dropout=0.2`)
and a misspelt one is refused."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from hydra.core.config_store import ConfigStore

GROUP = "net_defaults"  # conf/model/<name>.yaml: `defaults: [{/net_defaults@_here_: <net>}, _self_]`


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def register_net_defaults() -> None:
    from mgr.nets import NETS

    store = ConfigStore.instance()
    for name, cls in NETS.items():
        fields = [("name", str, dataclasses.field(default=name)),
                  ("head", Any, dataclasses.field(default=None))]  # null: a trained linear layer
        for p in list(inspect.signature(cls).parameters.values())[2:]:  # after n_bins, n_frames
            default = _plain(p.default)
            fields.append((p.name, Any, dataclasses.field(default_factory=lambda d=default: d)
                           if isinstance(default, list) else dataclasses.field(default=default)))
        store.store(group=GROUP, name=name, node=dataclasses.make_dataclass(f"{cls.__name__}Settings", fields))
