"""The hub side of himalia: the ``himalia`` CLI, JupyterHub configuration, spawners and services."""

from ._version import __version__

__all__ = ["__version__"]
