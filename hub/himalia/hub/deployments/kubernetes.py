"""The Kubernetes back end of model deployments, as the exact objects we would send to the API.

Locally each deployment version runs as ``bentoml serve`` processes behind the model router. At
scale each version becomes a Deployment plus a ClusterIP Service named
``himalia-model-<deployment>-v<version>`` (:func:`version_manifests`), and one Gateway API
HTTPRoute per deployment splits ``/models/<deployment>/`` between the versions' Services by
percentage (:func:`traffic_manifest`). The functions are pure: they return plain dicts, validate
names before Kubernetes would reject them, and :func:`render_yaml` turns them into a manifest file
for ``kubectl apply -f``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import yaml

NAME_PREFIX = "himalia-model"
OWNER_ANNOTATION = "himalia.io/owner"
OWNER_LABEL = "himalia.io/owner"
SERVICE_PORT = 80
GPU_RESOURCE = "nvidia.com/gpu"
#: Used when a version names no resources: enough for a scikit-learn sized model.
DEFAULT_RESOURCES = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
#: The startup probe allows this long for the model to load before the container is restarted.
STARTUP_SECONDS = 600

_MAX_NAME = 63
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DEPLOYMENT_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


def resource_name(deployment: str, version: int | None = None) -> str:
    """``himalia-model-<deployment>[-v<version>]``, or ValueError saying why it can't be one."""
    if not isinstance(deployment, str) or not _DEPLOYMENT_NAME.fullmatch(deployment):
        raise ValueError(
            f"deployment name {deployment!r} is not a DNS label: use lowercase letters, digits and '-',"
            " starting with a letter and not ending with '-'"
        )
    name = f"{NAME_PREFIX}-{deployment}"
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"version must be a positive integer, got {version!r}")
        name = f"{name}-v{version}"
    if len(name) > _MAX_NAME:
        room = _MAX_NAME - (len(name) - len(deployment))
        raise ValueError(
            f"Kubernetes name {name!r} is {len(name)} characters, over the {_MAX_NAME} allowed:"
            f" deployment names can be at most {room} characters"
            + (f" to have a version {version}" if version is not None else "")
        )
    return name


def owner_label(owner: str) -> str:
    """The owner as a label value: itself when it is one, else a readable form plus a hash of it."""
    if not owner:
        raise ValueError("owner must be a non-empty user name")
    if len(owner) <= _MAX_NAME and _LABEL_VALUE.fullmatch(owner):
        return owner
    # The hash keeps owners apart that read alike once cleaned ("a@b" and "a+b").
    digest = hashlib.sha256(owner.encode()).hexdigest()[:8]
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", owner).strip("-_.")[: _MAX_NAME - len(digest) - 1].rstrip("-_.")
    return f"{readable}-{digest}" if readable else digest


def _check_namespace(namespace: str) -> None:
    if not isinstance(namespace, str) or len(namespace) > _MAX_NAME or not _DNS_LABEL.fullmatch(namespace):
        raise ValueError(f"namespace {namespace!r} is not a DNS label (lowercase letters, digits and '-')")


def _resources(resources: dict | None, gpu: int) -> dict:
    resources = DEFAULT_RESOURCES if resources is None else resources
    unknown = set(resources) - {"requests", "limits"}
    if unknown:
        raise ValueError(f"resources take 'requests' and 'limits', not {sorted(unknown)}")
    # Quantities as strings, the form the API returns; copies so the caller's dict stays as it was.
    out = {kind: {key: str(value) for key, value in resources[kind].items()} for kind in ("requests", "limits")
           if resources.get(kind)}
    for kind in ("requests", "limits"):
        out.get(kind, {}).pop(GPU_RESOURCE, None)
    if gpu:
        out.setdefault("limits", {})[GPU_RESOURCE] = str(gpu)
    return out


def version_manifests(*, deployment: str, version: int, owner: str, bento_tag: str, image: str,
                      replicas: int = 1, namespace: str = "himalia", port: int = 3000,
                      resources: dict | None = None, gpu: int = 0, env: dict | None = None,
                      service_account: str | None = None) -> list[dict]:
    """The apps/v1 Deployment and v1 Service that serve one version of a deployment."""
    name = resource_name(deployment, version)
    _check_namespace(namespace)
    if not bento_tag or not isinstance(bento_tag, str) or any(c.isspace() for c in bento_tag):
        raise ValueError(f"bento_tag must be a tag like 'name:version', got {bento_tag!r}")
    if not image or not isinstance(image, str):
        raise ValueError(f"image must be an image reference, got {image!r}")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise ValueError(f"replicas must be an integer >= 0, got {replicas!r}")
    if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0:
        raise ValueError(f"gpu must be an integer >= 0, got {gpu!r}")
    # The container runs as uid 1000 with every capability dropped, so it cannot bind below 1024.
    if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
        raise ValueError(f"port must be between 1024 and 65535 (the server runs as non-root), got {port!r}")

    selector = {
        "app.kubernetes.io/name": NAME_PREFIX,
        "app.kubernetes.io/instance": deployment,
        "app.kubernetes.io/version": f"v{version}",
    }
    labels = {**selector, "app.kubernetes.io/managed-by": "himalia", OWNER_LABEL: owner_label(owner)}
    annotations = {OWNER_ANNOTATION: owner, "himalia.io/bento-tag": bento_tag}
    metadata = {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations}

    environment = {**(env or {}), "BENTOML_DO_NOT_TRACK": "true"}
    container = {
        "name": "bentoml",
        "image": image,
        "command": ["bentoml", "serve", bento_tag, "--port", str(port), "--host", "0.0.0.0"],
        "env": [{"name": key, "value": str(value)} for key, value in environment.items()],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "resources": _resources(resources, gpu),
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": port}, "periodSeconds": 5,
                           "timeoutSeconds": 2, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/livez", "port": port}, "periodSeconds": 10,
                          "timeoutSeconds": 5, "failureThreshold": 3},
        # Liveness only starts once this passes, so a slow model load is not mistaken for a hang.
        "startupProbe": {"httpGet": {"path": "/livez", "port": port}, "periodSeconds": 10,
                         "timeoutSeconds": 5, "failureThreshold": STARTUP_SECONDS // 10},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        # Model servers do not talk to the Kubernetes API unless given an account for it.
        "automountServiceAccountToken": service_account is not None,
        # Service links would add <SERVICE>_PORT variables, which BentoML may read as its own settings.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
    }
    if service_account is not None:
        pod_spec["serviceAccountName"] = service_account
    if gpu:
        pod_spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]

    deployment_object = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(selector)},
            # A new pod must be ready before an old one goes: serving capacity never drops.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "revisionHistoryLimit": 2,
            # Longer than the startup probe allows, so a slow load is not reported as a failed rollout.
            "progressDeadlineSeconds": STARTUP_SECONDS + 300,
            "template": {"metadata": {"labels": dict(labels), "annotations": dict(annotations)},
                         "spec": pod_spec},
        },
    }
    service_object = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**metadata, "labels": dict(labels), "annotations": dict(annotations)},
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": port, "protocol": "TCP"}],
        },
    }
    return [deployment_object, service_object]


def traffic_manifest(*, deployment: str, weights: dict[int, int], namespace: str = "himalia",
                     host_path_prefix: str = "/models", gateway: str = "himalia") -> dict:
    """The Gateway API HTTPRoute that splits ``<prefix>/<deployment>/`` between versions by percent."""
    name = resource_name(deployment)
    _check_namespace(namespace)
    if not isinstance(host_path_prefix, str) or not host_path_prefix.startswith("/"):
        raise ValueError(f"host_path_prefix must start with '/', got {host_path_prefix!r}")
    if not weights:
        raise ValueError("weights must give at least one version a share of the traffic")
    for version, weight in weights.items():
        resource_name(deployment, version)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
            raise ValueError(f"the weight of version {version} must be a percentage 0..100, got {weight!r}")
    total = sum(weights.values())
    if total != 100:
        raise ValueError(f"traffic weights must sum to 100 percent, got {total}: {dict(weights)}")

    path = f"{host_path_prefix.rstrip('/')}/{deployment}/"
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": NAME_PREFIX, "app.kubernetes.io/instance": deployment,
                       "app.kubernetes.io/managed-by": "himalia"},
        },
        "spec": {
            "parentRefs": [{"name": gateway}],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": path}}],
                # A bento serves /predict at its root, as the local router sends it.
                "filters": [{"type": "URLRewrite",
                             "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}],
                "backendRefs": [
                    {"name": resource_name(deployment, version), "port": SERVICE_PORT, "weight": weight}
                    for version, weight in sorted(weights.items()) if weight
                ],
            }],
        },
    }


def render_yaml(objects: list[dict]) -> str:
    """The objects as one multi-document YAML file, in order, for ``kubectl apply -f``."""
    return yaml.safe_dump_all(objects, sort_keys=False, explicit_start=True, default_flow_style=False)
