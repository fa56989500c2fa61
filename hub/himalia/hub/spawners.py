"""Single-user servers as local processes, one Unix account per hub user when run as root."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from jupyterhub.utils import maybe_future
from tornado import web
from traitlets import Bool, List, Unicode, default

from .profiles import Profile, ProfileSpawnerMixin, local_overrides
from .unixusers import AccountError, AccountRegistry, hub_user_owner, unix_name
from .userenv import user_environment

class SpawnError(web.HTTPError):
    """A spawn failure the user can act on (shown on the spawn page and in the REST reply)."""

    def __init__(self, message: str, status: int = 500):
        super().__init__(status, log_message=message)
        self.jupyterhub_message = message


def detect_nvidia_gpus(root: str = "/proc/driver/nvidia/gpus") -> list[str]:
    """CUDA device ids of the NVIDIA GPUs the driver reports (none without a driver)."""
    try:
        return [str(i) for i in range(len(os.listdir(root)))]
    except OSError:
        return []


class GPUAllocator:
    """Which local GPUs each running server holds, so two servers never share one."""

    def __init__(self):
        self._held: dict[str, list[str]] = {}

    def claim(self, owner: str, count: int, available: list[str]) -> list[str]:
        self.release(owner)
        busy = {gpu for ids in self._held.values() for gpu in ids}
        free = [gpu for gpu in available if gpu not in busy]
        if len(free) < count:
            raise SpawnError(
                f"This profile needs {count} GPU(s) but {len(free)} of {len(available)} are free: "
                "stop another GPU server or pick a CPU profile.",
                status=503,
            )
        self._held[owner] = free[:count]
        return self._held[owner]

    def hold(self, owner: str, ids: list[str]) -> None:
        """Record GPUs a server held before a hub restart."""
        self._held[owner] = list(ids)

    def release(self, owner: str) -> None:
        self._held.pop(owner, None)


#: One allocator per hub process, shared by all local spawners.
GPUS = GPUAllocator()


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

    account_registry = Unicode(
        "",
        help="""File recording the Unix accounts himalia created (``<state-dir>/accounts.json``).

        An existing account not recorded there for this very hub user is never used.
        """,
    ).tag(config=True)

    user_environment = Unicode(
        "",
        help="""The user overlay environment that servers run in (``himalia up`` makes it).

        Its ``bin`` folder, after the user's ``~/.local/bin``, comes first on the server's PATH,
        and every pip install there goes to the user's own site-packages in their home (see
        docs/user-environment.md). Pair it with ``c.Spawner.cmd`` running its Python. Empty:
        servers get no such environment.
        """,
    ).tag(config=True)

    local_gpu_ids = List(
        Unicode(),
        help="""CUDA device ids handed out to servers with GPU profiles, one server per device.

        Empty means the NVIDIA GPUs the driver reports under /proc/driver/nvidia/gpus.
        """,
    ).tag(config=True)

    @default("local_gpu_ids")
    def _default_local_gpu_ids(self):
        return detect_nvidia_gpus()

    gpu_ids = List(Unicode(), help="GPUs this server holds (kept across hub restarts).")

    @property
    def _gpu_owner(self) -> str:
        return f"{self.user.name}/{self.name}"

    def profile_unavailable(self, profile: Profile) -> str | None:
        """A GPU profile on a host with too few GPUs is shown disabled, and refused, saying why."""
        have = len(self.local_gpu_ids)
        if profile.gpus > have:
            return f"it needs {profile.gpus} GPU(s) and this host has {have or 'none'}"
        return None

    def profile_overrides(self, profile: Profile) -> dict:
        if profile.gpus:
            self.gpu_ids = GPUS.claim(self._gpu_owner, profile.gpus, self.local_gpu_ids)
        else:
            GPUS.release(self._gpu_owner)
            self.gpu_ids = []
        return local_overrides(profile, self.gpu_ids or None)

    def get_state(self):
        state = super().get_state()
        if self.gpu_ids:
            state["gpu_ids"] = list(self.gpu_ids)
        return state

    def load_state(self, state):
        super().load_state(state)
        if state.get("gpu_ids"):
            self.gpu_ids = list(state["gpu_ids"])
            GPUS.hold(self._gpu_owner, self.gpu_ids)

    def clear_state(self):
        super().clear_state()
        GPUS.release(self._gpu_owner)
        self.gpu_ids = []

    @property
    def system_user(self) -> str:
        try:
            return unix_name(self.system_user_prefix, self.user.name)
        except AccountError as e:
            raise SpawnError(str(e), status=400) from e

    @property
    def home(self) -> str:
        if self.system_users:
            return pwd.getpwnam(self.system_user).pw_dir
        return str(Path(self.shared_home_root) / self.user.name)

    async def start(self):
        if self.user_environment and not user_environment(self.user_environment).exists():
            self.log.error("User overlay %s is missing", self.user_environment)
            raise SpawnError("The environment servers run in is missing: an admin must restart "
                             "the platform (himalia up makes it).")
        if os.geteuid() == 0 and not self.system_users:
            # Never run anyone's code as root: as root, every server has its own account.
            raise SpawnError("This hub runs as root without per-user accounts; an admin must "
                             "turn c.HimaliaConfig.system_users back on.")
        if self.system_users:
            if os.geteuid() != 0:
                raise SpawnError("system_users needs the hub to run as root.")
            registry = AccountRegistry(self.account_registry, self.system_home_root)
            try:
                registry.ensure(self.system_user, hub_user_owner(self.user))
            except AccountError as e:
                self.log.error("Unix account for %s: %s", self.user.name, e)
                raise SpawnError(str(e)) from e
        else:
            os.makedirs(self.home, mode=0o700, exist_ok=True)
        self.notebook_dir = self.notebook_dir or self.home
        return await maybe_future(super().start())

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
        if self.user_environment:
            overlay = user_environment(self.user_environment)
            inherited = env.get("PATH") or os.defpath
            env["PATH"] = os.pathsep.join([*overlay.search_path(env["HOME"]), inherited])
            # IPython adds $VIRTUAL_ENV's packages when it is not the running environment.
            env["VIRTUAL_ENV"] = str(overlay.root)
        return env

    def move_certs(self, paths):
        if self.system_users:
            return super().move_certs(paths)
        return paths
