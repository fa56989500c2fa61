"""Platform roles on an in-memory hub database: admins are a group, scientists and viewers hold
the hub role itself; every new user gets the default role; old role groups are migrated."""

from __future__ import annotations

import asyncio

import pytest
from jupyterhub import orm
from sqlalchemy.orm import Session
from traitlets.config import Config

from himalia.hub.auth import HimaliaAuthenticator, platform_role_of, set_platform_role
from himalia.hub.config import ADMIN_GROUP, ROLES


@pytest.fixture
def db(hub_db):
    return hub_db


def user(db, name: str) -> orm.User:
    u = orm.User(name=name)
    db.add(u)
    db.commit()
    return u


def names(entities) -> set[str]:
    return {e.name for e in entities}


def test_a_role_is_exactly_one_thing(db):
    ada = user(db, "ada")
    assert platform_role_of(ada) is None
    set_platform_role(db, ada, "scientist")
    assert platform_role_of(ada) == "scientist" and ada.groups == []
    assert "scientist" in names(ada.roles)
    set_platform_role(db, ada, "viewer")
    assert platform_role_of(ada) == "viewer" and "scientist" not in names(ada.roles)
    set_platform_role(db, ada, "admin")
    assert platform_role_of(ada) == "admin" and names(ada.groups) == {ADMIN_GROUP}
    assert not {"scientist", "viewer"} & names(ada.roles)
    set_platform_role(db, ada, None)
    assert platform_role_of(ada) is None and ada.groups == []


def test_users_of_the_old_role_groups_get_the_role_itself_at_start(db):
    scientists, viewers = orm.Group(name="scientists"), orm.Group(name="viewers")
    db.add_all([scientists, viewers])
    sam, val = user(db, "sam"), user(db, "val")
    scientists.users.append(sam)
    viewers.users.append(val)
    db.commit()
    HimaliaAuthenticator(config=Config(), _deprecated_db_session=db)
    assert platform_role_of(sam) == "scientist" and platform_role_of(val) == "viewer"
    assert scientists.users == [] and viewers.users == []


@pytest.mark.parametrize("default", ["scientist", "viewer"])
def test_a_new_user_gets_the_default_role(db, default):
    c = Config()
    c.HimaliaAuthenticator.default_role = default
    authenticator = HimaliaAuthenticator(config=c, _deprecated_db_session=db)
    new = user(db, "new")
    asyncio.run(authenticator.add_user(new))
    assert platform_role_of(new) == default
    # Someone who already has a role keeps it.
    set_platform_role(db, new, "admin")
    asyncio.run(authenticator.add_user(new))
    assert platform_role_of(new) == "admin"


def test_the_current_members_are_read_so_a_restart_keeps_them(tmp_path):
    from sqlalchemy import create_engine

    from himalia.hub.auth import role_members
    from himalia.hub.config import HimaliaConfig
    from himalia.hub.hubconfig import Runtime, build_hub_config

    url = f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"
    assert role_members(url) == {"scientist": [], "viewer": [], "labeler": []}  # no hub tables yet
    engine = create_engine(url)
    orm.Base.metadata.create_all(engine)
    with Session(engine) as db:
        db.add(orm.Group(name=ADMIN_GROUP))
        for role in (*ROLES, "user"):
            db.add(orm.Role(name=role))
        legacy = orm.Group(name="viewers")
        db.add(legacy)
        db.commit()
        for name, role in (("ada", "scientist"), ("bo", "viewer"), ("cy", None), ("di", "labeler")):
            set_platform_role(db, user(db, name), role)
        legacy.users.append(user(db, "old"))
        db.commit()
    engine.dispose()

    members = role_members(url)
    assert members == {"scientist": ["ada"], "viewer": ["bo", "old"], "labeler": ["di"]}
    runtime = Runtime(hub_port=1, api_port=2, proxy_api_port=3)
    config = build_hub_config(HimaliaConfig(state_dir=str(tmp_path)), runtime, role_members=members)
    listed = {r["name"]: r.get("users") for r in config.JupyterHub.load_roles}
    assert listed["scientist"] == ["ada"] and listed["viewer"] == ["bo", "old"]
