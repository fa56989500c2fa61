"""Fixtures that run the real platform on 127.0.0.1 (see ``himalia_testing``)."""

from __future__ import annotations

import os
import shutil
import secrets
from pathlib import Path

import pytest

from himalia_testing import (PG_DSN, PGDatabase, Platform, postgres_available, reachable_temp_dir,
                             require_service)


_FEAST_METRICS = ("PROMETHEUS_MULTIPROCESS_DIR", "PROMETHEUS_MULTIPROC_DIR")
_STARTING_METRICS = {name: os.environ.get(name) for name in _FEAST_METRICS}


@pytest.fixture(autouse=True)
def _no_feast_metrics_folder_for_children():
    """Feast's metrics module, once imported here (tests compare with Feast itself), puts a
    private folder of this process in the environment; processes started later (platforms,
    commands, as other accounts too) must not inherit it."""
    yield
    for name, value in _STARTING_METRICS.items():
        if os.environ.get(name) != value:
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def proxy_bin() -> Path:
    """configurable-http-proxy installed once per test session (npm, ~2 s), where the tests'
    unprivileged accounts can run it too."""
    from himalia.hub.proxy import ensure_proxy

    prefix = reachable_temp_dir("himalia-chp-")
    os.chmod(prefix, 0o755)
    try:
        yield Path(ensure_proxy(prefix)).parent
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def _platform(request, proxy_bin, db: str) -> Platform:
    pg: PGDatabase | None = None
    if db == "postgres":
        if not postgres_available():
            require_service(f"PostgreSQL is not reachable at {PG_DSN}")
        # The hub's database; himalia makes the API's own role and schema in it. MLflow keeps
        # its own schema versions, so its backend store is a database of its own.
        pg = PGDatabase(f"himalia_hub_{secrets.token_hex(3)}").create()
        tracking_pg = PGDatabase(f"himalia_mlflow_{secrets.token_hex(3)}").create()
        platform = Platform(None, proxy_bin, db_url=pg.url)
        platform.write_config(tracking_db_url=tracking_pg.url.replace("postgresql://", "postgresql+psycopg://", 1))
    else:
        platform = Platform(None, proxy_bin)

    def finish():
        platform.close()
        if pg is not None:
            from himalia.hub.storage.roles import api_role_name

            pg.drop()
            pg.drop_role(api_role_name(pg.url))
            tracking_pg.drop()

    request.addfinalizer(finish)
    platform.start()
    return platform


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def platform(request, proxy_bin) -> Platform:
    """The platform on SQLite and on PostgreSQL (hub DB, and the API's own role in it)."""
    return _platform(request, proxy_bin, request.param)


@pytest.fixture(scope="module")
def sqlite_platform(request, proxy_bin) -> Platform:
    """The platform on its embedded defaults only, for tests that restart or stop it."""
    return _platform(request, proxy_bin, "sqlite")


def _unique_name(base: str = "u") -> str:
    return f"{base}{secrets.token_hex(3)}"


@pytest.fixture
def unique_name():
    """A fresh hub user name for each test (short: Unix account names are limited)."""
    return _unique_name


@pytest.fixture(scope="module")
def unique_name_module():
    """``unique_name`` for module-scoped fixtures."""
    return _unique_name
