"""Server profiles: declared once as data, rendered for each spawner backend.

A profile (``cpu``, ``gpu``, ``dask`` by default) names the resources and image
of a user's server. The same :class:`Profile` is turned into spawner trait
overrides by one pure function per backend:

- :func:`local_overrides` for local processes (``HimaliaLocalSpawner``),
- :func:`docker_overrides` for ``DockerSpawner``,
- :func:`kubespawner_override` / :func:`kube_profile_list` for ``KubeSpawner``
  (the latter is also the shape of Zero-to-JupyterHub's ``singleuser.profileList``).

:class:`ProfileSpawnerMixin` is the glue every himalia spawner shares: it
renders the options form, validates the user's choice (a bad choice is an
HTTP 400 whose message lists the valid profiles) and applies the chosen
profile's overrides to the spawner before it starts.
"""

from __future__ import annotations

import copy
import dataclasses
import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tornado import web
from traitlets import Dict, List, TraitError, default, validate
from traitlets.config import LoggingConfigurable

__all__ = [
    "DEFAULT_PROFILES",
    "HOME_MOUNT_PATH",
    "Profile",
    "ProfileChoiceError",
    "ProfileError",
    "ProfileSpawnerMixin",
    "apply_profile_user_options",
    "choose_profile",
    "docker_overrides",
    "kube_profile_list",
    "kubespawner_override",
    "local_overrides",
    "options_form_html",
    "parse_profiles",
]

#: Where the per-user persistent volume is mounted in container images.
HOME_MOUNT_PATH = "/home/jovyan/work"

#: The Kubernetes extended resource (and Docker device driver) for GPUs.
GPU_RESOURCE = "nvidia.com/gpu"

DEFAULT_PROFILES: list[dict[str, Any]] = [
    {
        "name": "cpu",
        "display_name": "CPU",
        "description": "2 CPU cores, 4 GB memory. For most notebooks.",
        "cpu": 2,
        "memory": "4G",
        "image": "himalia/base:latest",
        "default": True,
    },
    {
        "name": "gpu",
        "display_name": "GPU",
        "description": "4 CPU cores, 16 GB memory, 1 NVIDIA GPU. For training deep models.",
        "cpu": 4,
        "memory": "16G",
        "gpus": 1,
        "image": "himalia/gpu:latest",
        "node_selector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
    },
    {
        "name": "dask",
        "display_name": "Dask",
        "description": "2 CPU cores, 4 GB memory, for driving Dask clusters.",
        "cpu": 2,
        "memory": "4G",
        "image": "himalia/base:latest",
        "env": {"HIMALIA_PROFILE": "dask"},
    },
]
"""The profiles a fresh install offers (``himalia_profiles`` default)."""

_SLUG = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Same units as jupyterhub.traitlets.ByteSpecification, which every spawner's
# mem_limit trait uses to parse the value.
_MEMORY = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGT]$")


class ProfileError(ValueError):
    """A profile declaration is invalid (a deployment configuration mistake)."""


class ProfileChoiceError(ValueError):
    """A user asked for a profile that does not exist, or sent other options."""


@dataclass(frozen=True)
class Profile:
    """One kind of user server: resources, image and environment.

    ``cpu`` is in cores, ``memory`` uses the suffixes K, M, G, T (units of
    1024, like JupyterHub's ``mem_limit``); ``None`` leaves the spawner's
    configured limit in place. ``node_selector`` and ``tolerations`` are used
    by Kubernetes only; ``image`` by Docker and Kubernetes.
    """

    name: str
    display_name: str = ""
    description: str = ""
    cpu: float | None = None
    memory: str | None = None
    gpus: int = 0
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    default: bool = False
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """Validate a profile declaration and build a :class:`Profile`.

        Raises :class:`ProfileError` whose message names the bad field.
        """
        if not isinstance(data, Mapping):
            raise ProfileError(f"A profile must be a dict, got {type(data).__name__}")
        name = data.get("name")
        if not isinstance(name, str) or not _SLUG.match(name):
            raise ProfileError(
                "Profile field 'name' must be a slug (lowercase letters, digits, '-'),"
                f" got {name!r}"
            )
        where = f"Profile {name!r}"
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ProfileError(
                f"{where}: unknown field {unknown[0]!r}; known fields: {', '.join(sorted(known))}"
            )

        def check(key: str, ok: bool, expected: str) -> None:
            if not ok:
                raise ProfileError(f"{where}: field {key!r} must be {expected}, got {data[key]!r}")

        def is_str_dict(value: Any) -> bool:
            return isinstance(value, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            )

        values = dict(data)
        values.setdefault("display_name", name)
        for key in ("display_name", "description"):
            if key in data:
                check(key, isinstance(data[key], str), "a string")
        if data.get("cpu") is not None:
            cpu = data["cpu"]
            check("cpu", isinstance(cpu, int | float) and not isinstance(cpu, bool) and cpu > 0,
                  "a positive number of cores")
            values["cpu"] = float(cpu)
        if data.get("memory") is not None:
            check("memory", isinstance(data["memory"], str) and bool(_MEMORY.match(data["memory"])),
                  "a size like '4G' (suffix K, M, G or T)")
        if "gpus" in data:
            gpus = data["gpus"]
            check("gpus", isinstance(gpus, int) and not isinstance(gpus, bool) and gpus >= 0,
                  "a non-negative integer")
        if data.get("image") is not None:
            check("image", isinstance(data["image"], str) and bool(data["image"].strip()),
                  "a non-empty image name")
        if "default" in data:
            check("default", isinstance(data["default"], bool), "true or false")
        for key in ("env", "node_selector"):
            if key in data:
                check(key, is_str_dict(data[key]), "a mapping of strings to strings")
                values[key] = dict(data[key])
        if "tolerations" in data:
            tolerations = data["tolerations"]
            check("tolerations",
                  isinstance(tolerations, list) and all(isinstance(t, dict) for t in tolerations),
                  "a list of Kubernetes toleration dicts")
            values["tolerations"] = copy.deepcopy(tolerations)
        return cls(**values)


def parse_profiles(declarations: Iterable[Mapping[str, Any]]) -> list[Profile]:
    """Validate a list of profile declarations.

    Names must be unique and at most one profile may be the default; when
    none is, the first one becomes the default. Raises :class:`ProfileError`.
    """
    profiles = [Profile.from_dict(d) for d in declarations]
    if not profiles:
        raise ProfileError("At least one profile must be declared")
    seen: set[str] = set()
    for profile in profiles:
        if profile.name in seen:
            raise ProfileError(f"Profile name {profile.name!r} is declared more than once")
        seen.add(profile.name)
    defaults = [p.name for p in profiles if p.default]
    if len(defaults) > 1:
        raise ProfileError(f"Only one profile may be the default, got: {', '.join(defaults)}")
    if not defaults:
        profiles[0] = dataclasses.replace(profiles[0], default=True)
    return profiles


def _default_profile(profiles: Sequence[Profile]) -> Profile:
    return next((p for p in profiles if p.default), profiles[0])


def _short(value: Any, limit: int = 60) -> str:
    """repr() of untrusted input, shortened for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def choose_profile(profiles: Sequence[Profile], user_options: Mapping[str, Any] | None) -> Profile:
    """Return the profile selected by ``user_options``.

    ``user_options`` is ``{}`` or ``None`` (the default profile),
    ``{"profile": "gpu"}`` (REST API) or ``{"profile": ["gpu"]}`` (form data).
    Any other key, a non-string value or an unknown name raises
    :class:`ProfileChoiceError` whose message lists the valid profile names.
    """
    valid = f"Valid profiles: {', '.join(p.name for p in profiles)}"
    if user_options is None:
        user_options = {}
    if not isinstance(user_options, Mapping):
        raise ProfileChoiceError(
            f"user_options must be an object, got {type(user_options).__name__}. {valid}"
        )
    unexpected = sorted(str(k) for k in user_options if k != "profile")
    if unexpected:
        raise ProfileChoiceError(
            f"Unexpected user option(s): {', '.join(_short(k) for k in unexpected)}."
            f" Only 'profile' may be chosen. {valid}"
        )
    choice = user_options.get("profile")
    if isinstance(choice, list) and len(choice) == 1:
        choice = choice[0]
    if choice is None:
        return _default_profile(profiles)
    if not isinstance(choice, str):
        raise ProfileChoiceError(
            f"Profile must be a single string, got {type(choice).__name__}. {valid}"
        )
    for profile in profiles:
        if profile.name == choice:
            return profile
    raise ProfileChoiceError(f"Unknown profile {_short(choice)}. {valid}")


def _resources_summary(profile: Profile) -> str:
    parts = []
    if profile.cpu is not None:
        parts.append(f"{profile.cpu:g} CPU")
    if profile.memory is not None:
        parts.append(f"{profile.memory} memory")
    if profile.gpus:
        parts.append(f"{profile.gpus} GPU")
    return " · ".join(parts)


def options_form_html(
    profiles: Sequence[Profile], unavailable: Mapping[str, str] | None = None
) -> str:
    """Render the spawn options form: one radio button named ``profile`` per profile.

    ``unavailable`` maps profile names to why they cannot start here; those are shown
    disabled with the reason, and the default moves to the first profile that can start.
    """
    unavailable = unavailable or {}
    default = _default_profile(profiles)
    if default.name in unavailable:
        default = next((p for p in profiles if p.name not in unavailable), None)
    items = []
    for profile in profiles:
        input_id = html.escape(f"himalia-profile-{profile.name}")
        checked = " checked" if profile is default else ""
        reason = unavailable.get(profile.name)
        disabled = " disabled" if reason else ""
        label = f"<strong>{html.escape(profile.display_name)}</strong>"
        summary = _resources_summary(profile)
        if summary:
            label += f" <small>({html.escape(summary)})</small>"
        if profile.description:
            label += f"<br><span>{html.escape(profile.description)}</span>"
        if reason:
            label += (f'<br><span class="himalia-profile-unavailable text-muted"'
                      f' id="{input_id}-unavailable">'
                      f"Not available here: {html.escape(reason)}</span>")
        items.append(
            f'<div class="form-check{" text-muted" if reason else ""}">'
            f'<input class="form-check-input" type="radio" name="profile" id="{input_id}"'
            f' value="{html.escape(profile.name)}"{checked}{disabled}>'
            f'<label class="form-check-label" for="{input_id}">{label}</label>'
            "</div>"
        )
    return (
        '<fieldset class="himalia-profiles"><legend>Server profile</legend>'
        + "".join(items)
        + "</fieldset>"
    )


def _container_gpu_env(profile: Profile) -> dict[str, str]:
    # NVIDIA's runtime and k8s device plugin expose *all* GPUs to a container
    # that asks for none when its image sets NVIDIA_VISIBLE_DEVICES=all (CUDA
    # images do); "void" turns that off so CPU profiles never see a GPU.
    if profile.gpus:
        return {}
    return {"NVIDIA_VISIBLE_DEVICES": "void", "CUDA_VISIBLE_DEVICES": ""}


def local_overrides(profile: Profile, gpu_ids: Sequence[int | str] | None = None) -> dict[str, Any]:
    """Spawner trait overrides for a local-process server.

    ``gpu_ids`` are the devices given to this server (default: the first
    ``profile.gpus`` devices); their number must match ``profile.gpus``.
    A CPU profile gets ``CUDA_VISIBLE_DEVICES=""`` so it sees no GPU. Local
    processes cannot enforce ``mem_limit``/``cpu_limit``; JupyterHub passes
    them to the server as ``MEM_LIMIT``/``CPU_LIMIT``.
    """
    if gpu_ids is None:
        gpu_ids = range(profile.gpus)
    gpu_ids = [str(i) for i in gpu_ids]
    if len(gpu_ids) != profile.gpus:
        raise ValueError(
            f"Profile {profile.name!r} needs {profile.gpus} GPU(s), got ids {gpu_ids}"
        )
    overrides: dict[str, Any] = {
        "environment": {**profile.env, "CUDA_VISIBLE_DEVICES": ",".join(gpu_ids)},
    }
    if profile.memory is not None:
        overrides["mem_limit"] = profile.memory
    if profile.cpu is not None:
        overrides["cpu_limit"] = profile.cpu
    return overrides


def docker_overrides(profile: Profile, username: str) -> dict[str, Any]:
    """DockerSpawner trait overrides for ``profile``.

    ``username`` must already be safe for a Docker volume name (use the
    spawner's ``escaped_name``). The user's files live on the named volume
    ``himalia-user-{username}`` mounted at :data:`HOME_MOUNT_PATH`, shared by
    all of the user's servers. GPUs are requested with a docker-py
    ``DeviceRequest``-shaped dict in ``extra_host_config``.
    """
    overrides: dict[str, Any] = {
        "environment": {**profile.env, **_container_gpu_env(profile)},
        "volumes": {f"himalia-user-{username}": HOME_MOUNT_PATH},
        "extra_host_config": {},
    }
    if profile.image is not None:
        overrides["image"] = profile.image
    if profile.memory is not None:
        overrides["mem_limit"] = profile.memory
        # Swap counts against the limit too: past it the kernel is killed, not slowed down.
        overrides["extra_host_config"]["memswap_limit"] = profile.memory
    if profile.cpu is not None:
        overrides["cpu_limit"] = profile.cpu
    if profile.gpus:
        overrides["extra_host_config"]["device_requests"] = [
            {"Driver": "nvidia", "Count": profile.gpus, "Capabilities": [["gpu"]]}
        ]
    return overrides


def kubespawner_override(profile: Profile, storage_capacity: str | None = None) -> dict[str, Any]:
    """KubeSpawner trait overrides (a ``kubespawner_override`` dict) for ``profile``.

    Requests equal limits, so a pod gets exactly the resources its profile
    names. ``storage_capacity``, when given, is the size requested for the
    user's PVC when it is first created (later spawns reuse the claim).
    """
    overrides: dict[str, Any] = {
        "environment": {**profile.env, **_container_gpu_env(profile)},
    }
    if profile.image is not None:
        overrides["image"] = profile.image
    if profile.cpu is not None:
        overrides["cpu_guarantee"] = overrides["cpu_limit"] = profile.cpu
    if profile.memory is not None:
        overrides["mem_guarantee"] = overrides["mem_limit"] = profile.memory
    if profile.gpus:
        # Kubernetes requires requests == limits for extended resources.
        overrides["extra_resource_limits"] = {GPU_RESOURCE: str(profile.gpus)}
        overrides["extra_resource_guarantees"] = {GPU_RESOURCE: str(profile.gpus)}
    if profile.node_selector:
        overrides["node_selector"] = dict(profile.node_selector)
    if profile.tolerations:
        overrides["tolerations"] = copy.deepcopy(profile.tolerations)
    if storage_capacity is not None:
        overrides["storage_capacity"] = storage_capacity
    return overrides


def kube_profile_list(
    profiles: Sequence[Profile], storage_capacity: str = "10Gi"
) -> list[dict[str, Any]]:
    """Render profiles as KubeSpawner ``profile_list`` entries.

    The result can be used as ``c.KubeSpawner.profile_list`` or as
    Zero-to-JupyterHub's ``singleuser.profileList``. Per-user storage is a PVC
    (``claim-{user_server}``) of ``storage_capacity``; mounting it needs the
    spawner-level settings ``storage_pvc_ensure``, ``volumes`` and
    ``volume_mounts``, which ``HimaliaKubeSpawner`` sets by default.
    """
    return [
        {
            "display_name": p.display_name,
            "slug": p.name,
            "description": p.description,
            "default": p.default,
            "kubespawner_override": kubespawner_override(p, storage_capacity),
        }
        for p in profiles
    ]


def _merged(base: Any, override: Any) -> Any:
    """Merge override dicts into configured dicts (recursively), else replace."""
    if isinstance(base, dict) and isinstance(override, dict):
        result = dict(base)
        for key, value in override.items():
            result[key] = _merged(base.get(key), value)
        return result
    return copy.deepcopy(override)


def _choice_error(message: str) -> web.HTTPError:
    error = web.HTTPError(400, "%s", message)
    # shown instead of "HTTP 400: Bad Request (...)" on the spawn form
    error.jupyterhub_message = message
    return error


def apply_profile_user_options(spawner: ProfileSpawnerMixin, user_options: dict) -> None:
    """``Spawner.apply_user_options`` hook that validates and applies the profile.

    It is the default hook of every himalia spawner. A deployment that sets
    its own ``c.Spawner.apply_user_options`` should call this from it.
    """
    spawner.apply_profile(user_options)


class ProfileSpawnerMixin(LoggingConfigurable):
    """Profile selection shared by himalia's spawners.

    Mix in before the upstream spawner class::

        class HimaliaDockerSpawner(ProfileSpawnerMixin, DockerSpawner):
            def profile_overrides(self, profile):
                return docker_overrides(profile, self.escaped_name)

    The chosen profile is validated and applied in JupyterHub's
    ``apply_user_options`` step (before ``pre_spawn_hook`` and ``start``),
    where an :class:`tornado.web.HTTPError` becomes the response to the spawn
    request; ``start`` applies it if a custom hook skipped that. Dict-valued
    overrides (``environment``, ``volumes``...) are merged into the configured
    values; other values replace them.
    """

    himalia_profiles = List(
        Dict(),
        config=True,
        help="""
        Server profiles users choose from when they start a server.

        Each entry is a dict with the keys ``name`` (slug), ``display_name``,
        ``description``, ``cpu`` (cores), ``memory`` (e.g. "4G"), ``gpus``,
        ``image``, ``env``, ``default``, and for Kubernetes ``node_selector``
        and ``tolerations``. The default offers ``cpu``, ``gpu`` and ``dask``.
        A spawn request naming any other profile, or sending any user option
        other than ``profile``, is answered with HTTP 400.
        """,
    )

    #: The profile applied for the current spawn, or None before it is chosen.
    himalia_profile: Profile | None = None
    _himalia_baseline: dict[str, Any] | None = None

    @default("himalia_profiles")
    def _default_himalia_profiles(self) -> list[dict[str, Any]]:
        return copy.deepcopy(DEFAULT_PROFILES)

    @validate("himalia_profiles")
    def _validate_himalia_profiles(self, proposal: Any) -> list[dict[str, Any]]:
        try:
            parse_profiles(proposal["value"])
        except ProfileError as e:
            raise TraitError(f"himalia_profiles: {e}") from e
        return proposal["value"]

    @default("options_form")
    def _default_profile_options_form(self) -> str:
        return options_form_html(self.profiles, self.unavailable_profiles())

    @default("options_from_form")
    def _default_profile_options_from_form(self) -> Any:
        return self._profile_options_from_form

    @default("apply_user_options")
    def _default_apply_profile_user_options(self) -> Any:
        return apply_profile_user_options

    @property
    def profiles(self) -> list[Profile]:
        """The configured profiles, validated."""
        return parse_profiles(self.himalia_profiles)

    def _profile_options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        """Turn the options form (or ``/hub/spawn?profile=...``) into ``user_options``."""
        ignored = sorted(k for k in formdata if k != "profile")
        if ignored:
            self.log.warning("Ignoring unrecognized spawn form fields: %s", ", ".join(ignored))
        values = formdata.get("profile")
        if not values:
            return {}
        # several values stay a list, which choose_profile rejects
        return {"profile": values[0] if len(values) == 1 else values}

    def chosen_profile(self, user_options: Mapping[str, Any] | None = None) -> Profile:
        """The profile selected by ``user_options`` (default: ``self.user_options``).

        Raises :class:`tornado.web.HTTPError` 400 whose message lists the
        valid profiles (or says why the chosen one cannot start here), which
        JupyterHub relays to the user.
        """
        if user_options is None:
            user_options = self.user_options
        try:
            profile = choose_profile(self.profiles, user_options)
        except ProfileChoiceError as e:
            raise _choice_error(str(e)) from e
        reason = self.profile_unavailable(profile)
        if reason:
            available = [p.name for p in self.profiles if not self.profile_unavailable(p)]
            raise _choice_error(
                f"Profile {profile.name!r} is not available here: {reason}."
                f" Available profiles: {', '.join(available) or 'none'}"
            )
        return profile

    def profile_unavailable(self, profile: Profile) -> str | None:
        """Why ``profile`` cannot start with this spawner's resources, or None when it can.

        The spawn form shows such a profile disabled with this reason, and a request for it
        is answered with HTTP 400 saying so. Backends that know their resources override
        this (the local spawner: a GPU profile on a host without GPUs).
        """
        return None

    def unavailable_profiles(self) -> dict[str, str]:
        """``{profile name: reason}`` for the configured profiles that cannot start."""
        reasons = {p.name: self.profile_unavailable(p) for p in self.profiles}
        return {name: reason for name, reason in reasons.items() if reason}

    def profile_overrides(self, profile: Profile) -> dict[str, Any]:
        """Spawner trait values for ``profile``; each backend implements this."""
        raise NotImplementedError(f"{type(self).__name__} must implement profile_overrides()")

    def apply_profile(self, user_options: Mapping[str, Any] | None = None) -> Profile:
        """Validate the choice and set the chosen profile's trait overrides.

        Safe to call again: values set for an earlier profile are restored
        to their configured values first.
        """
        profile = self.chosen_profile(user_options)
        overrides = self.profile_overrides(profile)
        if self._himalia_baseline is None:
            self._himalia_baseline = {}
        for name, value in self._himalia_baseline.items():
            setattr(self, name, value)
        for name, value in overrides.items():
            current = getattr(self, name)
            self._himalia_baseline.setdefault(name, current)
            setattr(self, name, _merged(current, value))
        self.himalia_profile = profile
        self.log.info("Using profile %r for %s", profile.name, getattr(self, "_log_name", self))
        return profile

    async def start(self) -> Any:
        """Apply the chosen profile if ``apply_user_options`` did not, then start."""
        if self.himalia_profile is None:
            self.apply_profile()
        return await super().start()

    def clear_state(self) -> None:
        """Forget the applied profile so the next spawn chooses again."""
        super().clear_state()
        self.himalia_profile = None
