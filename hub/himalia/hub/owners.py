"""What the platform's services need to act for a hub user: their Unix account and hub tokens.

The job runner and the deployment manager run people's code (kernels, ``bentoml serve``) as the
person: as their own Unix account when the platform runs as root with system users (the same
account their server uses), else as the platform's account with a home under the state
directory. Tokens are minted through the hub's API (the service needs the ``tokens`` scope).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

import httpx

from .supervisor import die_with_parent
from .unixusers import AccountError, AccountRegistry, unix_name

#: A person's account is looked up again after this long (a person deleted and made again gets
#: a new account, never the old one's).
ACCOUNT_TTL = 30.0


def files_root(owner: str, *, system_users: bool, user_prefix: str, users_root: str) -> PurePosixPath:
    """Where ``owner``'s own files are: their Unix account's home with system users, else their
    folder under the state directory (``users_root``); :class:`AccountError` when their
    account does not exist yet."""
    if system_users:
        try:
            return PurePosixPath(pwd.getpwnam(unix_name(user_prefix, owner)).pw_dir)
        except KeyError:
            raise AccountError(f"{owner} has no Unix account yet") from None
    return PurePosixPath(users_root) / owner


@dataclass
class Account:
    name: str
    home: str
    uid: int | None = None
    gid: int | None = None

    def popen_user(self) -> dict:
        """``subprocess`` keyword arguments that run a child as this account (none for the
        platform's own account)."""
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def child_setup(self):
        """A ``preexec_fn`` (for event loops whose subprocesses take no ``user=``): become this
        account, then get SIGKILL when the starting thread ends (the kernel clears that signal
        on a change of credentials, so it is set after)."""
        uid, gid = self.uid, self.gid

        def setup() -> None:
            if uid is not None:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
            die_with_parent()

        return setup


class Owners:
    def __init__(self, http: httpx.AsyncClient, hub_api_url: str, hub_token: str, *,
                 state_dir: str, system_users: bool = False, user_prefix: str = "jupyter-",
                 account_registry: str = "", home_root: str = "/home"):
        self.http = http
        self.hub_api_url = hub_api_url.rstrip("/")
        self.hub_token = hub_token
        self.state_dir = state_dir
        self.system_users = system_users
        self.user_prefix = user_prefix
        self.account_registry = account_registry
        self.home_root = home_root
        self._accounts: dict[str, tuple[float, Account]] = {}

    def _headers(self) -> dict:
        return {"Authorization": f"token {self.hub_token}"}

    async def account(self, owner: str) -> Account:
        cached = self._accounts.get(owner)
        if cached and time.monotonic() - cached[0] < ACCOUNT_TTL:
            return cached[1]
        account = await self._account(owner)
        self._accounts[owner] = (time.monotonic(), account)
        return account

    async def _account(self, owner: str) -> Account:
        if self.system_users:
            name = unix_name(self.user_prefix, owner)
            created = await self.hub_created(owner)
            registry = AccountRegistry(self.account_registry, self.home_root)
            entry = await asyncio.to_thread(registry.ensure, name, f"hub-user:?:{created}")
            return Account(name, entry.pw_dir, entry.pw_uid, entry.pw_gid)
        home = Path(self.state_dir) / "users" / owner
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return Account(pwd.getpwuid(os.getuid()).pw_name, str(home))

    async def hub_created(self, owner: str) -> str:
        """The hub's creation time of ``owner``, which names their Unix account's owner."""
        response = await self.http.get(f"{self.hub_api_url}/users/{owner}", headers=self._headers())
        if response.status_code == 404:
            raise AccountError(f"the hub has no user {owner!r} any more")
        response.raise_for_status()
        created = response.json().get("created") or ""
        return datetime.fromisoformat(created.replace("Z", "+00:00")).replace(tzinfo=None).isoformat()

    async def mint_token(self, owner: str, note: str, seconds: int, scopes: list[str]) -> tuple[str, str]:
        """A new hub token of ``owner``: (token, its id)."""
        response = await self.http.post(
            f"{self.hub_api_url}/users/{owner}/tokens", headers=self._headers(),
            json={"note": note, "expires_in": seconds, "scopes": scopes})
        response.raise_for_status()
        body = response.json()
        return body["token"], body["id"]

    async def revoke_token(self, owner: str, token_id: str) -> bool:
        try:
            await self.http.delete(f"{self.hub_api_url}/users/{owner}/tokens/{token_id}",
                                   headers=self._headers())
            return True
        except httpx.HTTPError:
            return False
