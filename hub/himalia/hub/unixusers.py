"""Hub users and the Unix accounts their servers run as: one account per person, never adopted.

A hub name maps to ``<prefix><name>`` unchanged, and only names made of ``a-z``, ``0-9``,
``_`` and ``-`` are accepted (the hub refuses others when the user is created), so the
mapping is one-to-one. himalia records every account it creates, with its uid and the hub
user it was made for, in ``<state-dir>/accounts.json``; an account it did not create, or
made for someone else (a deleted user's leftovers), is never handed to anyone.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .config import MAX_UNIX_NAME, write_private

#: What a hub user name may contain (after the hub lower-cases it).
HUB_NAME_CHARS = "a-z0-9_-"


class AccountError(Exception):
    """An account cannot be used or created; the message says what an admin can do."""


def max_name_length(prefix: str) -> int:
    """The longest hub name whose account name still fits ``useradd``'s limit."""
    return MAX_UNIX_NAME - len(prefix)


def username_pattern(prefix: str) -> str:
    """The hub's ``Authenticator.username_pattern`` for this account prefix."""
    return rf"^[a-z0-9][{HUB_NAME_CHARS}]{{0,{max_name_length(prefix) - 1}}}$"


def username_help(prefix: str) -> str:
    """The rule of :func:`username_pattern` in words, for people choosing a name."""
    return (f"at most {max_name_length(prefix)} characters of a-z, 0-9, '_' and '-', starting "
            "with a letter or digit")


def unix_name(prefix: str, hub_name: str) -> str:
    """The Unix account of a hub user: ``prefix + hub_name``, or AccountError."""
    if not re.fullmatch(username_pattern(prefix), hub_name):
        raise AccountError(
            f"The user name {hub_name!r} cannot be a Unix account: use {username_help(prefix)}."
        )
    return prefix + hub_name


class AccountRegistry:
    """The accounts himalia created, in a root-only JSON file (atomic writes, file lock)."""

    def __init__(self, path: str | os.PathLike, home_root: str = "/home"):
        self.path = Path(path)
        self.home_root = home_root

    @contextmanager
    def _locked(self) -> Iterator[dict]:
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            records = json.loads(self.path.read_text()) if self.path.exists() else {}
            before = json.dumps(records, sort_keys=True)
            yield records
            if json.dumps(records, sort_keys=True) != before:
                write_private(self.path, json.dumps(records, indent=1, sort_keys=True))
        finally:
            os.close(fd)

    def records(self) -> dict:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def ensure(self, name: str, owner: str, *, system: bool = False) -> pwd.struct_passwd:
        """The account ``name`` for ``owner``, created (home 0700, or a system account) if absent.

        ``owner`` identifies who the account is for (a hub user's id and creation time, or
        ``service``); an existing account is used only when himalia created it for that owner.
        """
        with self._locked() as records:
            try:
                account = pwd.getpwnam(name)
            except KeyError:
                account = None
            if account is not None:
                record = records.get(name)
                if record is None or record.get("uid") != account.pw_uid:
                    raise AccountError(
                        f"The Unix account {name} already exists and himalia did not create it; "
                        f"remove it (userdel {name}) or choose another "
                        "c.HimaliaConfig.system_user_prefix."
                    )
                if not same_owner(record.get("owner", ""), owner):
                    raise AccountError(
                        f"The Unix account {name} belongs to an earlier user of the same name; "
                        f"an admin must keep what it needs from {account.pw_dir} and remove it "
                        f"(userdel --remove {name}) before this user can start a server."
                    )
                return account
            self._create(name, system)
            account = pwd.getpwnam(name)
            records[name] = {
                "uid": account.pw_uid,
                "owner": owner,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            return account

    def _create(self, name: str, system: bool) -> None:
        if system:
            argv = ["useradd", "--system", "--user-group", "--no-create-home",
                    "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", "--", name]
        else:
            home = os.path.join(self.home_root, name)
            argv = ["useradd", "--create-home", "--home-dir", home, "--shell", "/bin/bash",
                    "--user-group", "--", name]
        try:
            subprocess.run(argv, check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as e:
            raise AccountError(f"useradd {name} failed: {e.stderr.strip()}") from e
        if not system:
            os.chmod(os.path.join(self.home_root, name), 0o700)


def same_owner(recorded: str, wanted: str) -> bool:
    """Whether a registry record's owner is ``wanted``. A hub user is known by id and creation
    time (``hub-user:<id>:<created>``); services that see the hub's REST API only know the
    creation time and ask with the id ``?``: the creation time alone tells people apart."""
    if recorded == wanted:
        return True
    a, b = recorded.split(":", 2), wanted.split(":", 2)
    return (len(a) == len(b) == 3 and a[0] == b[0] == "hub-user" and a[2] == b[2]
            and "?" in (a[1], b[1]))


def hub_user_owner(user) -> str:
    """The registry's owner key of a hub user: its database id and creation time.

    A user deleted and created again under the same name gets a new key, so it never
    inherits the earlier person's account.
    """
    created = getattr(user, "created", None)
    stamp = created.isoformat() if created else ""
    return f"hub-user:{user.id}:{stamp}"
