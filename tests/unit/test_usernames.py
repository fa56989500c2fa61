"""User names are one person everywhere: normalised like login, or refused saying what is wrong.

The authenticator runs on an in-memory hub database with the name rule ``himalia up``
configures (the Unix account prefix ``jupyter-`` leaves 24 characters).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from jupyterhub import orm
from jupyterhub.apihandlers import users
from nativeauthenticator.orm import UserInfo
from tornado import web
from traitlets.config import Config

from himalia.hub import account_handlers
from himalia.hub.account_handlers import people
from himalia.hub.auth import ROUTES, HimaliaAuthenticator
from himalia.hub.unixusers import username_help, username_pattern

RULE = "at most 24 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"


@pytest.fixture
def db(hub_db):
    return hub_db


@pytest.fixture
def authenticator(db) -> HimaliaAuthenticator:
    c = Config()
    c.Authenticator.username_pattern = username_pattern("jupyter-")
    c.HimaliaAuthenticator.username_help = username_help("jupyter-")
    return HimaliaAuthenticator(config=c, _deprecated_db_session=db)


def refusal(authenticator, raw) -> str:
    with pytest.raises(web.HTTPError) as info:
        authenticator.checked_username(raw)
    assert info.value.status_code == 400
    return info.value.log_message


def test_capitals_become_lowercase_as_at_login(authenticator):
    assert authenticator.checked_username("Bob") == "bob"
    assert authenticator.checked_username("ADA_lovelace-2") == "ada_lovelace-2"


@pytest.mark.parametrize("raw,fault", [
    ("a" * 25, "has 25 characters, too many"),
    ("Ann Lee", "' ' is not allowed"),
    ("ann.lee", "'.' is not allowed"),
    ("x/y,z", "',', '/' are not allowed"),
    ("-x", "starts with '-'"),
    ("", "is empty"),
    (7, "is not a string"),
])
def test_an_invalid_name_is_a_400_saying_what_is_wrong_and_what_is_allowed(authenticator, raw,
                                                                           fault):
    assert refusal(authenticator, raw) == f"Invalid user name {raw!r}: {fault}. Allowed: {RULE}."


def test_the_longest_name_fits(authenticator):
    assert authenticator.checked_username("a" * 24) == "a" * 24


def test_a_very_long_name_is_cut_short_in_the_message(authenticator):
    message = refusal(authenticator, "b" * 300)
    assert "has 300 characters, too many" in message
    assert "b" * 40 not in message


def test_a_batch_names_each_bad_name_and_why(authenticator):
    message = authenticator.refused_usernames(["ok", "Ann Lee", "a" * 25, "Fine"])
    assert message == (
        "No user was created: 2 of 4 names are invalid: 'Ann Lee' (' ' is not allowed), "
        f"'{'a' * 25}' (has 25 characters, too many). Allowed: {RULE}."
    )
    assert authenticator.refused_usernames(["ok", "Fine"]) is None


def test_the_user_api_is_checked_before_jupyterhubs_own_handlers(authenticator):
    app = SimpleNamespace(template_vars={})
    handlers = authenticator.get_handlers(app)
    paths = [path for path, _ in handlers]

    assert {r"/api/users", r"/api/users/([^/]+)"} <= set(paths)
    assert dict(ROUTES)[r"/api/users"] is account_handlers.UserListAPIHandler
    assert issubclass(account_handlers.UserListAPIHandler, users.UserListAPIHandler)
    assert issubclass(account_handlers.UserAPIHandler, users.UserAPIHandler)


def test_hub_pages_get_the_name_rule_and_the_pending_sign_up_count(authenticator, db):
    app = SimpleNamespace(template_vars={"himalia_username_rule": "configured"})
    authenticator.get_handlers(app)
    count = app.template_vars["himalia_pending_signups"]
    db.add_all([UserInfo(username="new1", password=b"x"), UserInfo(username="new2", password=b"x"),
                UserInfo(username="ok", password=b"x", is_authorized=True)])
    db.commit()

    assert count(SimpleNamespace(name="admin")) == 2
    assert count(None) == 0
    assert app.template_vars["himalia_username_rule"] == "configured"


def test_people_lists_users_and_sign_ups_with_role_password_and_what_is_pending(authenticator,
                                                                               db):
    ada = orm.User(name="ada")
    bob = orm.User(name="bob")
    db.add_all([ada, bob])
    db.commit()
    authenticator.invite(bob, "viewer", created_by="admin")
    authenticator.assign_role(ada, "scientist")
    db.add_all([UserInfo(username="ada", password=b"x", is_authorized=True),
                UserInfo(username="carl", password=b"x")])
    db.commit()

    rows = {person.name: person for person in people(db, authenticator)}

    assert [name for name in rows] == ["ada", "bob", "carl"]
    assert (rows["ada"].role, rows["ada"].has_password, rows["ada"].invitation) == (
        "scientist", True, None)
    assert (rows["bob"].role, rows["bob"].has_password) == ("viewer", False)
    assert rows["bob"].invitation.role == "viewer"
    assert rows["carl"].sign_up_pending and not rows["carl"].hub_user
