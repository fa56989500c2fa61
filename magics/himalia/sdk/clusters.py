"""Dask clusters through the platform's dask-gateway (``/services/dask-gateway/``).

``himalia.sdk.cluster(workers=4)`` starts a cluster with the person's hub token and returns a
``dask.distributed.Client`` connected to it; :class:`Clusters` lists, connects to, scales and
stops them. The gateway is Dask's own (dask-gateway); this module finds it, authenticates, and
turns its refusals into :class:`HimaliaError` messages. A cluster started here is shut down when
the process ends (dask-gateway's ``shutdown_on_close``), so a kernel that shuts down leaves none
behind.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Mapping

import httpx

from .client import HimaliaError

SERVICE = "dask-gateway"
INFO_PATH = "himalia/info"
JOB_RUN_ENV = "HIMALIA_JOB_RUN_ID"
#: Workers of the cluster ``%train --on dask`` starts when there is none and no count is given.
TRAIN_WORKERS = 2
#: Seconds to wait for a training cluster's workers to connect.
WORKERS_TIMEOUT = 180.0


def gateway_address(env: Mapping[str, str] | None = None) -> str:
    """The gateway's URL: ``HIMALIA_GATEWAY_URL``, else beside the platform API's."""
    env = os.environ if env is None else env
    if env.get("HIMALIA_GATEWAY_URL"):
        return env["HIMALIA_GATEWAY_URL"].rstrip("/")
    api = env.get("HIMALIA_API_URL", "")
    if "/services/" not in api:
        raise HimaliaError("No platform URL: set HIMALIA_API_URL (or HIMALIA_GATEWAY_URL).")
    return api.split("/services/", 1)[0] + f"/services/{SERVICE}"


def parse_adapt(text: str | None) -> tuple[int, int] | None:
    """``"1:8"`` as ``(1, 8)``; ValueError with the reason otherwise."""
    if not text:
        return None
    low, sep, high = str(text).partition(":")
    try:
        minimum, maximum = int(low), int(high)
    except ValueError:
        raise ValueError(f"--adapt must be MIN:MAX with whole numbers, got {text!r}") from None
    if not sep or minimum < 0 or maximum < max(minimum, 1):
        raise ValueError(f"--adapt must be MIN:MAX with 0 <= MIN <= MAX and MAX >= 1, got {text!r}")
    return minimum, maximum


class Clusters:
    """The caller's Dask clusters, by hub token."""

    def __init__(self, address: str | None = None, token: str | None = None,
                 env: Mapping[str, str] | None = None, timeout: float = 30.0):
        env = os.environ if env is None else env
        self.address = (address or gateway_address(env)).rstrip("/")
        self.token = token or env.get("JUPYTERHUB_API_TOKEN", "")
        if not self.token:
            raise HimaliaError("No hub token: set JUPYTERHUB_API_TOKEN.")
        self.timeout = timeout
        self._info: dict | None = None

    # -- the gateway ------------------------------------------------------------------------------
    def info(self) -> dict:
        """Where schedulers are reached, the profiles and this person's limits."""
        if self._info is None:
            url = f"{self.address}/{INFO_PATH}"
            try:
                r = httpx.get(url, headers={"Authorization": f"token {self.token}"}, timeout=self.timeout)
            except httpx.HTTPError as e:
                raise HimaliaError(f"The Dask gateway at {self.address} is not answering ({e}): "
                                   "is the platform running?") from None
            if r.status_code >= 400:
                raise HimaliaError(f"The Dask gateway at {self.address} refused: {_message(r)}", r.status_code)
            self._info = r.json()
        return self._info

    def gateway(self):
        """A ``dask_gateway.Gateway`` for this person."""
        from dask_gateway import Gateway
        from dask_gateway.auth import JupyterHubAuth

        return Gateway(self.address, proxy_address=self.info()["scheduler_address"],
                       auth=JupyterHubAuth(api_token=self.token))

    # -- clusters ---------------------------------------------------------------------------------
    def start(self, workers: int = 0, adapt: tuple[int, int] | None = None,
              profile: str | None = None, **options: Any):
        """A new cluster (``dask_gateway.GatewayCluster``) with ``workers`` workers, or adaptive
        between ``adapt = (min, max)``. Nothing is left behind when it cannot start."""
        if workers < 0:
            raise HimaliaError(f"workers must be 0 or more, got {workers}")
        wanted = max(workers, adapt[1] if adapt else 0)
        chosen = {"workers": wanted, **options}
        if adapt:
            chosen["adaptive"] = True
        profiles = self.info().get("profiles") or []
        if profile and profile not in profiles:
            raise HimaliaError(f"unknown profile {profile!r}; choose one of: {', '.join(profiles)}")
        if profile:
            chosen["profile"] = profile
        run = os.environ.get(JOB_RUN_ENV, "")
        # Every Gateway made here is closed here: one left to the garbage collector closes
        # itself from whatever thread collects it, which can deadlock on dask's loop lock. The
        # cluster holds its own Gateway (on the same, reference-counted event loop).
        with self.gateway() as gateway:
            try:
                known = gateway.cluster_options()
            except Exception as e:
                raise HimaliaError(self._why(e)) from None
            if run and "job_run" in known:
                # The job runner stops the clusters of a run when the run ends.
                chosen.setdefault("job_run", run)
            unknown = sorted(set(chosen) - set(known))
            if unknown:
                raise HimaliaError(f"unknown cluster option {unknown[0]!r}; known: {', '.join(sorted(known))}")
            try:
                cluster = gateway.new_cluster(shutdown_on_close=True, **chosen)
            except Exception as e:
                raise HimaliaError(self._why(e)) from None
        try:
            if adapt:
                cluster.adapt(minimum=adapt[0], maximum=adapt[1])
            elif workers and "adaptive" not in known:
                # A gateway without the option has the client ask for the workers; with it
                # the scheduler already did as it started.
                self.scale(cluster, workers)
        except BaseException:
            cluster.shutdown()
            raise
        return cluster

    @staticmethod
    def scale(cluster, workers: int) -> None:
        """Scale to ``workers``; HimaliaError when that exceeds the limit (the gateway then
        scales to the most allowed)."""
        from dask_gateway.client import GatewayWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", GatewayWarning)
            cluster.scale(workers)
        for w in caught:
            if issubclass(w.category, GatewayWarning):
                raise HimaliaError(str(w.message))

    def list(self) -> list:
        """This person's running and pending clusters (``ClusterReport``s)."""
        try:
            with self.gateway() as gateway:
                return gateway.list_clusters()
        except Exception as e:
            raise HimaliaError(self._why(e)) from None

    def connect(self, name: str):
        try:
            with self.gateway() as gateway:
                # Refused here for another person's cluster, before a GatewayCluster (which
                # makes a Gateway of its own) is half made.
                gateway.get_cluster(name)
                return gateway.connect(name)
        except Exception as e:
            raise HimaliaError(self._why(e)) from None

    def stop(self, name: str) -> None:
        try:
            with self.gateway() as gateway:
                gateway.stop_cluster(name)
        except Exception as e:
            raise HimaliaError(self._why(e)) from None

    def dashboard(self, name: str) -> str:
        return f"{self.address}/clusters/{name}/status"

    def _why(self, e: Exception) -> str:
        if isinstance(e, HimaliaError):
            return str(e)
        text = str(e) or type(e).__name__
        if getattr(e, "status", None) == 403:
            return "the gateway refused (403): that cluster is not yours"
        if getattr(e, "status", None) == 401:
            return "the gateway refused your token (401): it lacks access to the dask-gateway service"
        if "Cannot connect" in text or "Connection refused" in text or isinstance(e, OSError):
            return f"The Dask gateway at {self.address} is not answering ({text}): is the platform running?"
        return text


def _message(r: httpx.Response) -> str:
    try:
        body = r.json()
        return body.get("message") or body.get("error") or r.reason_phrase
    except ValueError:
        return r.reason_phrase


def cluster(workers: int = 0, adapt: tuple[int, int] | str | None = None, profile: str | None = None,
            **options: Any):
    """Start a Dask cluster through the platform and return a ``dask.distributed.Client``
    connected to it (``client.cluster`` is the cluster: ``.scale(n)``, ``.adapt()``,
    ``.dashboard_link``, ``.shutdown()``)."""
    if isinstance(adapt, str):
        try:
            adapt = parse_adapt(adapt)
        except ValueError as e:
            raise HimaliaError(str(e)) from None
    started = Clusters().start(workers=workers, adapt=adapt, profile=profile, **options)
    try:
        return started.get_client()
    except BaseException:
        started.shutdown()
        raise


def is_gateway_client(client) -> bool:
    """Whether ``client`` is a live client of a cluster started through a dask-gateway."""
    from dask_gateway import GatewayCluster

    return (client is not None and client.status == "running"
            and isinstance(getattr(client, "cluster", None), GatewayCluster)
            and client.cluster.status != "closed")


def kernel_client(candidate=None):
    """The gateway cluster client this process already has: ``candidate`` (the one ``%cluster
    start`` made), else Dask's default client when it belongs to a gateway cluster; None
    when there is neither."""
    if is_gateway_client(candidate):
        return candidate
    from distributed import default_client

    try:
        found = default_client()
    except ValueError:
        return None
    return found if is_gateway_client(found) else None


def training_client(existing=None, workers: int | None = None, *, timeout: float = WORKERS_TIMEOUT,
                    clusters: Clusters | None = None):
    """``(client, started)``: a client with connected workers for a distributed fit.

    ``existing`` (a gateway cluster client) is used when given, scaled to ``workers`` when a
    count is given; otherwise a cluster of ``workers`` (default ``TRAIN_WORKERS``) is started
    and ``started`` is True. Returns once that many workers (at least one) are connected.
    """
    if workers is not None and workers < 1:
        raise HimaliaError(f"workers must be 1 or more, got {workers}")
    started = existing is None
    if started:
        cluster = (clusters or Clusters()).start(workers=workers or TRAIN_WORKERS)
        try:
            client = cluster.get_client()
        except BaseException:
            cluster.shutdown()
            raise
    else:
        client = existing
        if workers is not None:
            Clusters.scale(client.cluster, workers)
    wanted = workers or (TRAIN_WORKERS if started else 1)
    try:
        client.wait_for_workers(wanted, timeout=timeout)
    except TimeoutError:
        have = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        if started:
            client.close()
            client.cluster.shutdown()
        raise HimaliaError(f"cluster {client.cluster.name}: {have} of {wanted} worker(s) connected "
                           f"after {timeout:g} s") from None
    return client, started


def training_tags(client) -> dict[str, str]:
    """MLflow tags of a fit run on ``client``'s cluster: the engine, cluster and workers."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return {"himalia.parallel": "dask", "himalia.dask.cluster": client.cluster.name,
            "himalia.dask.workers": str(len(workers)),
            "himalia.dask.threads": str(sum(w.get("nthreads", 0) for w in workers.values()))}
