"""Hub names map one-to-one onto Unix accounts, and himalia never adopts an account it did not make.

The registry tests create real Unix accounts (they need root, as the platform does for
per-user accounts) under a random prefix and remove them afterwards.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import subprocess
from datetime import datetime
from types import SimpleNamespace

import pytest
from traitlets import TraitError

from himalia.hub.config import HimaliaConfig
from himalia.hub.unixusers import (AccountError, AccountRegistry, hub_user_owner, max_name_length,
                                   unix_name, username_pattern)
from himalia_testing import require_service


def test_names_that_would_share_an_account_cannot_both_exist():
    assert unix_name("jupyter-", "ann-lee") == "jupyter-ann-lee"
    # Before, "ann.lee" and "ann+lee" also became jupyter-ann-lee.
    for name in ("ann.lee", "ann+lee", "Ann-Lee", "ann lee", "../etc", "-rf", ""):
        with pytest.raises(AccountError, match="cannot be a Unix account"):
            unix_name("jupyter-", name)


def test_the_length_limit_follows_the_prefix():
    assert max_name_length("jupyter-") == 24
    pattern = re.compile(username_pattern("jupyter-"))
    assert pattern.match("a" * 24) and not pattern.match("a" * 25)
    assert unix_name("jupyter-", "x" * 24) == "jupyter-" + "x" * 24
    with pytest.raises(AccountError, match="at most 24 characters"):
        unix_name("jupyter-", "x" * 25)
    assert max_name_length("u-") == 30


@pytest.mark.parametrize("prefix", ["", "root", "Jupyter-", "9x-", "a b", "x" * 17, "-x"])
def test_bad_prefixes_are_refused_with_what_is_allowed(prefix):
    if prefix == "root":
        # A valid-looking prefix still never adopts the existing root account (see below).
        assert HimaliaConfig(system_user_prefix=prefix).system_user_prefix == "root"
        return
    with pytest.raises(TraitError, match="system_user_prefix .* must be 1 to 16 characters"):
        HimaliaConfig(system_user_prefix=prefix)


def test_owner_keys_differ_for_a_user_deleted_and_created_again():
    first = SimpleNamespace(id=5, created=datetime(2026, 1, 1))
    again = SimpleNamespace(id=5, created=datetime(2026, 2, 1))
    assert hub_user_owner(first) != hub_user_owner(again)


@pytest.fixture
def registry(tmp_path):
    if os.geteuid() != 0:
        require_service("creating Unix accounts needs root")
    prefix = f"hu{secrets.token_hex(2)}-"
    home = tmp_path / "home"
    home.mkdir()
    reg = AccountRegistry(tmp_path / "accounts.json", str(home))
    reg.prefix = prefix
    yield reg
    for account in pwd.getpwall():
        if account.pw_name.startswith(prefix):
            subprocess.run(["userdel", "--remove", "--force", account.pw_name], capture_output=True)


def test_an_account_is_created_once_and_kept_for_its_owner(registry):
    name = registry.prefix + "ada"
    made = registry.ensure(name, "hub-user:1:t")
    assert made.pw_name == name
    assert oct(os.stat(made.pw_dir).st_mode & 0o777) == "0o700"
    assert registry.ensure(name, "hub-user:1:t").pw_uid == made.pw_uid
    record = registry.records()[name]
    assert record["uid"] == made.pw_uid and record["owner"] == "hub-user:1:t"
    assert oct(registry.path.stat().st_mode & 0o777) == "0o600"


def test_an_existing_account_himalia_did_not_create_is_never_adopted(registry):
    for existing in ("root", "daemon"):
        with pytest.raises(AccountError, match="himalia did not create it"):
            registry.ensure(existing, "hub-user:1:t")
    other = registry.prefix + "other"
    subprocess.run(["useradd", "--", other], check=True)
    with pytest.raises(AccountError, match=f"userdel {other}"):
        registry.ensure(other, "hub-user:2:t")
    assert other not in registry.records()


def test_a_deleted_users_leftover_account_is_not_handed_to_the_next_person_of_that_name(registry):
    name = registry.prefix + "bob"
    registry.ensure(name, "hub-user:7:2026-01-01")
    with pytest.raises(AccountError, match="belongs to an earlier user"):
        registry.ensure(name, "hub-user:9:2026-03-01")
    # Once an admin removed it, the new person gets a fresh account.
    subprocess.run(["userdel", "--remove", "--", name], check=True)
    fresh = registry.ensure(name, "hub-user:9:2026-03-01")
    assert registry.records()[name]["owner"] == "hub-user:9:2026-03-01"
    assert registry.records()[name]["uid"] == fresh.pw_uid


def test_a_recorded_account_replaced_by_another_uid_is_refused(registry):
    name = registry.prefix + "eve"
    registry.ensure(name, "hub-user:3:t")
    subprocess.run(["userdel", "--remove", "--", name], check=True)
    subprocess.run(["useradd", "--uid", str(pwd.getpwnam("nobody").pw_uid + 1000), "--", name], check=True)
    with pytest.raises(AccountError, match="himalia did not create it"):
        registry.ensure(name, "hub-user:3:t")


def test_names_that_look_like_options_reach_useradd_as_names(registry):
    # With "--" before the name, useradd never reads a name as an option: without it,
    # "--help" prints the help, exits 0, and no account exists afterwards.
    with pytest.raises(AccountError, match="invalid user name '--help'"):
        registry.ensure("--help", "hub-user:4:t")


def test_the_service_account_is_a_system_account_without_a_login_shell(registry):
    account = registry.ensure(registry.prefix + "svc", "service", system=True)
    assert account.pw_shell == "/usr/sbin/nologin"
    assert account.pw_uid < 1000
