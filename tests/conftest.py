"""Fixtures that run the real platform on 127.0.0.1 (see ``himalia_testing``)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from himalia_testing import PG_DSN, PGDatabase, Platform, postgres_available, require_service


@pytest.fixture(scope="session")
def proxy_bin(tmp_path_factory) -> Path:
    """configurable-http-proxy installed once per test session (npm, ~2 s)."""
    from himalia.hub.proxy import ensure_proxy

    prefix = tmp_path_factory.mktemp("chp")
    return Path(ensure_proxy(prefix)).parent


def _platform(request, tmp_path_factory, proxy_bin, db: str) -> Platform:
    state = tmp_path_factory.mktemp(f"himalia-{db}") / "state"
    pg: list[PGDatabase] = []
    if db == "postgres":
        if not postgres_available():
            require_service(f"PostgreSQL is not reachable at {PG_DSN}")
        tag = secrets.token_hex(3)
        pg = [PGDatabase(f"himalia_hub_{tag}").create(), PGDatabase(f"himalia_api_{tag}").create()]
        platform = Platform(state, proxy_bin, db_url=pg[0].url, api_db_url=pg[1].url)
    else:
        platform = Platform(state, proxy_bin)

    def finish():
        platform.stop()
        platform.remove_unix_accounts()
        for database in pg:
            database.drop()

    request.addfinalizer(finish)
    platform.start()
    return platform


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def platform(request, tmp_path_factory, proxy_bin) -> Platform:
    """The platform on SQLite and on PostgreSQL (hub DB and API DB)."""
    return _platform(request, tmp_path_factory, proxy_bin, request.param)


@pytest.fixture(scope="module")
def sqlite_platform(request, tmp_path_factory, proxy_bin) -> Platform:
    """The platform on its embedded defaults only, for tests that restart or stop it."""
    return _platform(request, tmp_path_factory, proxy_bin, "sqlite")


@pytest.fixture
def unique_name():
    """A fresh hub user name for each test (short: Unix account names are limited)."""
    return lambda base="u": f"{base}{secrets.token_hex(3)}"
