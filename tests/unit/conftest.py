"""Unit fixtures: an in-memory hub database with himalia's admins group and platform roles, and
the platform API's database at its newest migration (SQLite, and PostgreSQL when it runs here)."""

from __future__ import annotations

import pytest
from jupyterhub import orm
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from himalia.hub.config import ADMIN_GROUP, ROLES
from himalia.hub.storage import Database, upgrade


@pytest.fixture
def hub_db():
    engine = create_engine("sqlite://")
    orm.Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(orm.Group(name=ADMIN_GROUP))
        for role in (*ROLES, "user"):
            session.add(orm.Role(name=role))
        session.commit()
        yield session


@pytest.fixture(params=["sqlite", "postgres"])
def api_db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/api.sqlite"
        pg = None
    else:
        from himalia_testing import PGDatabase, postgres_available, require_service

        if not postgres_available():
            require_service("PostgreSQL is not reachable")
        pg = PGDatabase(f"himalia_unit_{tmp_path.name[-8:].lower().replace('-', '_')}").create()
        url = pg.url
    upgrade(url)
    database = Database(url)
    yield database
    database.close()
    if pg is not None:
        pg.drop()
