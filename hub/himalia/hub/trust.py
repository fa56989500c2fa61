"""Refuse to run code from places other accounts can change.

``himalia up`` executes ``<state-dir>/himalia_config.py`` and may run a proxy installed under
the state directory. As root that would hand the machine to whoever can write there, so each
of these paths, and every folder above it, must belong to root (or to the account running
himalia) and be writable by nobody else; a folder above may be shared only with the sticky
bit (``/tmp``), which stops others from renaming what is inside.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UntrustedPath(Exception):
    """A path himalia would trust can be changed by another account; the message says how to fix it."""


def _trusted_owners() -> set[int]:
    return {0, os.geteuid()}


def _problem(path: Path, st: os.stat_result, *, ancestor: bool) -> str | None:
    if st.st_uid not in _trusted_owners():
        return f"is owned by uid {st.st_uid}"
    if stat.S_ISLNK(st.st_mode):
        return None  # a link's own mode bits mean nothing; its folder and target are checked
    writable_by_others = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable_by_others and not (ancestor and st.st_mode & stat.S_ISVTX):
        return "is writable by other accounts"
    return None


def check_trusted(path: str | os.PathLike, what: str) -> None:
    """Raise UntrustedPath unless ``path`` and the folders above it are safe to trust."""
    target = Path(path).resolve()
    chain = [*reversed(target.parents), target]
    for part in chain:
        try:
            st = part.stat()
        except FileNotFoundError:
            return  # created later by himalia itself, inside a checked folder
        problem = _problem(part, st, ancestor=part != target)
        if problem:
            raise UntrustedPath(
                f"{what} {target} cannot be trusted: {part} {problem}. Let only this account "
                f"write there (chown {os.geteuid()} {part} && chmod go-w {part}) or use a "
                "state directory of its own."
            )


def check_tree_trusted(root: str | os.PathLike, what: str) -> None:
    """``check_trusted`` for ``root`` and everything below it (an installed npm package)."""
    check_trusted(root, what)
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            st = path.lstat()
            problem = _problem(path, st, ancestor=False)
            if problem:
                raise UntrustedPath(
                    f"{what} {root} cannot be trusted: {path} {problem}. Remove {root} and "
                    "let himalia install it again."
                )
