"""Single-user servers as local processes, one Unix account per hub user when run as root."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from jupyterhub.utils import maybe_future
from tornado import web
from traitlets import Bool, Unicode

from .profiles import Profile, ProfileSpawnerMixin, local_overrides



# Unix account names: lower case, start with a letter, at most 32 characters.
MAX_UNIX_NAME = 32


class SpawnError(web.HTTPError):
    """A spawn failure the user can act on (shown on the spawn page and in the REST reply)."""

    def __init__(self, message: str, status: int = 500):
        super().__init__(status, log_message=message)
        self.jupyterhub_message = message


def unix_name(prefix: str, hub_name: str) -> str:
    """The Unix account of a hub user: prefix + name, escaped to what ``useradd`` accepts."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in hub_name.lower())
    name = prefix + safe
    if len(name) > MAX_UNIX_NAME:
        raise SpawnError(
            f"The user name {hub_name!r} is too long for a Unix account "
            f"(at most {MAX_UNIX_NAME - len(prefix)} characters)."
        )
    return name


def ensure_unix_user(name: str, home_root: str = "/home") -> pwd.struct_passwd:
    """Create the account (home 0700, no password login) unless it exists; return it."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    home = os.path.join(home_root, name)
    subprocess.run(
        ["useradd", "--create-home", "--home-dir", home, "--shell", "/bin/bash",
         "--user-group", name],
        check=True, capture_output=True, text=True,
    )
    os.chmod(home, 0o700)
    return pwd.getpwnam(name)


class HimaliaLocalSpawner(ProfileSpawnerMixin, LocalProcessSpawner):
    """Local processes with profiles; real Unix users when ``system_users`` is on.

    With ``system_users`` (the default as root) each hub user gets the account
    ``<system_user_prefix><name>``, created on first spawn with a private home, and the
    server runs as that account. Without it every server runs as the hub's own user in
    ``<state-dir>/users/<name>``.
    """

    system_users = Bool(
        True, help="Run each server as the user's own Unix account (needs root)."
    ).tag(config=True)

    system_user_prefix = Unicode(
        "jupyter-", help="Prefix of the Unix account made for each hub user."
    ).tag(config=True)

    system_home_root = Unicode(
        "/home", help="Directory under which Unix accounts get their home."
    ).tag(config=True)

    shared_home_root = Unicode(
        "", help="Directory of per-user folders when ``system_users`` is off."
    ).tag(config=True)

    def profile_overrides(self, profile: Profile) -> dict:
        return local_overrides(profile)

    @property
    def system_user(self) -> str:
        return unix_name(self.system_user_prefix, self.user.name)

    @property
    def home(self) -> str:
        if self.system_users:
            return pwd.getpwnam(self.system_user).pw_dir
        return str(Path(self.shared_home_root) / self.user.name)

    async def start(self):
        if self.system_users:
            if os.geteuid() != 0:
                raise SpawnError("system_users needs the hub to run as root.")
            try:
                ensure_unix_user(self.system_user, self.system_home_root)
            except subprocess.CalledProcessError as e:
                self.log.error("useradd %s failed: %s", self.system_user, e.stderr.strip())
                raise SpawnError(f"Could not create the Unix account for {self.user.name}.") from e
        else:
            os.makedirs(self.home, mode=0o700, exist_ok=True)
        self.notebook_dir = self.notebook_dir or self.home
        return await maybe_future(super().start())

    def get_args(self):
        args = super().get_args()
        if not self.system_users and os.geteuid() == 0:
            # Single-account mode started by root: the server runs as root, knowingly.
            args.append("--ServerApp.allow_root=True")
        return args

    def make_preexec_fn(self, name):
        if self.system_users:
            return set_user_setuid(self.system_user)
        home = self.home

        def preexec():
            os.chdir(home)

        return preexec

    def user_env(self, env):
        if self.system_users:
            account = pwd.getpwnam(self.system_user)
            env.update(USER=account.pw_name, HOME=account.pw_dir, SHELL=account.pw_shell)
        else:
            env.update(USER=self.user.name, HOME=self.home, SHELL="/bin/bash")
        return env

    def move_certs(self, paths):
        if self.system_users:
            return super().move_certs(paths)
        return paths
