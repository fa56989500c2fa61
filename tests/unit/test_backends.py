"""The Docker and Kubernetes spawners build the right container and pod for a profile.

No Docker engine and no Kubernetes cluster exist where these tests run, so
nothing is started: the container create arguments are captured from a
``docker.APIClient`` given an explicit API version (so it never asks an engine
for one), and the pod manifest comes from ``KubeSpawner.get_pod_manifest()``
with kubespawner's kube-config loading and client creation patched out.
The profile is chosen through the same step the hub runs before ``start``
(``Spawner._run_apply_user_options``).
"""

import asyncio
import importlib
import sys

import docker
import kubespawner.spawner
import pytest
from jupyterhub.objects import Hub
from kubernetes_asyncio.client import ApiClient
from tornado import web

from himalia.hub import backends
from himalia.hub.backends import HimaliaDockerSpawner, HimaliaKubeSpawner


class FakeUser:
    name = "alice"
    id = 1
    url = "/user/alice/"


def choose(spawner, user_options):
    """Run the hub's apply-user-options step, as ``User.spawn`` does."""
    spawner.user_options = user_options
    asyncio.run(spawner._run_apply_user_options(user_options))


@pytest.fixture
def docker_calls(monkeypatch):
    """A docker API client that records create arguments instead of calling an engine."""
    client = docker.APIClient(version="1.44", base_url="unix:///nonexistent/docker.sock")
    calls = {}
    build_host_config = client.create_host_config

    def create_host_config(**kwargs):
        calls["host_config_kwargs"] = kwargs
        return build_host_config(**kwargs)

    def create_container(**kwargs):
        calls["create_container"] = kwargs
        return {"Id": "0123456789ab"}

    monkeypatch.setattr(client, "create_host_config", create_host_config)
    monkeypatch.setattr(client, "create_container", create_container)
    # the image's CMD, which DockerSpawner reads when no cmd is configured
    monkeypatch.setattr(
        client, "inspect_image", lambda image: {"Config": {"Cmd": ["jupyterhub-singleuser"]}}
    )
    monkeypatch.setattr(HimaliaDockerSpawner, "_client", client)
    return calls


def create_container(user_options, **config):
    spawner = HimaliaDockerSpawner(user=FakeUser(), hub=Hub(), **config)
    choose(spawner, user_options)
    asyncio.run(spawner.create_object())
    return spawner


def test_docker_gpu_container(docker_calls):
    create_container({"profile": "gpu"})
    kwargs = docker_calls["create_container"]
    host_config = kwargs["host_config"]
    assert kwargs["image"] == "himalia/gpu:latest"
    assert kwargs["command"] == ["jupyterhub-singleuser"]
    assert host_config["DeviceRequests"] == [
        {
            "Driver": "nvidia",
            "Count": 1,
            "DeviceIDs": [],
            "Capabilities": [["gpu"]],
            "Options": {},
        }
    ]
    assert host_config["Memory"] == 16 * 1024**3
    assert host_config["CpuQuota"] == 4 * host_config["CpuPeriod"]
    assert "himalia-user-alice:/home/jovyan/work:rw" in host_config["Binds"]
    assert "/home/jovyan/work" in kwargs["volumes"]
    assert "NVIDIA_VISIBLE_DEVICES" not in kwargs["environment"]


def test_docker_cpu_container(docker_calls):
    create_container({})
    kwargs = docker_calls["create_container"]
    host_config = kwargs["host_config"]
    assert kwargs["image"] == "himalia/base:latest"
    assert "DeviceRequests" not in host_config
    assert host_config["Memory"] == 4 * 1024**3
    assert host_config["MemorySwap"] == host_config["Memory"]  # no swap beyond the limit
    assert host_config["CpuQuota"] == 2 * host_config["CpuPeriod"]
    assert kwargs["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert kwargs["environment"]["CUDA_VISIBLE_DEVICES"] == ""
    assert "himalia-user-alice:/home/jovyan/work:rw" in host_config["Binds"]


def test_docker_on_the_host_network_listens_on_loopback_at_its_own_port(docker_calls):
    # The exact arguments for the engine's create call (the real engine is in
    # tests/integration/test_docker.py); the engine refuses port bindings on this network.
    spawner = HimaliaDockerSpawner(user=FakeUser(), hub=Hub(), network_name="host",
                                   extra_host_config={"init": True})
    choose(spawner, {"profile": "cpu"})
    spawner.prepare_network()
    asyncio.run(spawner.create_object())
    kwargs = docker_calls["create_container"]
    host_config = kwargs["host_config"]
    assert host_config["NetworkMode"] == "host"
    assert "PortBindings" not in host_config
    assert host_config["Init"] is True
    assert kwargs["environment"]["JUPYTERHUB_SERVICE_URL"].startswith(f"http://127.0.0.1:{spawner.port}/")
    assert asyncio.run(spawner.get_ip_and_port()) == ("127.0.0.1", spawner.port)
    other = HimaliaDockerSpawner(user=FakeUser(), hub=Hub(), network_name="host")
    other.prepare_network()
    assert other.port != spawner.port


def test_docker_profile_merges_with_configured_settings(docker_calls):
    create_container(
        {"profile": "dask"},
        environment={"TEAM": "ml"},
        volumes={"/data/shared": "/home/jovyan/shared"},
        extra_host_config={"shm_size": "1G"},
    )
    kwargs = docker_calls["create_container"]
    assert kwargs["environment"]["TEAM"] == "ml"
    assert kwargs["environment"]["HIMALIA_PROFILE"] == "dask"
    assert "/data/shared:/home/jovyan/shared:rw" in kwargs["host_config"]["Binds"]
    assert docker_calls["host_config_kwargs"]["shm_size"] == "1G"


def test_docker_rejects_unknown_profile():
    spawner = HimaliaDockerSpawner(user=FakeUser(), hub=Hub())
    with pytest.raises(web.HTTPError) as info:
        choose(spawner, {"profile": "tpu"})
    assert info.value.status_code == 400
    assert "Valid profiles: cpu, gpu, dask" in info.value.get_message()


@pytest.fixture
def kube_spawner(monkeypatch):
    """Build HimaliaKubeSpawner objects without a kube config or API client."""
    monkeypatch.setattr(kubespawner.spawner, "load_config", lambda **kwargs: None)
    monkeypatch.setattr(kubespawner.spawner, "shared_client", lambda *args, **kwargs: None)

    def make(**config):
        return HimaliaKubeSpawner(user=FakeUser(), hub=Hub(), **config)

    return make


def pod_spec(spawner):
    """The pod spec as the JSON KubeSpawner would send to the API server."""

    async def build():
        pod = await spawner.get_pod_manifest()
        async with ApiClient() as api:
            return api.sanitize_for_serialization(pod)["spec"]

    return asyncio.run(build())


def test_kube_gpu_pod(kube_spawner):
    spawner = kube_spawner()
    choose(spawner, {"profile": "gpu"})
    spec = pod_spec(spawner)
    container = spec["containers"][0]
    assert container["image"] == "himalia/gpu:latest"
    resources = container["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1"
    assert resources["requests"]["nvidia.com/gpu"] == "1"
    assert resources["limits"]["cpu"] == resources["requests"]["cpu"] == 4.0
    assert resources["limits"]["memory"] == resources["requests"]["memory"] == 16 * 1024**3
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_kube_cpu_pod(kube_spawner):
    spawner = kube_spawner()
    choose(spawner, {"profile": "cpu"})
    spec = pod_spec(spawner)
    container = spec["containers"][0]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert container["resources"]["limits"]["cpu"] == 2.0
    assert "nodeSelector" not in spec
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void"


def test_kube_pod_mounts_the_users_pvc(kube_spawner):
    spawner = kube_spawner()
    choose(spawner, {})
    spec = pod_spec(spawner)
    assert spec["volumes"] == [
        {"name": "himalia-home", "persistentVolumeClaim": {"claimName": "claim-alice"}}
    ]
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": "himalia-home", "mountPath": "/home/jovyan/work"}
    ]
    assert spawner.storage_pvc_ensure is True
    pvc = spawner.get_pvc_manifest()
    assert pvc.metadata.name == "claim-alice"
    assert pvc.spec.resources.requests == {"storage": "10Gi"}


def test_kube_load_user_options_applies_the_profile(kube_spawner):
    spawner = kube_spawner()
    spawner.user_options = {"profile": "gpu"}
    asyncio.run(spawner.load_user_options())
    assert spawner.himalia_profile.name == "gpu"
    assert spawner.extra_resource_limits == {"nvidia.com/gpu": "1"}


def test_kube_rejects_forged_options(kube_spawner):
    spawner = kube_spawner()
    with pytest.raises(web.HTTPError) as info:
        choose(spawner, {"profile": "cpu", "image": "evil/image"})
    assert info.value.status_code == 400
    assert "Valid profiles: cpu, gpu, dask" in info.value.get_message()


def test_options_form_comes_from_profiles(kube_spawner):
    assert 'name="profile"' in kube_spawner().options_form
    assert 'name="profile"' in HimaliaDockerSpawner(user=FakeUser(), hub=Hub()).options_form


@pytest.mark.parametrize(
    "missing, name, extra",
    [
        ("dockerspawner", "HimaliaDockerSpawner", "himalia[docker]"),
        ("kubespawner", "HimaliaKubeSpawner", "himalia[k8s]"),
    ],
)
def test_missing_backend_package_names_the_extra(monkeypatch, missing, name, extra):
    monkeypatch.setitem(sys.modules, missing, None)
    monkeypatch.delitem(sys.modules, backends.__name__)
    # importing a submodule rebinds it on the parent package; restore that too
    monkeypatch.setattr(sys.modules["himalia.hub"], "backends", backends)
    fresh = importlib.import_module(backends.__name__)
    with pytest.raises(ImportError, match=rf"pip install '{extra}'".replace("[", r"\[")):
        getattr(fresh, name)
    other = ({"HimaliaDockerSpawner", "HimaliaKubeSpawner"} - {name}).pop()
    assert getattr(fresh, other)
    assert fresh.__all__ == [other]


def tracking_environment(tmp_path, backend):
    """The spawner environment himalia's hub configuration gives ``backend`` servers."""
    from himalia.hub.config import HimaliaConfig
    from himalia.hub.hubconfig import Runtime, build_hub_config

    cfg = HimaliaConfig(state_dir=str(tmp_path), backend=backend, ip="0.0.0.0", port=8000)
    runtime = Runtime(hub_port=1111, api_port=2222, proxy_api_port=3333, tracking_port=4444)
    return build_hub_config(cfg, runtime, as_root=False).Spawner.environment


def test_docker_servers_track_with_their_own_token_and_experiment(docker_calls, tmp_path):
    create_container({"profile": "cpu"}, environment=tracking_environment(tmp_path, "docker"),
                     api_token="server-token")
    env = docker_calls["create_container"]["environment"]
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:8000/services/mlflow"  # host network
    assert env["MLFLOW_TRACKING_TOKEN"] == "server-token"
    assert env["MLFLOW_EXPERIMENT_NAME"] == "users/alice"


def test_kube_servers_track_with_their_own_token_and_experiment(kube_spawner, tmp_path):
    spawner = kube_spawner(environment=tracking_environment(tmp_path, "kubernetes"), api_token="server-token")
    choose(spawner, {"profile": "cpu"})
    env = {e["name"]: e.get("value") for e in pod_spec(spawner)["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:8000/services/mlflow"
    assert env["MLFLOW_TRACKING_TOKEN"] == "server-token"
    assert env["MLFLOW_EXPERIMENT_NAME"] == "users/alice"


def test_docker_engine_down_is_a_spawn_error_that_says_so(monkeypatch, tmp_path):
    from jupyterhub.spawner import SpawnException

    socket = f"unix://{tmp_path}/no-engine.sock"
    monkeypatch.setenv("DOCKER_HOST", socket)
    monkeypatch.setattr(HimaliaDockerSpawner, "_client", None)
    spawner = HimaliaDockerSpawner(user=FakeUser(), hub=Hub(), network_name="host")
    choose(spawner, {"profile": "cpu"})
    with pytest.raises(SpawnException) as info:
        asyncio.run(spawner.start())
    assert info.value.status_code == 503
    assert info.value.reason == "docker-engine"
    assert socket in info.value.message and "start dockerd" in info.value.message


@pytest.mark.parametrize("pull_error", [
    # What a Docker engine with no registry in reach answers, and what a registry answers.
    docker.errors.APIError("500 Server Error: Internal Server Error (\"Get https://registry-1.docker.io/v2/: "
                           "dial tcp: lookup registry-1.docker.io: no such host\")"),
    docker.errors.NotFound("404 Client Error: pull access denied for himalia/no-such-image"),
])
def test_a_missing_image_is_a_spawn_error_that_says_what_to_do(docker_calls, monkeypatch, pull_error):
    from jupyterhub.spawner import SpawnException

    client = HimaliaDockerSpawner._client

    def inspect_image(image):
        raise docker.errors.ImageNotFound(f"No such image: {image}")

    def pull(repo, tag=None, **kwargs):
        raise pull_error

    monkeypatch.setattr(client, "inspect_image", inspect_image)
    monkeypatch.setattr(client, "pull", pull)
    spawner = HimaliaDockerSpawner(user=FakeUser(), hub=Hub(), network_name="host")
    choose(spawner, {"profile": "cpu"})
    with pytest.raises(SpawnException) as info:
        asyncio.run(spawner.start())
    assert info.value.reason == "image"
    assert repr(spawner.image) in info.value.message and "images/build.sh" in info.value.message
    assert "create_container" not in docker_calls
