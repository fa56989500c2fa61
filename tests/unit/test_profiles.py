"""Server profiles: declaration, choice, the options form and per-backend overrides.

The override functions are pure, so their results are checked as data. The
spawner mixin is exercised on ``LocalProcessSpawner`` without starting a
server, and once through a real JupyterHub on 127.0.0.1 to show that a bad
choice is answered with HTTP 400 listing the valid profiles.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from jupyterhub.objects import Hub
from jupyterhub.spawner import LocalProcessSpawner
from tornado import web
from traitlets import TraitError

from himalia.hub.profiles import (
    DEFAULT_PROFILES,
    HOME_MOUNT_PATH,
    Profile,
    ProfileChoiceError,
    ProfileError,
    ProfileSpawnerMixin,
    choose_profile,
    docker_overrides,
    kube_profile_list,
    kubespawner_override,
    local_overrides,
    options_form_html,
    parse_profiles,
)

HUB_SOURCE_ROOT = Path(__file__).resolve().parents[2] / "hub"


@pytest.fixture
def profiles():
    return parse_profiles(DEFAULT_PROFILES)


def by_name(profiles, name):
    return next(p for p in profiles if p.name == name)


def test_default_profiles_are_cpu_gpu_and_dask(profiles):
    assert [p.name for p in profiles] == ["cpu", "gpu", "dask"]
    cpu, gpu, dask = profiles
    assert cpu.default and not gpu.default and not dask.default
    assert (cpu.cpu, cpu.memory, cpu.gpus, cpu.image) == (2.0, "4G", 0, "himalia/base:latest")
    assert (gpu.cpu, gpu.memory, gpu.gpus, gpu.image) == (4.0, "16G", 1, "himalia/gpu:latest")
    assert gpu.tolerations == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert gpu.node_selector
    assert dask.env == {"HIMALIA_PROFILE": "dask"}


def test_profile_display_name_defaults_to_name():
    assert Profile.from_dict({"name": "small"}).display_name == "small"


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", "Not A Slug"),
        ("cpu", -1),
        ("cpu", "two"),
        ("memory", "4 gigs"),
        ("memory", "4Gi"),
        ("gpus", -1),
        ("gpus", 1.5),
        ("gpus", True),
        ("image", ""),
        ("env", {"A": 1}),
        ("default", "yes"),
        ("node_selector", ["gpu"]),
        ("tolerations", {"key": "x"}),
        ("mem_limit", "4G"),
    ],
)
def test_invalid_profile_field_is_named_in_the_error(field, value):
    with pytest.raises(ProfileError, match=repr(field)):
        Profile.from_dict({"name": "p", field: value})


def test_profile_names_must_be_unique():
    with pytest.raises(ProfileError, match="'a' is declared more than once"):
        parse_profiles([{"name": "a"}, {"name": "a"}])


def test_at_most_one_default_profile():
    with pytest.raises(ProfileError, match="Only one profile may be the default"):
        parse_profiles([{"name": "a", "default": True}, {"name": "b", "default": True}])


def test_first_profile_is_default_when_none_is_marked():
    a, b = parse_profiles([{"name": "a"}, {"name": "b"}])
    assert a.default and not b.default


def test_no_profiles_is_an_error():
    with pytest.raises(ProfileError, match="At least one profile"):
        parse_profiles([])


@pytest.mark.parametrize("user_options", [{}, None, {"profile": None}])
def test_no_choice_gives_the_default_profile(profiles, user_options):
    assert choose_profile(profiles, user_options).name == "cpu"


@pytest.mark.parametrize("user_options", [{"profile": "gpu"}, {"profile": ["gpu"]}])
def test_choice_by_api_or_form(profiles, user_options):
    assert choose_profile(profiles, user_options).name == "gpu"


def test_unknown_profile_lists_the_valid_ones(profiles):
    with pytest.raises(ProfileChoiceError) as info:
        choose_profile(profiles, {"profile": "tpu"})
    assert str(info.value) == "Unknown profile 'tpu'. Valid profiles: cpu, gpu, dask"


@pytest.mark.parametrize(
    "user_options",
    [
        {"profile": "cpu", "cmd": "rm -rf /"},
        {"mem_limit": "1T"},
        {"profile": "gpu", "image": "evil/image"},
    ],
)
def test_forged_user_options_are_rejected(profiles, user_options):
    with pytest.raises(ProfileChoiceError, match="Valid profiles: cpu, gpu, dask") as info:
        choose_profile(profiles, user_options)
    assert "Unexpected user option" in str(info.value)


@pytest.mark.parametrize("choice", [3, {"name": "gpu"}, ["gpu", "cpu"], []])
def test_non_string_profile_is_rejected(profiles, choice):
    with pytest.raises(ProfileChoiceError, match="Valid profiles: cpu, gpu, dask"):
        choose_profile(profiles, {"profile": choice})


def test_long_forged_values_are_shortened_in_messages(profiles):
    with pytest.raises(ProfileChoiceError) as info:
        choose_profile(profiles, {"profile": "x" * 10_000})
    assert len(str(info.value)) < 200


def test_options_form_has_one_radio_per_profile_and_checks_the_default(profiles):
    form = options_form_html(profiles)
    assert form.count('type="radio" name="profile"') == 3
    assert 'value="cpu" checked' in form
    assert 'value="gpu">' in form
    assert "1 GPU" in form


def test_options_form_escapes_text():
    profiles = parse_profiles(
        [{"name": "x", "display_name": "<script>alert(1)</script>", "description": "a & b"}]
    )
    form = options_form_html(profiles)
    assert "<script>" not in form
    assert "&lt;script&gt;" in form and "a &amp; b" in form


def test_local_cpu_profile_hides_all_gpus(profiles):
    overrides = local_overrides(by_name(profiles, "cpu"))
    assert overrides["environment"]["CUDA_VISIBLE_DEVICES"] == ""
    assert overrides["mem_limit"] == "4G"
    assert overrides["cpu_limit"] == 2.0


def test_local_gpu_profile_sees_the_chosen_gpus(profiles):
    gpu = by_name(profiles, "gpu")
    assert local_overrides(gpu)["environment"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert local_overrides(gpu, gpu_ids=[3])["environment"]["CUDA_VISIBLE_DEVICES"] == "3"


def test_local_gpu_ids_must_match_the_profile(profiles):
    with pytest.raises(ValueError, match="needs 1 GPU"):
        local_overrides(by_name(profiles, "gpu"), gpu_ids=[0, 1])


def test_local_overrides_keep_profile_env(profiles):
    env = local_overrides(by_name(profiles, "dask"))["environment"]
    assert env["HIMALIA_PROFILE"] == "dask"


def test_docker_gpu_profile_requests_nvidia_devices(profiles):
    overrides = docker_overrides(by_name(profiles, "gpu"), "alice")
    assert overrides["extra_host_config"]["device_requests"] == [
        {"Driver": "nvidia", "Count": 1, "Capabilities": [["gpu"]]}
    ]
    assert overrides["image"] == "himalia/gpu:latest"
    assert overrides["volumes"] == {"himalia-user-alice": HOME_MOUNT_PATH}
    assert "NVIDIA_VISIBLE_DEVICES" not in overrides["environment"]


def test_docker_cpu_profile_requests_no_devices_and_hides_gpus(profiles):
    overrides = docker_overrides(by_name(profiles, "cpu"), "alice")
    assert overrides["extra_host_config"] == {"memswap_limit": "4G"}  # no devices, no swap
    assert overrides["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert (overrides["mem_limit"], overrides["cpu_limit"]) == ("4G", 2.0)


def test_kubespawner_override_for_gpu(profiles):
    overrides = kubespawner_override(by_name(profiles, "gpu"))
    assert overrides["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    assert overrides["extra_resource_guarantees"] == {"nvidia.com/gpu": "1"}
    assert overrides["cpu_guarantee"] == overrides["cpu_limit"] == 4.0
    assert overrides["mem_guarantee"] == overrides["mem_limit"] == "16G"
    assert overrides["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert overrides["node_selector"] == {"nvidia.com/gpu.present": "true"}
    assert "storage_capacity" not in overrides


def test_kube_profile_list_entries(profiles):
    entries = kube_profile_list(profiles, storage_capacity="20Gi")
    assert [e["slug"] for e in entries] == ["cpu", "gpu", "dask"]
    cpu = entries[0]
    assert cpu["default"] is True
    assert cpu["display_name"] == "CPU"
    assert "extra_resource_limits" not in cpu["kubespawner_override"]
    assert "node_selector" not in cpu["kubespawner_override"]
    assert all(e["kubespawner_override"]["storage_capacity"] == "20Gi" for e in entries)


def test_overrides_do_not_share_mutable_state_with_profiles(profiles):
    gpu = by_name(profiles, "gpu")
    kubespawner_override(gpu)["tolerations"].clear()
    docker_overrides(gpu, "a")["environment"]["X"] = "1"
    assert gpu.tolerations and "X" not in gpu.env


class FakeUser:
    name = "alice"
    id = 1
    url = "/user/alice/"


class ProfileLocalSpawner(ProfileSpawnerMixin, LocalProcessSpawner):
    """The shape of himalia's local spawner, without starting processes."""

    def profile_overrides(self, profile):
        return local_overrides(profile)


def make_spawner(**kwargs):
    return ProfileLocalSpawner(user=FakeUser(), hub=Hub(), **kwargs)


def test_mixin_form_and_form_parsing():
    spawner = make_spawner()
    assert 'name="profile"' in spawner.options_form
    assert spawner.options_from_form({"profile": ["gpu"]}) == {"profile": "gpu"}
    assert spawner.options_from_form({}) == {}
    assert spawner.options_from_form({"profile": ["gpu"], "cmd": ["x"]}) == {"profile": "gpu"}


def test_hub_apply_user_options_step_applies_the_profile():
    spawner = make_spawner(environment={"KEEP": "me"})
    asyncio.run(spawner._run_apply_user_options({"profile": "gpu"}))
    assert spawner.himalia_profile.name == "gpu"
    assert spawner.environment == {"KEEP": "me", "CUDA_VISIBLE_DEVICES": "0"}
    assert spawner.mem_limit == 16 * 1024**3
    assert spawner.cpu_limit == 4.0


def test_hub_apply_user_options_step_answers_bad_choice_with_400():
    spawner = make_spawner()
    with pytest.raises(web.HTTPError) as info:
        asyncio.run(spawner._run_apply_user_options({"profile": "tpu"}))
    assert info.value.status_code == 400
    assert info.value.get_message() == "Unknown profile 'tpu'. Valid profiles: cpu, gpu, dask"
    assert spawner.himalia_profile is None


def test_switching_profiles_does_not_leak_settings():
    spawner = make_spawner(environment={"KEEP": "me"}, mem_limit="1G")
    spawner.apply_profile({"profile": "dask"})
    spawner.apply_profile({"profile": "gpu"})
    assert spawner.environment == {"KEEP": "me", "CUDA_VISIBLE_DEVICES": "0"}
    spawner.apply_profile({"profile": "cpu"})
    assert spawner.environment == {"KEEP": "me", "CUDA_VISIBLE_DEVICES": ""}
    assert spawner.mem_limit == 4 * 1024**3


def test_start_applies_the_profile_when_a_custom_hook_skipped_it(monkeypatch):
    started = []

    async def fake_start(self):
        started.append(self.himalia_profile.name)
        return ("127.0.0.1", 1)

    monkeypatch.setattr(LocalProcessSpawner, "start", fake_start)
    spawner = make_spawner(apply_user_options=lambda spawner, options: None)
    spawner.user_options = {"profile": "dask"}
    assert asyncio.run(spawner.start()) == ("127.0.0.1", 1)
    assert started == ["dask"]


def test_clear_state_forgets_the_profile():
    spawner = make_spawner()
    spawner.apply_profile({"profile": "gpu"})
    spawner.clear_state()
    assert spawner.himalia_profile is None


def test_configured_profiles_are_validated():
    with pytest.raises(TraitError, match="himalia_profiles: .*'gpus'"):
        make_spawner(himalia_profiles=[{"name": "big", "gpus": -2}])


def test_configured_profiles_replace_the_defaults():
    spawner = make_spawner(himalia_profiles=[{"name": "small", "cpu": 1}])
    assert [p.name for p in spawner.profiles] == ["small"]
    assert spawner.chosen_profile({}).name == "small"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HUB_CONFIG = """
from jupyterhub.proxy import Proxy
from jupyterhub.spawner import LocalProcessSpawner
from himalia.hub.profiles import ProfileSpawnerMixin, local_overrides


class NoProxy(Proxy):
    # the requests under test never reach a route
    should_start = False
    routes = {{}}

    async def add_route(self, routespec, target, data):
        self.routes[routespec] = {{"routespec": routespec, "target": target, "data": data}}

    async def delete_route(self, routespec):
        self.routes.pop(routespec, None)

    async def get_all_routes(self):
        return dict(self.routes)


class ProfileLocalSpawner(ProfileSpawnerMixin, LocalProcessSpawner):
    def profile_overrides(self, profile):
        return local_overrides(profile)


c.JupyterHub.proxy_class = NoProxy
c.JupyterHub.spawner_class = ProfileLocalSpawner
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {port}
c.JupyterHub.db_url = "sqlite://"
c.JupyterHub.cookie_secret = b"0" * 32
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {{"alice"}}
c.JupyterHub.services = [{{"name": "tester", "api_token": "{token}"}}]
c.JupyterHub.load_roles = [
    {{"name": "tester", "scopes": ["admin:users", "admin:servers"], "services": ["tester"]}}
]
"""


@pytest.fixture(scope="module")
def hub_api(tmp_path_factory):
    """A real JupyterHub using the profile mixin; yields a request function."""
    workdir = tmp_path_factory.mktemp("hub")
    port, token = _free_port(), "profile-test-token-0123456789"
    (workdir / "jupyterhub_config.py").write_text(
        textwrap.dedent(HUB_CONFIG).format(port=port, token=token)
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HUB_SOURCE_ROOT), env.get("PYTHONPATH")]))
    log = open(workdir / "hub.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", "jupyterhub_config.py"],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/hub/api"

    def request(method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            base + path, data=data, method=method, headers={"Authorization": f"token {token}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if request("GET", "/")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((workdir / "hub.log").read_text())
            time.sleep(0.2)
        request("POST", "/users/alice")
        yield request
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.parametrize(
    "body, message",
    [
        ({"profile": "tpu"}, "Unknown profile 'tpu'. Valid profiles: cpu, gpu, dask"),
        ({"profile": "cpu", "cmd": "sh"}, "Unexpected user option(s): 'cmd'"),
        ({"user_options": {"mem_limit": "1T"}}, "Unexpected user option(s): 'mem_limit'"),
    ],
)
def test_hub_answers_bad_profile_with_400(hub_api, body, message):
    status, text = hub_api("POST", "/users/alice/server", body)
    assert status == 400
    reply = json.loads(text)
    assert message in reply["message"]
    assert "Valid profiles: cpu, gpu, dask" in reply["message"]


# -- profiles a deployment cannot start ----------------------------------------------------------


class NoGPUSpawner(ProfileLocalSpawner):
    """A backend on a host without GPUs, as the local spawner says through the hook."""

    def profile_unavailable(self, profile):
        return "this host has no GPU" if profile.gpus else None


def test_every_profile_is_available_unless_the_backend_says_otherwise():
    assert make_spawner().unavailable_profiles() == {}
    assert " disabled" not in make_spawner().options_form


def test_the_form_shows_an_unavailable_profile_disabled_with_the_reason(profiles):
    form = options_form_html(profiles, {"gpu": "this host has no GPU"})
    gpu = form[form.index('id="himalia-profile-gpu"'):]

    assert gpu.split(">", 1)[0].endswith(" disabled")
    assert "Not available here: this host has no GPU" in gpu.split("</div>", 1)[0]
    assert 'value="cpu" checked' in form


def test_an_unavailable_default_profile_moves_the_default_to_one_that_starts(profiles):
    gpu_first = parse_profiles([{**DEFAULT_PROFILES[1], "default": True},
                                {**DEFAULT_PROFILES[0], "default": False}])
    form = options_form_html(gpu_first, {"gpu": "no GPU"})

    assert 'value="gpu" disabled' in form.replace(" checked", "")
    assert 'value="cpu" checked' in form


def test_the_spawner_form_uses_the_backends_reasons():
    form = NoGPUSpawner(user=FakeUser(), hub=Hub()).options_form

    assert 'id="himalia-profile-gpu-unavailable"' in form
    assert "this host has no GPU" in form


def test_asking_for_an_unavailable_profile_is_a_400_that_says_why():
    spawner = NoGPUSpawner(user=FakeUser(), hub=Hub())
    with pytest.raises(web.HTTPError) as info:
        asyncio.run(spawner._run_apply_user_options({"profile": "gpu"}))

    assert info.value.status_code == 400
    assert info.value.get_message() == (
        "Profile 'gpu' is not available here: this host has no GPU. "
        "Available profiles: cpu, dask")
    assert info.value.jupyterhub_message == info.value.get_message()
    assert spawner.himalia_profile is None
    asyncio.run(spawner._run_apply_user_options({"profile": "cpu"}))
    assert spawner.himalia_profile.name == "cpu"
