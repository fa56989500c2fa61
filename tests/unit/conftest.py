"""Unit fixtures: an in-memory hub database with himalia's admins group and platform roles."""

from __future__ import annotations

import pytest
from jupyterhub import orm
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from himalia.hub.config import ADMIN_GROUP, ROLES


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
