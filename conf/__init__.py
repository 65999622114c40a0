# Makes conf/ importable as `mgr.conf`, so Hydra finds it as pkg://mgr.conf. Hydra imports this
# package before it composes anything from it, so the model group's schema (made from the nets'
# signatures, mgr.schema) is registered for every entry point and every `compose`.
from mgr.schema import register_net_defaults

register_net_defaults()
