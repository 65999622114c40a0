# Makes conf/ importable as `mgr.conf`, so Hydra finds it as pkg://mgr.conf. Hydra imports this
# package before it composes anything from it, so the typed schemas of the model, feature and
# augment groups (made from the code's signatures, mgr.schema) are registered for every entry point
# and every `compose`.
from mgr.schema import register_schemas

register_schemas()
