"""Work that runs to completion in a container built from a profile, on the Docker back end.

Users' servers are DockerSpawner containers; scheduled jobs and model servers run through the
same engine with the same rules, which live here so that every container the platform starts
looks alike:

* the profile's image, environment, CPU and memory limits (no swap past the memory limit) and
  GPU device requests, exactly as :func:`himalia.hub.profiles.docker_overrides` gives a server;
* the owner's volume ``himalia-user-{name}`` at ``/home/jovyan/work``, so a job reads and writes
  the same files as the owner's server;
* never root: the image's own user, or ``1000:100`` when the image names none or names root;
* the configured network (``host`` on a single machine), an init process, labels that say who
  and what the container is for, and removal once its result is read.

A capability builds a :class:`ContainerTask` and calls :func:`run_task` (blocking; call it from
a worker thread) or uses :func:`container_kwargs` with its own docker client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .profiles import HOME_MOUNT_PATH, Profile, docker_overrides

#: Used when an image runs as root or names no user: docker-stacks' jovyan (uid 1000, gid users).
DEFAULT_USER = "1000:100"
LABEL_PREFIX = "dev.himalia"


class ContainerError(RuntimeError):
    """The container could not be started; the message says what to do."""


@dataclass
class ContainerTask:
    """One container run: what to run, for whom, with which profile."""

    profile: Profile
    owner: str
    command: list[str]
    #: What started it, e.g. "job" or "deployment"; becomes the ``dev.himalia.kind`` label.
    kind: str
    environment: dict[str, str] = field(default_factory=dict)
    network: str = "host"
    name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    workdir: str = HOME_MOUNT_PATH


@dataclass
class ContainerResult:
    exit_code: int | None
    logs: str
    oom_killed: bool
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def volume_name(owner: str) -> str:
    """The owner's volume, the one their servers mount (DockerSpawner's escaping of names)."""
    from dockerspawner import DockerSpawner

    return f"himalia-user-{DockerSpawner._escape(owner)}"


def run_as(image_user: str | None) -> str:
    """The user a container runs as: the image's, unless that is root (or unset)."""
    user = (image_user or "").strip()
    if not user or re.fullmatch(r"(root|0)(:.*)?", user):
        return DEFAULT_USER
    return user


def container_kwargs(task: ContainerTask, image_user: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``docker.DockerClient().containers.run`` (docker-py) for ``task``."""
    if task.profile.image is None:
        raise ContainerError(f"profile {task.profile.name!r} names no image; containers need one")
    server = docker_overrides(task.profile, volume_name(task.owner).removeprefix("himalia-user-"))
    host_config = server["extra_host_config"]
    kwargs: dict[str, Any] = {
        "image": task.profile.image,
        "command": list(task.command),
        "user": run_as(image_user),
        "environment": {**server["environment"], **task.environment},
        "volumes": {volume: {"bind": path, "mode": "rw"} for volume, path in server["volumes"].items()},
        "working_dir": task.workdir,
        "network_mode": task.network,
        "init": True,
        "labels": {f"{LABEL_PREFIX}.owner": task.owner, f"{LABEL_PREFIX}.kind": task.kind,
                   f"{LABEL_PREFIX}.profile": task.profile.name, **task.labels},
        "detach": True,
    }
    if task.name:
        kwargs["name"] = task.name
    if "mem_limit" in server:
        kwargs["mem_limit"] = server["mem_limit"]
        kwargs["memswap_limit"] = host_config["memswap_limit"]
    if "cpu_limit" in server:
        kwargs["nano_cpus"] = int(server["cpu_limit"] * 1e9)
    if "device_requests" in host_config:
        from docker.types import DeviceRequest

        kwargs["device_requests"] = [
            DeviceRequest(driver=r["Driver"], count=r["Count"], capabilities=r["Capabilities"])
            for r in host_config["device_requests"]
        ]
    return kwargs


def run_task(task: ContainerTask, timeout: float, client: Any = None) -> ContainerResult:
    """Run ``task`` to completion (killing it after ``timeout`` seconds) and remove the container.

    ``client`` defaults to ``docker.from_env()`` (``DOCKER_HOST`` or the default socket).
    """
    import docker
    from docker.errors import DockerException, ImageNotFound
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import ReadTimeout

    try:
        client = client or docker.from_env()
        image = client.images.get(task.profile.image)
    except ImageNotFound as e:
        raise ContainerError(f"the image {task.profile.image!r} of profile {task.profile.name!r} is not on "
                             "the Docker engine: build it with `bash images/build.sh`") from e
    except (DockerException, RequestsConnectionError) as e:
        raise ContainerError(f"the Docker engine does not answer ({e}); start dockerd or set DOCKER_HOST") from e
    container = client.containers.run(**container_kwargs(task, image.attrs["Config"].get("User")))
    timed_out = False
    try:
        try:
            exit_code = container.wait(timeout=timeout)["StatusCode"]
        except (ReadTimeout, RequestsConnectionError):
            timed_out, exit_code = True, None
            container.kill()
            container.wait(timeout=30)
        container.reload()
        return ContainerResult(exit_code=exit_code, oom_killed=bool(container.attrs["State"]["OOMKilled"]),
                               logs=container.logs().decode(errors="replace"), timed_out=timed_out)
    finally:
        container.remove(force=True)
