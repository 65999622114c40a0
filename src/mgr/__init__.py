"""mgr: music genre recognition experiments."""

from importlib import metadata

try:
    __version__ = metadata.version("mgr")  # setuptools-scm: 0.1.devN+g<commit>
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"


class MGRError(Exception):
    """An error the user can fix; entry points print its message without a traceback."""
