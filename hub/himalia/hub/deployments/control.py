"""The deployment manager's control socket, as the API uses it.

A Unix stream socket in the state directory that only the manager's and the API's accounts may
open; one JSON object per line each way. Requests:

``{"op": "wake"}``
    Something changed in the database: the manager reloads its routes and API keys, answers,
    and then builds, starts or stops versions as needed. A revoked key stops working before
    the answer comes back.
``{"op": "check_model", "owner", "model_uri"}``
    Whether ``owner`` may read the MLflow model ``model_uri`` (the manager asks MLflow with a
    token of the owner, who is whom the build reads it as): ``{"ok", "run_id"}`` or
    ``{"ok": false, "status", "message"}``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from .service import DeployError


async def request(socket_path: str | Path, message: dict, timeout: float = 30) -> dict:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(socket_path)), 5)
    except (OSError, asyncio.TimeoutError) as e:
        raise DeployError(f"The deployment manager does not answer ({type(e).__name__}); "
                          "ask an admin to check 'himalia status'.", 503) from e
    try:
        writer.write(json.dumps(message).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except (OSError, asyncio.TimeoutError) as e:
        raise DeployError(f"The deployment manager did not answer ({type(e).__name__}).", 503) from e
    finally:
        writer.close()
    if not line:
        raise DeployError("The deployment manager closed the connection.", 503)
    return json.loads(line)


async def wake(socket_path: str | Path) -> bool:
    """False when the manager is not listening (it looks at the database every few seconds)."""
    try:
        await request(socket_path, {"op": "wake"}, timeout=10)
        return True
    except DeployError:
        return False


async def check_model(socket_path: str | Path, owner: str, model_uri: str) -> dict:
    reply = await request(socket_path, {"op": "check_model", "owner": owner, "model_uri": model_uri})
    if not reply.get("ok"):
        raise DeployError(reply.get("message") or "The model cannot be read.", reply.get("status", 422))
    return reply
