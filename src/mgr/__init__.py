"""mgr: music genre recognition experiments."""

__version__ = "0.1.0"


class MGRError(Exception):
    """An error the user can fix; entry points print its message without a traceback."""
