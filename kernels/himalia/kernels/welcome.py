"""The "Welcome to himalia" notebook: put in each user's home once, on the first server start.

Runs as the home's owner (in the user's server, see :mod:`himalia.kernels.singleuser`). A
marker, ``~/.himalia/welcomed``, remembers that it was placed, so a user who deletes the
notebook never gets it back. Nothing here follows a symbolic link planted in the home: files
are created with ``O_EXCL | O_NOFOLLOW`` relative to opened folders, and an existing file
of the same name is never overwritten.
"""

from __future__ import annotations

import os
import time
from importlib.resources import files
from pathlib import Path

#: The notebook's name in the user's home.
WELCOME_NAME = "Welcome to himalia.ipynb"
#: The folder in the home where himalia keeps its per-user notes.
STATE_DIR = ".himalia"
#: The marker file inside it.
MARKER = "welcomed"


def welcome_notebook() -> bytes:
    """The notebook shipped with himalia (package data of ``himalia.kernels``)."""
    return files("himalia.kernels").joinpath("welcome.ipynb").read_bytes()


def _create(folder_fd: int, name: str, content: bytes, mode: int) -> bool:
    """Write a new file ``name`` in the opened folder; False if anything of that name exists."""
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(name, flags, mode, dir_fd=folder_fd)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
    except BaseException:
        os.unlink(name, dir_fd=folder_fd)
        raise
    return True


def _open_state_dir(home_fd: int) -> int | None:
    """The opened ``~/.himalia`` folder (made if missing), or None if it is not a real folder."""
    try:
        os.mkdir(STATE_DIR, 0o700, dir_fd=home_fd)
    except FileExistsError:
        pass
    try:
        return os.open(STATE_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=home_fd)
    except OSError:  # a symbolic link (ELOOP) or a file (ENOTDIR) in its place
        return None


def place_welcome(home: str | os.PathLike, content: bytes | None = None) -> Path | None:
    """Put the welcome notebook in ``home`` unless it was placed there before.

    Returns the notebook's path when it was placed by this call, else None: already welcomed,
    a file of that name already there (kept as it is), or ``~/.himalia`` not a real folder.
    """
    content = welcome_notebook() if content is None else content
    home_fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    try:
        state_fd = _open_state_dir(home_fd)
        if state_fd is None:
            return None
        try:
            try:
                os.stat(MARKER, dir_fd=state_fd, follow_symlinks=False)
                return None
            except FileNotFoundError:
                pass
            placed = _create(home_fd, WELCOME_NAME, content, 0o644)
            _create(state_fd, MARKER, time.strftime("%Y-%m-%dT%H:%M:%S%z\n").encode(), 0o644)
            return Path(home) / WELCOME_NAME if placed else None
        finally:
            os.close(state_fd)
    finally:
        os.close(home_fd)
