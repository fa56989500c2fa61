"""Health of the platform's parts: hub, proxy, database and each registered service."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import httpx

from ...storage import Database

CHECK_TIMEOUT = 3.0


def _result(ok: bool, detail: str) -> dict:
    return {"ok": ok, "detail": detail}


async def _http_ok(client: httpx.AsyncClient, url: str) -> dict:
    try:
        response = await client.get(url, timeout=CHECK_TIMEOUT)
    except httpx.HTTPError as e:
        return _result(False, f"{url}: {type(e).__name__}")
    # Any answer below 500 (an auth redirect included) means the process serves requests.
    return _result(response.status_code < 500, f"{url}: HTTP {response.status_code}")


async def _database_ok(db: Database) -> dict:
    try:
        await asyncio.to_thread(db.ping)
    except Exception as e:  # any driver error means the database is down for us
        return _result(False, f"{db.engine.dialect.name}: {type(e).__name__}: {e}".splitlines()[0])
    return _result(True, db.engine.dialect.name)


async def check_health(
    client: httpx.AsyncClient,
    *,
    hub_api_url: str,
    proxy_url: str,
    db: Database,
    list_services: Callable[[], Awaitable[dict]],
) -> dict:
    """Run every check concurrently; ``ok`` is true only when all parts are."""
    checks: dict[str, Awaitable[dict]] = {
        "hub": _http_ok(client, hub_api_url.rstrip("/") + "/"),
        "proxy": _http_ok(client, proxy_url.rstrip("/") + "/hub/health"),
        "database": _database_ok(db),
    }
    try:
        services = await list_services()
    except httpx.HTTPError as e:
        services = {}
        checks["services"] = asyncio.sleep(0, _result(False, f"cannot list services: {e}"))
    for name, model in sorted(services.items()):
        url = model.get("url")
        if url:
            prefix = model.get("prefix") or "/"
            checks[f"service:{name}"] = _http_ok(client, url.rstrip("/") + prefix)
        elif model.get("command"):
            # A managed service without a URL (the idle culler) is alive while the hub runs it.
            checks[f"service:{name}"] = asyncio.sleep(0, _result(bool(model.get("pid")), "managed"))
    names = list(checks)
    results = await asyncio.gather(*checks.values())
    parts = dict(zip(names, results, strict=True))
    return {"ok": all(r["ok"] for r in parts.values()), "services": parts}


def health_summary(report: dict) -> dict:
    """``report`` without the ``detail`` strings (internal URLs, database errors)."""
    return {
        "ok": report["ok"],
        "services": {name: {"ok": part["ok"]} for name, part in report["services"].items()},
    }
