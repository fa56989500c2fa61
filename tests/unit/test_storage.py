"""Migrations of the platform API database, on SQLite and on the local PostgreSQL."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import inspect

from himalia.hub.storage import AuditEvent, Database, current_revision, head_revision, upgrade
from himalia_testing import PGDatabase, postgres_available, require_service


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'api.sqlite'}"
        return
    if not postgres_available():
        require_service("PostgreSQL is not reachable on 127.0.0.1:5432")
    database = PGDatabase(f"himalia_storage_{secrets.token_hex(3)}").create()
    try:
        yield database.url
    finally:
        database.drop()


def test_upgrade_creates_tables_and_is_idempotent(db_url):
    assert current_revision(db_url) is None
    upgrade(db_url)
    upgrade(db_url)
    assert current_revision(db_url) == head_revision()
    db = Database(db_url)
    try:
        assert "himalia_audit_log" in inspect(db.engine).get_table_names()
        db.audit("alice", "server.start", "alice/", profile="cpu")
        with db.session() as s:
            event = s.query(AuditEvent).one()
            assert (event.actor, event.action, event.detail) == ("alice", "server.start", {"profile": "cpu"})
    finally:
        db.close()
