"""A run as the Docker and Kubernetes back ends would start it, rendered from its profile.

On one machine the runner executes runs itself (kernels as the owner's account). With the
Docker back end a run is a container of the profile's image (:mod:`himalia.hub.containers`
gives it the same limits, volume, network and user as the owner's server); on Kubernetes it is
a ``batch/v1`` Job whose pod matches what KubeSpawner makes for the owner's server. Both run
papermill on the run's input notebook and write ``/himalia/run/output.ipynb`` (on Docker the
run's folder is mounted there; on Kubernetes the input comes from a ConfigMap and the output
goes to the pod's scratch volume); retries are the platform's (the Job's ``backoffLimit`` is 0) and
the timeout is the Job's ``activeDeadlineSeconds`` (the container's wait, on Docker).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..containers import ContainerTask, container_kwargs
from ..profiles import GPU_RESOURCE, HOME_MOUNT_PATH, Profile, kubespawner_override

RUN_MOUNT = "/himalia/run"
INPUT_MOUNT = "/himalia/input"
#: docker-stacks' jovyan: the user every container and pod of the platform runs as.
UID, GID = 1000, 100


@dataclass
class RunSpec:
    """What any back end needs to know about one run."""

    run_id: int
    job_id: int
    job_name: str
    owner: str
    profile: Profile
    parameters: dict
    timeout_seconds: int
    #: Environment of the run's kernel: API and tracking URLs (the token comes from a secret).
    environment: dict[str, str] = field(default_factory=dict)


def papermill_command(spec: RunSpec, input_folder: str = RUN_MOUNT) -> list[str]:
    """papermill's own command line: the input notebook with the run's parameters."""
    return ["papermill", f"{input_folder}/input.ipynb", f"{RUN_MOUNT}/output.ipynb",
            "--kernel", "himalia", "--cwd", HOME_MOUNT_PATH, "--no-progress-bar", "--log-output",
            "-y", json.dumps(spec.parameters, sort_keys=True)]


def run_environment(spec: RunSpec) -> dict[str, str]:
    return {**spec.environment, "HIMALIA_JOB_RUN_ID": str(spec.run_id),
            "HIMALIA_JOB_ID": str(spec.job_id), "HIMALIA_JOB_NAME": spec.job_name,
            "JUPYTERHUB_USER": spec.owner}


def container_spec(spec: RunSpec, run_folder: str, token: str, network: str = "host",
                   image_user: str | None = None) -> dict[str, Any]:
    """``docker.DockerClient().containers.run`` keyword arguments of a run (Docker back end):
    the owner's server container, with the run's folder mounted and papermill as command."""
    task = ContainerTask(
        profile=spec.profile, owner=spec.owner, command=papermill_command(spec), kind="job",
        environment={**run_environment(spec), "JUPYTERHUB_API_TOKEN": token,
                     "MLFLOW_TRACKING_TOKEN": token},
        network=network, name=f"himalia-run-{spec.run_id}",
        labels={"dev.himalia.job": str(spec.job_id), "dev.himalia.run": str(spec.run_id)},
    )
    kwargs = container_kwargs(task, image_user)
    kwargs["volumes"][run_folder] = {"bind": RUN_MOUNT, "mode": "rw"}
    return kwargs


def _kube_quantity(memory: str) -> str:
    """Profile memory (K/M/G/T in units of 1024, as JupyterHub's mem_limit) in Kubernetes'
    binary units."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT])", memory.strip().upper())
    return f"{match.group(1)}{match.group(2)}i" if match else memory


def _kube_name(owner: str) -> str:
    """An owner as a DNS-1123 label part, as KubeSpawner escapes user names."""
    from kubespawner.slugs import safe_slug

    return safe_slug(owner)


def kubernetes_job(spec: RunSpec, notebook: str, namespace: str, token_secret: str,
                   ttl_seconds_after_finished: int = 3600) -> dict[str, Any]:
    """The ``batch/v1`` Job (and the ConfigMap holding its input notebook) of a run."""
    server = kubespawner_override(spec.profile)
    name = f"himalia-run-{spec.run_id}"
    user = _kube_name(spec.owner)
    labels = {
        "app.kubernetes.io/name": "himalia", "app.kubernetes.io/component": "job-run",
        "himalia.dev/owner": user, "himalia.dev/job": str(spec.job_id),
        "himalia.dev/run": str(spec.run_id),
    }
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    if "cpu_limit" in server:
        limits["cpu"] = requests["cpu"] = str(server["cpu_limit"])
    if "mem_limit" in server:
        limits["memory"] = requests["memory"] = _kube_quantity(server["mem_limit"])
    if spec.profile.gpus:
        limits[GPU_RESOURCE] = requests[GPU_RESOURCE] = str(spec.profile.gpus)
    env = [{"name": k, "value": v} for k, v in sorted({**server["environment"],
                                                       **run_environment(spec)}.items())]
    env += [{"name": var, "valueFrom": {"secretKeyRef": {"name": token_secret, "key": "token"}}}
            for var in ("JUPYTERHUB_API_TOKEN", "MLFLOW_TRACKING_TOKEN")]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": {"runAsUser": UID, "runAsGroup": GID, "fsGroup": GID, "runAsNonRoot": True},
        "containers": [{
            "name": "notebook",
            "image": server.get("image") or spec.profile.image,
            "command": papermill_command(spec, INPUT_MOUNT),
            "workingDir": HOME_MOUNT_PATH,
            "env": env,
            "resources": {"limits": limits, "requests": requests},
            "securityContext": {"allowPrivilegeEscalation": False},
            "volumeMounts": [{"name": "home", "mountPath": HOME_MOUNT_PATH},
                             {"name": "input", "mountPath": INPUT_MOUNT, "readOnly": True},
                             {"name": "run", "mountPath": RUN_MOUNT}],
        }],
        "volumes": [
            # KubeSpawner's claim of the owner's server (pvc_name_template "claim-{username}").
            {"name": "home", "persistentVolumeClaim": {"claimName": f"claim-{user}"}},
            {"name": "input", "configMap": {"name": name}},
            {"name": "run", "emptyDir": {}},
        ],
    }
    if spec.profile.node_selector:
        pod["nodeSelector"] = dict(spec.profile.node_selector)
    if spec.profile.tolerations:
        pod["tolerations"] = [dict(t) for t in spec.profile.tolerations]
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": spec.timeout_seconds,
            "ttlSecondsAfterFinished": ttl_seconds_after_finished,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": name, "namespace": namespace, "labels": labels},
                  "data": {"input.ipynb": notebook}}
    return {"job": job, "config_map": config_map}
