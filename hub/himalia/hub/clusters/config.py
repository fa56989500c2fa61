"""The dask-gateway server's configuration, built as data from himalia's settings.

:class:`GatewaySettings` is what ``himalia up`` hands the gateway service (as JSON in its
environment); :func:`gateway_config` turns it into the traitlets ``Config`` that
``dask-gateway-server`` reads (what a ``dask_gateway_config.py`` would set), and
:func:`cluster_options` into the options users may choose when they start a cluster, with the
per-user limits applied. Pure functions, so tests check the exact settings.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from traitlets.config import Config

SERVICE = "dask-gateway"
PREFIX = f"/services/{SERVICE}"
ENV_SETTINGS = "HIMALIA_GATEWAY"
#: The scheduler plug-in that ends a cluster whose clients are all gone (a killed kernel).
ORPHAN_PRELOAD = "himalia.hub.clusters.orphans"
#: The scheduler plug-in that requests the cluster's first workers as the scheduler starts.
FIRST_WORKERS_PRELOAD = "himalia.hub.clusters.starting"
FIRST_WORKERS_ENV = "HIMALIA_CLUSTER_WORKERS"
ORPHAN_ENV = "HIMALIA_CLUSTER_ORPHAN_SECONDS"
GPU_WORKER_CLASS = "dask_cuda.CUDAWorker"
GIB = 1024 ** 3


class ClusterOptionError(ValueError):
    """A cluster request the settings do not allow; the message is for the person asking."""


@dataclass
class GatewaySettings:
    """Everything the gateway service needs from ``himalia up``."""

    state_dir: str
    #: Port of the service's front (the hub's proxy forwards ``/services/dask-gateway/`` there).
    port: int
    #: Where Dask clients reach their schedulers (the gateway's TCP proxy).
    scheduler_port: int
    #: Loopback ports of the gateway's own API and HTTP proxy, behind the front.
    api_port: int = 0
    proxy_port: int = 0
    #: The scheduler proxy's address as kernels reach it.
    scheduler_host: str = "127.0.0.1"
    backend: str = "local"
    #: Start scheduler and workers as each person's Unix account (the gateway runs as root).
    system_users: bool = False
    user_prefix: str = "jupyter-"
    account_registry: str = ""
    #: The Python of the users' environment (the one their servers and kernels run in).
    python: str = ""
    profiles: list[dict] = field(default_factory=list)
    default_profile: str = ""
    max_cores: float = 0
    max_memory: str = ""
    max_clusters: int = 0
    max_workers: int = 0
    idle_timeout: float = 0
    orphan_timeout: float = 0
    worker_cores: int = 1
    worker_memory: str = "2G"
    public_url: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "GatewaySettings":
        return cls(**json.loads(text))

    @property
    def folder(self) -> Path:
        return Path(self.state_dir) / "clusters"


def memory_bytes(text: str) -> int | None:
    """``"4G"`` (suffixes K, M, G, T of 1024, as profiles use) in bytes; None for ""."""
    text = str(text or "").strip().upper().replace(" ", "").rstrip("B").rstrip("I")
    if not text:
        return None
    units = {"K": 1024, "M": 1024 ** 2, "G": GIB, "T": 1024 ** 4}
    if text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text))


#: Dask's setting of how a nanny starts its worker process.
WORKER_START_ENV = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"


def scheduler_command(python: str) -> list[str]:
    """The scheduler in the users' environment, with the plug-ins that notice orphaned clusters,
    request the first workers and attach the dashboard once the scheduler is up (hence
    ``--no-dashboard``: see ``starting``)."""
    return [python, "-m", "distributed.cli.dask_scheduler", "--no-dashboard", "--preload", ORPHAN_PRELOAD,
            "--preload", FIRST_WORKERS_PRELOAD]


def worker_command(python: str, gpus: int = 0) -> list[str]:
    """A worker in the users' environment: a dask-cuda CUDA worker on a GPU profile. Workers
    serve no dashboard of their own: the gateway's proxy reaches only the scheduler's (which
    shows every worker), and a worker starts faster without one."""
    argv = [python, "-m", "distributed.cli.dask_worker", "--no-dashboard"]
    if gpus:
        argv += ["--worker-class", GPU_WORKER_CLASS]
    return argv


def gpu_problem(gpus: int, *, cuda_available: bool, dask_cuda_installed: bool) -> str | None:
    """Why CUDA workers cannot start here, for the person asking; None when they can."""
    if not gpus:
        return None
    if not dask_cuda_installed:
        return ("this profile asks for GPU workers, which need dask-cuda: install himalia with "
                "the 'gpu' extra (pip install 'himalia[gpu]')")
    if not cuda_available:
        return ("this profile asks for GPU workers, but this machine has no NVIDIA GPU "
                "(no /dev/nvidia0 or nvidia-smi): choose a CPU profile")
    return None


def cuda_available() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def dask_cuda_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("dask_cuda") is not None


def _profiles(settings: GatewaySettings) -> dict[str, dict]:
    return {p["name"]: p for p in settings.profiles} or {"default": {"name": "default"}}


def worker_resources(settings: GatewaySettings, profile: dict) -> tuple[int, str]:
    """Cores and memory of one worker: the profile's ``worker_cores``/``worker_memory`` when
    it declares them, else the platform's defaults (a profile's ``cpu``/``memory`` size its
    server, not its workers)."""
    cores = int(profile.get("worker_cores") or settings.worker_cores or 1)
    memory = str(profile.get("worker_memory") or settings.worker_memory)
    return max(cores, 1), memory


def cluster_overrides(settings: GatewaySettings, profile_name: str, workers: int,
                      worker_cores: int | None = None, worker_memory: str | None = None,
                      *, adaptive: bool = False, gpu_check=None, extra=None) -> dict[str, Any]:
    """The ``ClusterConfig`` values of one cluster: the profile's workers, the person's limits.
    A fixed-size cluster's scheduler requests its ``workers`` itself as it starts; for an
    adaptive one ``workers`` is only the most it may grow to.

    Raises :class:`ClusterOptionError` (whose message names the limit) when the request asks
    for more than a person may have, or GPU workers where there are none.
    """
    profiles = _profiles(settings)
    if profile_name not in profiles:
        raise ClusterOptionError(f"unknown profile {profile_name!r}; choose one of: "
                                 f"{', '.join(sorted(profiles))}")
    profile = profiles[profile_name]
    cores, memory = worker_resources(settings, profile)
    cores = worker_cores or cores
    memory = worker_memory or memory
    gpus = int(profile.get("gpus") or 0)
    check = gpu_check or (lambda n: gpu_problem(n, cuda_available=cuda_available(),
                                                dask_cuda_installed=dask_cuda_installed()))
    problem = check(gpus)
    if problem:
        raise ClusterOptionError(problem)
    limits = user_limits(settings, cores, memory)
    most = limits["cluster_max_workers"]
    if most is not None and workers > most:
        raise ClusterOptionError(
            f"{workers} workers of {cores} cores and {memory} exceed your limit "
            f"({describe_limits(settings)}): ask for at most {most}")
    # A nanny forks its worker rather than spawning a fresh interpreter that imports Dask
    # again: a worker connects about a second sooner. Not with GPUs, whose CUDA context must be
    # made in a fresh process (and the profile's env may say otherwise).
    environment = {} if gpus else {WORKER_START_ENV: "fork"}
    environment.update({k: str(v) for k, v in (profile.get("env") or {}).items()})
    environment.update({ORPHAN_ENV: str(settings.orphan_timeout), "HIMALIA_PROFILE": profile_name,
                        FIRST_WORKERS_ENV: str(0 if adaptive else workers)})
    overrides: dict[str, Any] = {
        "worker_cores": cores,
        "worker_memory": memory_bytes(memory),
        "scheduler_cmd": scheduler_command(settings.python),
        "worker_cmd": worker_command(settings.python, gpus),
        "environment": environment,
        "idle_timeout": float(settings.idle_timeout),
        **{k: v for k, v in limits.items() if v is not None},
    }
    if extra is not None:
        overrides.update(extra(profile))
        overrides["environment"] = {**overrides.get("environment", {}), **environment}
    return overrides


def user_limits(settings: GatewaySettings, worker_cores: int, worker_memory: str) -> dict:
    """dask-gateway's per-cluster limit from the per-person ones: how many such workers fit in
    the person's cores, memory and worker count (the scheduler's share is not counted)."""
    max_memory = memory_bytes(settings.max_memory)
    most: list[int] = []
    if settings.max_cores:
        most.append(int(settings.max_cores // worker_cores))
    if max_memory:
        most.append(int(max_memory // (memory_bytes(worker_memory) or GIB)))
    if settings.max_workers:
        most.append(settings.max_workers)
    return {"cluster_max_workers": max(min(most), 0) if most else None}


def describe_limits(settings: GatewaySettings) -> str:
    parts = []
    if settings.max_cores:
        parts.append(f"{settings.max_cores:g} cores")
    if settings.max_memory:
        parts.append(f"{settings.max_memory} memory")
    if settings.max_workers:
        parts.append(f"{settings.max_workers} workers")
    if settings.max_clusters:
        parts.append(f"{settings.max_clusters} clusters")
    return ", ".join(parts) + " per person" if parts else "no limits"


def cluster_options(settings: GatewaySettings, *, gpu_check=None, extra=None):
    """The options form of a new cluster (dask-gateway ``Options``): profile, workers wanted,
    worker cores and memory, each checked against the person's limits. ``extra(profile)``
    adds back-end values of the chosen profile (pods' image and GPUs on Kubernetes)."""
    from dask_gateway_server.options import Bool, Integer, Options, Select, String

    profiles = sorted(_profiles(settings))
    default = settings.default_profile if settings.default_profile in profiles else profiles[0]

    def handler(options, user):
        return cluster_overrides(settings, options.profile, options.workers,
                                 options.worker_cores or None, options.worker_memory or None,
                                 adaptive=options.adaptive, gpu_check=gpu_check, extra=extra)

    return Options(
        Select("profile", profiles, default=default, label="Profile of the workers"),
        Integer("workers", default=0, min=0, label="Workers wanted (checked against your limits)"),
        Bool("adaptive", default=False, label="Adaptive: workers is the most, none start at once"),
        Integer("worker_cores", default=0, min=0, label="Cores per worker (0: the profile's)"),
        String("worker_memory", default="", label="Memory per worker, e.g. 4G (empty: the profile's)"),
        String("job_run", default="", label="The job run it belongs to (ends with the run)"),
        handler=handler,
    )


def gateway_config(settings: GatewaySettings) -> Config:
    """What ``dask-gateway-server`` is started with (its ``dask_gateway_config.py``, as data)."""
    c = Config()
    c.DaskGateway.address = f"127.0.0.1:{settings.api_port}"
    c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
    # Only tokens with access:services!service=dask-gateway (the scientist role's) get in.
    c.JupyterHubAuthenticator.jupyterhub_service_name = SERVICE
    c.Proxy.address = f"127.0.0.1:{settings.proxy_port}"
    tcp_host = "127.0.0.1" if settings.scheduler_host in ("127.0.0.1", "localhost") else "0.0.0.0"
    c.Proxy.tcp_address = f"{tcp_host}:{settings.scheduler_port}"
    c.Proxy.prefix = PREFIX
    if settings.backend == "kubernetes":
        from .kubernetes import kube_config

        c.merge(kube_config(settings))
        return c
    c.DaskGateway.backend_class = "himalia.hub.clusters.backend.HimaliaLocalBackend"
    c.HimaliaLocalBackend.system_users = settings.system_users
    c.HimaliaLocalBackend.state_dir = settings.state_dir
    c.HimaliaLocalBackend.user_prefix = settings.user_prefix
    c.HimaliaLocalBackend.account_registry = settings.account_registry
    c.HimaliaLocalBackend.max_clusters = settings.max_clusters
    # Owners' processes cannot enter the state directory: with system users each cluster's
    # folder is a private temporary folder given to its owner (dask-gateway's default).
    c.HimaliaLocalBackend.clusters_directory = "" if settings.system_users else str(settings.folder / "work")
    # Noticed within seconds: a scheduler that died, a worker that did not start.
    c.HimaliaLocalBackend.cluster_heartbeat_period = 5
    c.HimaliaLocalBackend.cluster_status_period = 5
    c.HimaliaLocalBackend.worker_status_period = 5
    c.HimaliaLocalBackend.sigint_timeout = 3
    c.HimaliaLocalBackend.inherited_environment = ["PATH", "LANG", "LC_ALL"]
    c.LocalClusterConfig.scheduler_cmd = scheduler_command(settings.python)
    c.LocalClusterConfig.worker_cmd = worker_command(settings.python)
    c.LocalClusterConfig.idle_timeout = float(settings.idle_timeout)
    c.HimaliaLocalBackend.cluster_options = cluster_options(settings)
    return c
