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

from typing import Any

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

    class HimaliaDockerSpawner(ProfileSpawnerMixin, DockerSpawner):
        """DockerSpawner whose container settings come from the chosen profile.

        The profile sets ``image``, ``mem_limit``, ``cpu_limit`` and
        ``environment``; GPUs are passed as a Docker device request for the
        ``nvidia`` driver, and the user's files live on the named volume
        ``himalia-user-{username}`` mounted at ``/home/jovyan/work``.
        """

        def profile_overrides(self, profile: Profile) -> dict[str, Any]:
            """DockerSpawner traits for ``profile`` (see :func:`docker_overrides`)."""
            return docker_overrides(profile, self.escaped_name)


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
