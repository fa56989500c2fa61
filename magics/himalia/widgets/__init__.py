"""Front ends of the platform that live in notebooks (anywidget): the labeling widget."""

from .labeler import Labeler, shortcut_keys

__all__ = ["Labeler", "shortcut_keys"]
