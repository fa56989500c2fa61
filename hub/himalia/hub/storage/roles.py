"""The platform API's own PostgreSQL role, so the API never holds the hub's credentials.

When the hub's database is PostgreSQL and no API database is configured, ``himalia up``
creates (with the hub's credentials, which need CREATEROLE) a login role and a schema of
the same name in the hub's database; the role's search path is that schema. Tables there
belong to the API role, the hub's tables stay readable only by the hub's role.
"""

from __future__ import annotations

import re

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

#: PostgreSQL cuts identifiers at 63 bytes.
MAX_IDENTIFIER = 63


def api_role_name(hub_url: str) -> str:
    """``himalia_api_<hub database>``: one role (and schema) per installation."""
    database = make_url(hub_url).database or "postgres"
    return ("himalia_api_" + re.sub(r"[^a-z0-9_]", "_", database.lower()))[:MAX_IDENTIFIER]


def api_role_url(hub_url: str, password: str) -> str:
    """The hub's server and database, as the API's role."""
    url = make_url(hub_url).set(username=api_role_name(hub_url), password=password or None)
    return url.render_as_string(hide_password=False)


def same_role(url_a: str, url_b: str) -> bool:
    """Whether two PostgreSQL URLs log in as the same role on the same server."""
    a, b = make_url(url_a), make_url(url_b)
    return (a.username, a.host, a.port) == (b.username, b.host, b.port)


def provision_api_role(hub_url: str, password: str) -> str:
    """Create or update the API's role and schema; return the API's database URL."""
    role = api_role_name(hub_url)
    engine = create_engine(hub_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).scalar()
            verb = "ALTER" if exists else "CREATE"
            # Identifiers cannot be bound parameters; the name is [a-z0-9_] by construction.
            quoted = conn.execute(text("SELECT quote_literal(:p)"), {"p": password}).scalar()
            conn.execute(text(f'{verb} ROLE "{role}" WITH LOGIN NOINHERIT PASSWORD {quoted}'))
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{role}" AUTHORIZATION "{role}"'))
            database = conn.execute(text("SELECT current_database()")).scalar()
            conn.execute(text(f'ALTER ROLE "{role}" IN DATABASE "{database}" SET search_path = "{role}"'))
    finally:
        engine.dispose()
    return api_role_url(hub_url, password)
