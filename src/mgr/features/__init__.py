from mgr.features.frontends import FRONTENDS, Frontend, build_frontend

__all__ = ["FRONTENDS", "Frontend", "build_frontend"]
