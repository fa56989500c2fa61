"""dask-gateway's local back end as himalia runs it.

Schedulers and workers are local processes. With system users (the gateway runs as root) they
run as the person's own Unix account, the one their server uses (``owners.Owners``); otherwise
as the gateway's account, which is never root (``gateway.hub_services`` runs the service as the
platform's service account then). A person may have ``max_clusters`` clusters at once.
"""

from __future__ import annotations

import os
import pwd
import tempfile

import httpx
from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.db_base import JobStatus
from dask_gateway_server.backends.local import LocalBackend
from traitlets import Bool, Integer, Unicode

from ..owners import Account, Owners

ACTIVE = (JobStatus.CREATED, JobStatus.SUBMITTED, JobStatus.RUNNING)


class HimaliaLocalBackend(LocalBackend):
    """Clusters as local processes of their owner's Unix account, with a per-person count."""

    system_users = Bool(
        False, help="Run each cluster as its owner's Unix account (needs root).", config=True
    )
    user_prefix = Unicode("jupyter-", help="Prefix of the owners' Unix accounts.", config=True)
    account_registry = Unicode("", help="The accounts himalia created (accounts.json).", config=True)
    state_dir = Unicode("", help="The platform's state directory.", config=True)
    max_clusters = Integer(
        0, help="Clusters one person may have running or starting at once (0: no limit).", config=True
    )

    async def setup(self, app):
        if self.system_users and os.geteuid() != 0:
            raise RuntimeError("system_users needs the gateway to run as root")
        if not self.system_users and os.geteuid() == 0:
            raise RuntimeError("the gateway runs clusters as its own account, which must not be root")
        self._http = httpx.AsyncClient(timeout=30)
        self.owners = Owners(self._http, os.environ.get("JUPYTERHUB_API_URL", ""),
                             os.environ.get("JUPYTERHUB_API_TOKEN", ""),
                             state_dir=self.state_dir,
                             system_users=self.system_users, user_prefix=self.user_prefix,
                             account_registry=self.account_registry)
        self._accounts: dict[str, Account] = {}
        if self.clusters_directory:
            os.makedirs(self.clusters_directory, mode=0o700, exist_ok=True)
        await super().setup(app)

    async def cleanup(self):
        await super().cleanup()
        if hasattr(self, "_http"):
            await self._http.aclose()

    async def start_cluster(self, user, cluster_options):
        # What was asked for is judged first: the most precise message wins.
        await self.process_cluster_options(user, cluster_options)
        if self.max_clusters:
            active = [c for c in self.db.list_clusters(username=user.name) if c.status in ACTIVE]
            if len(active) >= self.max_clusters:
                raise PublicException(
                    f"you already have {len(active)} cluster(s) running, the most one person may "
                    f"have (max_clusters = {self.max_clusters}): stop one first")
        return await super().start_cluster(user, cluster_options)

    # -- whose account -------------------------------------------------------------------------
    async def _account(self, owner: str) -> Account:
        if self.system_users:
            account = await self.owners.account(owner)
        else:
            # Everyone's clusters run as the gateway's own (unprivileged) account.
            account = Account(pwd.getpwuid(os.getuid()).pw_name,
                              self.clusters_directory or tempfile.gettempdir())
        self._accounts[owner] = account
        return account

    def _cached(self, owner: str) -> Account:
        account = self._accounts.get(owner)
        if account is None:
            raise PublicException(f"no account resolved for {owner}")
        return account

    async def do_start_cluster(self, cluster):
        await self._account(cluster.username)
        async for state in super().do_start_cluster(cluster):
            yield state

    async def do_start_worker(self, worker):
        await self._account(worker.cluster.username)
        async for state in super().do_start_worker(worker):
            yield state

    def set_file_permissions(self, paths, username):
        # The library's list starts with the cluster's working folder, then spreads the
        # certificate paths into single characters ("/" among them, from ``list.extend(str)``):
        # give the owner that folder and what is in it, and nothing else.
        account = self._cached(username)
        if account.uid is None:
            return
        workdir = paths[0]
        base = self.clusters_directory or tempfile.gettempdir()
        if os.path.dirname(workdir) != base.rstrip("/") or not os.path.isdir(workdir):
            raise PublicException("unexpected working folder for the cluster")
        os.chown(workdir, account.uid, account.gid)
        for folder, dirs, files in os.walk(workdir):
            for name in dirs + files:
                os.chown(os.path.join(folder, name), account.uid, account.gid)

    def make_preexec_fn(self, cluster):
        account = self._cached(cluster.username)
        workdir = cluster.state["workdir"]
        uid, gid, name = account.uid, account.gid, account.name

        def preexec():  # pragma: no cover - runs in the child
            if uid is not None:
                # Its groups too: the state directory is open to the platform's users' group.
                os.initgroups(name, gid)
                os.setgid(gid)
                os.setuid(uid)
            os.chdir(workdir)

        return preexec

    def get_env(self, cluster):
        env = super().get_env(cluster)
        account = self._cached(cluster.username)
        env["USER"] = account.name if account.uid is not None else pwd.getpwuid(os.getuid()).pw_name
        env["HOME"] = account.home
        return env
