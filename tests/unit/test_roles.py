"""On the hub's PostgreSQL, the platform API logs in as a role of its own (the local server)."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError

from himalia.hub.storage import current_revision, head_revision, upgrade
from himalia.hub.storage.roles import api_role_name, provision_api_role, same_role
from himalia_testing import PGDatabase, postgres_available, require_service

pytestmark = pytest.mark.postgres


@pytest.fixture
def hub_db():
    if not postgres_available():
        require_service("PostgreSQL is not reachable on 127.0.0.1:5432")
    db = PGDatabase(f"himalia_roles_{secrets.token_hex(3)}").create()
    try:
        yield db
    finally:
        db.drop()
        db.drop_role(api_role_name(db.url))


def test_the_api_role_owns_its_schema_and_cannot_read_the_hubs_tables(hub_db):
    hub = create_engine(hub_db.url)
    with hub.begin() as conn:
        conn.execute(text("CREATE TABLE api_tokens (hashed text)"))
        conn.execute(text("INSERT INTO api_tokens VALUES ('hub-secret')"))
    api_url = provision_api_role(hub_db.url, "pw-" + secrets.token_hex(4))
    assert api_url.split("://")[1].startswith(api_role_name(hub_db.url) + ":")
    upgrade(api_url)
    assert current_revision(api_url) == head_revision()
    api = create_engine(api_url)
    try:
        with api.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar()
            assert schema == api_role_name(hub_db.url)
            tables = conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")).scalars().all()
            assert "himalia_audit_log" in tables
            with pytest.raises(ProgrammingError, match="permission denied"):
                conn.execute(text("SELECT * FROM public.api_tokens"))
    finally:
        api.dispose()
        hub.dispose()


def test_provisioning_again_keeps_the_data_and_sets_the_new_password(hub_db):
    url = provision_api_role(hub_db.url, "first")
    upgrade(url)
    again = provision_api_role(hub_db.url, "second")
    assert ":second@" in again
    assert current_revision(again) == head_revision()


def test_same_role_compares_user_host_and_port():
    assert same_role("postgresql://hub@db:5432/a", "postgresql://hub@db:5432/b")
    assert not same_role("postgresql://hub@db:5432/a", "postgresql://api@db:5432/a")
    assert not same_role("postgresql://hub@db:5432/a", "postgresql://hub@other:5432/a")
