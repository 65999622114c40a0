# Makes conf/ importable as `mgr.conf`, so Hydra finds it as pkg://mgr.conf.
