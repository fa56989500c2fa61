"""The runner's control socket: how the API wakes the runner and asks it to read a notebook
from a person's home (which only the person's own account may read).

A Unix stream socket in the state directory, one JSON object per line each way; only the
runner's and the API's accounts may connect (file permissions). Requests:
``{"op": "wake"}`` and ``{"op": "snapshot", "owner", "path", "inputs": [paths]}``.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

MAX_LINE = 256 * 1024 * 1024


class RunnerUnavailable(Exception):
    """The runner does not answer on its socket."""


def wake(socket_path: str | Path) -> bool:
    """Tell the runner that runs or jobs changed; False when it is not listening (it looks
    at the database on its own every few seconds anyway)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(socket_path))
            s.sendall(b'{"op": "wake"}\n')
            s.recv(64)
        return True
    except OSError:
        return False


async def request(socket_path: str | Path, message: dict, timeout: float = 60) -> dict:
    """Send one request and return the runner's reply."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(socket_path), limit=MAX_LINE), timeout=5)
    except (OSError, asyncio.TimeoutError) as e:
        raise RunnerUnavailable(f"the job runner does not answer ({e})") from e
    try:
        writer.write(json.dumps(message).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=timeout)
    except (OSError, asyncio.TimeoutError) as e:
        raise RunnerUnavailable(f"the job runner did not answer ({type(e).__name__})") from e
    finally:
        writer.close()
    if not line:
        raise RunnerUnavailable("the job runner closed the connection")
    return json.loads(line)
