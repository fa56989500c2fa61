"""Read a notebook and its input files from a home folder; run as the folder's owner.

``python -m himalia.hub.jobs.snapshot HOME '{"path", "inputs", "max_bytes"}'`` prints one JSON
object: ``{"ok": true, "notebook": base64, "source_path", "inputs": {rel: base64}}`` or
``{"ok": false, "status", "field", "message"}``. The runner starts it as the owner's account, so
it reads only what the owner may read. Paths are relative to the home (inputs: to the
notebook's folder); absolute paths, ``..`` and symbolic links are refused.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import PurePosixPath


class Refused(Exception):
    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(message)
        self.field, self.status = field, status


def _relative(value: object, field: str) -> PurePosixPath:
    if not isinstance(value, str) or not value.strip():
        raise Refused(field, "give a path relative to your home folder, e.g. 'reports/churn.ipynb'")
    path = PurePosixPath(value)
    if path.is_absolute():
        raise Refused(field, f"{value!r} is absolute; give it relative to your home folder")
    if ".." in path.parts:
        raise Refused(field, f"{value!r} leaves its folder ('..'); give a path inside your home folder")
    return path


def _read(home: str, rel: PurePosixPath, field: str, max_bytes: int) -> bytes:
    """The file's bytes, opened component by component without following any symbolic link."""
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i, part in enumerate(rel.parts):
            last = i == len(rel.parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | (0 if last else os.O_DIRECTORY)
            try:
                child = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                raise Refused(field, f"{rel} does not exist in your home folder") from None
            except OSError as e:
                if os.path.islink(os.path.join(home, *rel.parts[: i + 1])):
                    raise Refused(field, f"{rel} goes through a symbolic link; give the real path") from None
                raise Refused(field, f"{rel} cannot be read ({e.strerror})") from None
            os.close(fd)
            fd = child
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused(field, f"{rel} is not a file")
        if max_bytes and info.st_size > max_bytes:
            raise Refused(field, f"{rel} is {info.st_size // 1024} KiB; the limit is "
                                 f"{max_bytes // 1024} KiB", status=413)
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    finally:
        os.close(fd)


def snapshot(home: str, request: dict) -> dict:
    max_bytes = int(request.get("max_bytes") or 0)
    reply: dict = {"ok": True, "inputs": {}}
    base = PurePosixPath(".")
    if request.get("path") is not None:
        path = _relative(request["path"], "path")
        if path.suffix != ".ipynb":
            raise Refused("path", f"{path} is not a notebook (.ipynb)")
        reply["notebook"] = base64.b64encode(_read(home, path, "path", max_bytes)).decode()
        reply["source_path"] = str(path)
        base = path.parent
    for i, item in enumerate(request.get("inputs") or []):
        rel = _relative(item, f"inputs.{i}")
        full = _relative(str(base / rel), f"inputs.{i}")
        reply["inputs"][str(rel)] = base64.b64encode(_read(home, full, f"inputs.{i}", max_bytes)).decode()
    return reply


def main() -> None:
    home, request = sys.argv[1], json.loads(sys.argv[2])
    try:
        reply = snapshot(home, request)
    except Refused as e:
        reply = {"ok": False, "status": e.status, "field": e.field, "message": str(e)}
    sys.stdout.write(json.dumps(reply))


if __name__ == "__main__":
    main()
