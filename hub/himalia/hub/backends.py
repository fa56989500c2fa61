"""Spawners for the scale-out backends: Docker and Kubernetes.

Each is the upstream spawner plus :class:`~himalia.hub.profiles.ProfileSpawnerMixin`,
so users pick a profile from ``himalia_profiles`` and the profile's resources,
image and GPUs become the container's or pod's settings::

    c.JupyterHub.spawner_class = "himalia.hub.backends.HimaliaDockerSpawner"
    c.JupyterHub.spawner_class = "himalia.hub.backends.HimaliaKubeSpawner"

dockerspawner and jupyterhub-kubespawner are optional: this module imports
without them, and asking for a spawner whose package is missing raises an
:class:`ImportError` that names the extra to install.
"""

from __future__ import annotations

import os
from typing import Any

from jupyterhub.spawner import SpawnException
from jupyterhub.utils import random_port
from traitlets import default

from .profiles import (
    HOME_MOUNT_PATH,
    Profile,
    ProfileSpawnerMixin,
    docker_overrides,
    kubespawner_override,
)

# spawner class name -> (package, himalia extra that installs it)
_EXTRAS = {
    "HimaliaDockerSpawner": ("dockerspawner", "docker"),
    "HimaliaKubeSpawner": ("jupyterhub-kubespawner", "k8s"),
}
_import_errors: dict[str, ImportError] = {}

try:
    from dockerspawner import DockerSpawner
except ImportError as e:
    DockerSpawner = None
    _import_errors["HimaliaDockerSpawner"] = e

try:
    from kubespawner import KubeSpawner
except ImportError as e:
    KubeSpawner = None
    _import_errors["HimaliaKubeSpawner"] = e


def __getattr__(name: str) -> Any:
    if name in _import_errors:
        package, extra = _EXTRAS[name]
        raise ImportError(
            f"himalia.hub.backends.{name} needs {package}: pip install 'himalia[{extra}]'",
            name=__name__,
        ) from _import_errors[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if DockerSpawner is not None:
    from docker.errors import APIError, DockerException, ImageNotFound, NotFound
    from requests.exceptions import ConnectionError as RequestsConnectionError

    def _engine_unreachable(error: DockerException) -> bool:
        """Whether docker-py failed to reach the engine at all (not a refused request)."""
        causes = [error, error.__cause__, error.__context__]
        return "Error while fetching server API version" in str(error) or any(
            isinstance(c, (RequestsConnectionError, FileNotFoundError, ConnectionError)) for c in causes)

    class HimaliaDockerSpawner(ProfileSpawnerMixin, DockerSpawner):
        """DockerSpawner whose container settings come from the chosen profile.

        The profile sets ``image``, ``mem_limit`` (with no swap beyond it), ``cpu_limit`` and
        ``environment``; GPUs are passed as a Docker device request for the ``nvidia``
        driver, and the user's files live on the named volume ``himalia-user-{username}``
        mounted at ``/home/jovyan/work``, which outlives every container.

        On the host network (``network_name = "host"``) each server listens on
        127.0.0.1 at a free port picked at spawn time, as local processes do. Engine and
        image problems end the spawn with a :class:`SpawnException` that says what to do.
        """

        @default("prefix")
        def _default_prefix(self) -> str:
            return "himalia"

        @default("remove")
        def _default_remove(self) -> bool:
            # Containers are disposable: a stopped server's container is removed, its
            # volume (the user's files) stays.
            return True

        @property
        def on_host_network(self) -> bool:
            return self.network_name == "host"

        def profile_overrides(self, profile: Profile) -> dict[str, Any]:
            """DockerSpawner traits for ``profile`` (see :func:`docker_overrides`)."""
            return docker_overrides(profile, self.escaped_name)

        def prepare_network(self) -> None:
            """On the host network containers share the host's ports: each server gets its
            own, on loopback, and nothing is published (the engine refuses port bindings
            there)."""
            if self.on_host_network:
                self.ip = "127.0.0.1"
                self.port = random_port()
                self.use_internal_ip = True

        async def start(self) -> Any:
            self.prepare_network()
            try:
                return await super().start()
            except SpawnException:
                raise
            except ImageNotFound as e:
                raise self._image_missing(e) from e
            except (NotFound, APIError) as e:
                if "pull access denied" in str(e) or "repository does not exist" in str(e) \
                        or "manifest unknown" in str(e) or (isinstance(e, NotFound) and "image" in str(e).lower()):
                    raise self._image_missing(e) from e
                raise
            except (DockerException, RequestsConnectionError, FileNotFoundError) as e:
                if isinstance(e, DockerException) and not _engine_unreachable(e):
                    raise
                where = self.client_kwargs.get("base_url") or os.environ.get("DOCKER_HOST") or "the default socket"
                raise SpawnException(
                    f"The Docker engine at {where} does not answer, so no server can start."
                    " Ask the administrator to start dockerd (or to set DOCKER_HOST).",
                    reason="docker-engine", log_message=f"Docker engine at {where}: {e}",
                    status_code=503,
                ) from e

        async def pull_image(self, image: str) -> None:
            """DockerSpawner's pull (when the image is not on the engine), where any refusal,
            a registry that cannot be reached included, means the image is missing."""
            try:
                await super().pull_image(image)
            except APIError as e:
                raise self._image_missing(e) from e

        def _image_missing(self, error: Exception) -> SpawnException:
            return SpawnException(
                f"The image {self.image!r} of profile {self.himalia_profile.name if self.himalia_profile else '?'!r}"
                " is not on the Docker engine and could not be pulled. Build it with"
                " `bash images/build.sh` (or push it to a registry the engine reaches), or set"
                " the profile's image to one that exists.",
                reason="image", log_message=f"image {self.image!r}: {error}",
            )

        async def get_ip_and_port(self) -> tuple[str, int]:
            if self.on_host_network:
                return self.ip, self.port
            return await super().get_ip_and_port()

        def get_state(self) -> dict[str, Any]:
            state = super().get_state()
            if self.on_host_network and self.port:
                state["port"] = self.port
            return state

        def load_state(self, state: dict[str, Any]) -> None:
            super().load_state(state)
            if self.on_host_network and state.get("port"):
                self.ip = "127.0.0.1"
                self.port = int(state["port"])


if KubeSpawner is not None:

    class HimaliaKubeSpawner(ProfileSpawnerMixin, KubeSpawner):
        """KubeSpawner whose pod settings come from the chosen profile.

        The profile sets the image, CPU and memory requests and limits,
        ``nvidia.com/gpu`` resources, node selector and tolerations. Unlike
        KubeSpawner, per-user storage is on by default: a PVC
        (``pvc_name_template``, ``storage_capacity`` 10Gi) is created on first
        spawn and mounted at ``/home/jovyan/work``. ``himalia_profiles``
        replaces KubeSpawner's ``profile_list``.
        """

        @default("storage_pvc_ensure")
        def _default_storage_pvc_ensure(self) -> bool:
            return True

        @default("storage_capacity")
        def _default_storage_capacity(self) -> str:
            return "10Gi"

        @default("volumes")
        def _default_volumes(self) -> list[dict[str, Any]]:
            return [{"name": "himalia-home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}]

        @default("volume_mounts")
        def _default_volume_mounts(self) -> list[dict[str, Any]]:
            return [{"name": "himalia-home", "mountPath": HOME_MOUNT_PATH}]

        def profile_overrides(self, profile: Profile) -> dict[str, Any]:
            """KubeSpawner traits for ``profile`` (see :func:`kubespawner_override`)."""
            return kubespawner_override(profile)

        async def load_user_options(self) -> None:
            """Apply the chosen profile instead of KubeSpawner's ``profile_list``."""
            if self.himalia_profile is None:
                self.apply_profile()


__all__ = [name for name in _EXTRAS if name not in _import_errors]
