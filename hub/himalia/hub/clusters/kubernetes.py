"""dask-gateway's Kubernetes back end, configured from the same profiles and limits.

At scale the gateway runs in the cluster (as Zero-to-JupyterHub's ``daskhub`` does) and each
scheduler and worker is a pod of the profile's image; a GPU profile's workers ask for
``nvidia.com/gpu`` and run dask-cuda's ``CUDAWorker``. :func:`kube_config` builds the settings
as data (``c.KubeBackend``, ``c.KubeClusterConfig``); :func:`worker_pod_overrides` the pod
fields of one profile, which cluster options apply per cluster.
"""

from __future__ import annotations

from traitlets.config import Config

from ..profiles import GPU_RESOURCE
from .config import (GatewaySettings, cluster_options, memory_bytes, scheduler_command, worker_command,
                     worker_resources)

KUBE_BACKEND = "dask_gateway_server.backends.kubernetes.KubeBackend"
#: The image's Python, where the profile's image keeps dask and himalia.
IMAGE_PYTHON = "python"


def worker_pod_overrides(settings: GatewaySettings, profile: dict) -> dict:
    """``KubeClusterConfig`` values for the workers of one profile: its image, resources, GPUs,
    node selector and tolerations."""
    cores, memory = worker_resources(settings, profile)
    gpus = int(profile.get("gpus") or 0)
    container: dict = {}
    pod: dict = {}
    if gpus:
        container["resources"] = {"limits": {GPU_RESOURCE: gpus}}
    if profile.get("node_selector"):
        pod["nodeSelector"] = dict(profile["node_selector"])
    if profile.get("tolerations"):
        pod["tolerations"] = list(profile["tolerations"])
    overrides = {
        "worker_cores": cores,
        "worker_cores_limit": cores,
        "worker_memory": memory_bytes(memory),
        "worker_memory_limit": memory_bytes(memory),
        "worker_extra_container_config": container,
        "worker_extra_pod_config": pod,
        "environment": {k: str(v) for k, v in (profile.get("env") or {}).items()},
    }
    if profile.get("image"):
        overrides["image"] = profile["image"]
    return overrides


def kube_config(settings: GatewaySettings, namespace: str = "") -> Config:
    """The gateway's Kubernetes settings: the default profile's pods, the idle timeout, and the
    same cluster options and limits as on one machine (in the image's Python)."""
    c = Config()
    c.DaskGateway.backend_class = KUBE_BACKEND
    if namespace:
        c.KubeBackend.namespace = namespace
    default = next((p for p in settings.profiles if p["name"] == settings.default_profile),
                   settings.profiles[0] if settings.profiles else {"name": "default"})
    for key, value in worker_pod_overrides(settings, default).items():
        c.KubeClusterConfig[key] = value
    # The same commands as on one machine: the image holds himalia, so the scheduler's plug-ins
    # (orphaned clusters, first workers, the dashboard attached after them) load there too.
    c.KubeClusterConfig.scheduler_cmd = scheduler_command(IMAGE_PYTHON)
    c.KubeClusterConfig.worker_cmd = worker_command(IMAGE_PYTHON)
    c.KubeClusterConfig.idle_timeout = float(settings.idle_timeout)
    image_settings = GatewaySettings(**{**settings.__dict__, "python": IMAGE_PYTHON})
    # Pods have their own GPUs: the gateway's machine need not have one.
    c.KubeBackend.cluster_options = cluster_options(
        image_settings, gpu_check=lambda gpus: None,
        extra=lambda profile: worker_pod_overrides(settings, profile))
    return c
