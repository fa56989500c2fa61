"""HimaliaLocalSpawner without starting processes: GPU ids handed out, one server per GPU.

No GPU exists on these machines; the spawner is given device ids through configuration and
we check the exact environment it would start the server with.
"""

from __future__ import annotations

import pytest
from jupyterhub.objects import Hub
from tornado import web

from himalia.hub.spawners import GPUS, HimaliaLocalSpawner, detect_nvidia_gpus


class FakeUser:
    def __init__(self, name: str):
        self.name = name
        self.id = abs(hash(name)) % 10_000
        self.url = f"/user/{name}/"


def spawner(name: str, profile: str, gpus=("0", "1")) -> HimaliaLocalSpawner:
    s = HimaliaLocalSpawner(user=FakeUser(name), hub=Hub(), local_gpu_ids=list(gpus),
                            system_users=False, shared_home_root="/tmp")
    s.user_options = {"profile": profile}
    return s


@pytest.fixture(autouse=True)
def no_gpus_held():
    GPUS._held.clear()
    yield
    GPUS._held.clear()


def test_gpu_servers_get_distinct_devices_and_cpu_servers_none():
    a, b, c = spawner("a", "gpu"), spawner("b", "gpu"), spawner("c", "cpu")
    a.apply_profile()
    b.apply_profile()
    c.apply_profile()
    assert a.environment["CUDA_VISIBLE_DEVICES"] == "0"
    assert b.environment["CUDA_VISIBLE_DEVICES"] == "1"
    assert c.environment["CUDA_VISIBLE_DEVICES"] == ""


def test_no_free_gpu_is_a_clear_503_and_stopping_frees_the_device():
    a, b = spawner("a", "gpu", gpus=["0"]), spawner("b", "gpu", gpus=["0"])
    a.apply_profile()
    with pytest.raises(web.HTTPError) as e:
        b.apply_profile()
    assert e.value.status_code == 503
    assert "0 of 1 are free" in e.value.log_message
    a.clear_state()
    b.apply_profile()
    assert b.environment["CUDA_VISIBLE_DEVICES"] == "0"


def test_held_gpus_survive_a_hub_restart_through_spawner_state():
    a = spawner("a", "gpu")
    a.apply_profile()
    state = a.get_state()
    GPUS._held.clear()  # a new hub process starts with an empty allocator
    restored = spawner("a", "gpu")
    restored.load_state(state)
    b = spawner("b", "gpu")
    b.apply_profile()
    assert restored.gpu_ids == ["0"]
    assert b.environment["CUDA_VISIBLE_DEVICES"] == "1"


def test_gpu_detection_reads_the_driver(tmp_path):
    (tmp_path / "0000:01:00.0").mkdir()
    (tmp_path / "0000:02:00.0").mkdir()
    assert detect_nvidia_gpus(str(tmp_path)) == ["0", "1"]
    assert detect_nvidia_gpus(str(tmp_path / "missing")) == []


def test_as_root_a_server_without_its_own_account_is_refused():
    import asyncio
    import os

    if os.geteuid() != 0:
        pytest.skip("only a hub running as root could start a server as root")
    s = spawner("rootless", "cpu")
    with pytest.raises(web.HTTPError) as e:
        asyncio.run(s.start())
    assert "turn c.HimaliaConfig.system_users back on" in e.value.log_message
    assert "--ServerApp.allow_root=True" not in s.get_args()
