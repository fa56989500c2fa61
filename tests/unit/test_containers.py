"""The container arguments jobs and deployments use on the Docker back end, checked as the exact
docker-py keyword arguments (a real engine runs them in tests/integration/test_docker.py; no GPU
runs here, so the device request is checked as data only)."""

from __future__ import annotations

import pytest

from himalia.hub.containers import ContainerError, ContainerTask, container_kwargs, run_as, volume_name
from himalia.hub.profiles import Profile, docker_overrides


def profile(**extra) -> Profile:
    return Profile.from_dict({"name": "cpu", "display_name": "CPU", "image": "himalia/base:1",
                              "env": {"TEAM": "ml"}, **extra})


def test_a_task_gets_the_same_volume_limits_and_environment_as_the_owners_server():
    p = profile(cpu=1.5, memory="768M")
    kwargs = container_kwargs(ContainerTask(p, "Alice", ["papermill", "in.ipynb", "out.ipynb"], kind="job",
                                            environment={"RUN": "7"}), image_user="1000")
    server = docker_overrides(p, volume_name("Alice").removeprefix("himalia-user-"))
    assert kwargs["volumes"] == {path: {"bind": "/home/jovyan/work", "mode": "rw"} for path in server["volumes"]}
    assert kwargs["volumes"].keys() == {"himalia-user--41lice"}
    assert kwargs["environment"] == {"TEAM": "ml", "NVIDIA_VISIBLE_DEVICES": "void", "CUDA_VISIBLE_DEVICES": "",
                                     "RUN": "7"}
    assert (kwargs["mem_limit"], kwargs["memswap_limit"], kwargs["nano_cpus"]) == ("768M", "768M", 1_500_000_000)
    assert kwargs["network_mode"] == "host" and kwargs["init"] is True and kwargs["detach"] is True
    assert kwargs["labels"] == {"dev.himalia.owner": "Alice", "dev.himalia.kind": "job",
                                "dev.himalia.profile": "cpu"}
    assert kwargs["command"] == ["papermill", "in.ipynb", "out.ipynb"]
    assert "device_requests" not in kwargs


@pytest.mark.parametrize("image_user, expected", [
    (None, "1000:100"), ("", "1000:100"), ("root", "1000:100"), ("0", "1000:100"), ("0:0", "1000:100"),
    ("root:root", "1000:100"), ("1000", "1000"), ("jovyan", "jovyan"), ("1001:100", "1001:100"),
])
def test_a_task_never_runs_as_root(image_user, expected):
    assert run_as(image_user) == expected
    assert container_kwargs(ContainerTask(profile(), "a", ["true"], kind="job"), image_user)["user"] == expected


def test_a_gpu_profile_asks_the_nvidia_runtime_for_its_devices():
    kwargs = container_kwargs(ContainerTask(profile(gpus=2), "a", ["nvidia-smi"], kind="deployment",
                                            network="himalia", name="himalia-deploy-a"))
    (request,) = kwargs["device_requests"]
    assert (request["Driver"], request["Count"], request["Capabilities"]) == ("nvidia", 2, [["gpu"]])
    assert "NVIDIA_VISIBLE_DEVICES" not in kwargs["environment"]
    assert kwargs["network_mode"] == "himalia" and kwargs["name"] == "himalia-deploy-a"


def test_a_profile_without_an_image_cannot_run_a_container():
    with pytest.raises(ContainerError, match="names no image"):
        container_kwargs(ContainerTask(Profile.from_dict({"name": "local", "display_name": "L"}), "a", ["true"],
                                       kind="job"))
