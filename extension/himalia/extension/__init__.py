"""himalia's Jupyter server extension, and the entry points that ship its JupyterLab extension."""

from __future__ import annotations

from himalia.hub._version import __version__

from .app import HimaliaExtensionApp

__all__ = ["HimaliaExtensionApp", "__version__"]


def _jupyter_server_extension_points() -> list[dict]:
    """Tell jupyter_server which ExtensionApp this package provides."""
    return [{"module": "himalia.extension", "app": HimaliaExtensionApp}]


def _jupyter_labextension_paths() -> list[dict]:
    """Tell JupyterLab where the prebuilt labextension lies inside this package."""
    return [{"src": "labextension", "dest": "himalia"}]
