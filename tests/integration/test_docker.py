"""The Docker backend for real: ``himalia up`` with DockerSpawner on a Docker engine of the
tests' own (``DockerEngine``: dockerd in a temporary data root, host network only), spawning
users' servers from the CPU user image that ``images/build.sh --local-base`` builds here.

The engine must start: without one these tests fail (tests/run.sh installs docker.io).
Everything started is stopped: containers, the volumes the tests made, the daemon.
GPU device requests need an NVIDIA runtime and are checked as data in tests/unit.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
import requests

from himalia_testing import DockerEngine, Kernel, KernelDied, Platform, alive, wait_for

# The first build of the images (no cache yet) takes about ten minutes and counts towards the
# first test's time; later builds load them from the cache in seconds.
pytestmark = pytest.mark.timeout(1800)

CPU_LIMIT = 1.0
MEMORY = "768M"
SMALL_MEMORY = "320M"


@pytest.fixture(scope="module")
def engine():
    engine = DockerEngine().start()
    try:
        engine.images = engine.build_images("base", "hub")
        yield engine
    finally:
        engine.stop()


def profiles(image: str) -> list[dict]:
    return [
        {"name": "cpu", "display_name": "CPU", "image": image, "cpu": CPU_LIMIT, "memory": MEMORY,
         "env": {"HIMALIA_PROFILE": "cpu", "TEAM": "ml"}},
        {"name": "small", "display_name": "Small", "image": image, "cpu": CPU_LIMIT,
         "memory": SMALL_MEMORY},
        {"name": "missing", "display_name": "Missing image", "image": "himalia/no-such-image:0"},
    ]


@pytest.fixture(scope="module")
def platform(engine, proxy_bin):
    base = next(tag for tag in engine.images if tag.startswith("himalia/base:"))
    platform = Platform(None, proxy_bin)
    platform.write_config(backend="docker", profiles=profiles(base), cull_idle_timeout=600)
    platform.start(env={"DOCKER_HOST": engine.host})
    try:
        yield platform
    finally:
        platform.close()
        for volume in engine.docker("volume", "ls", "-q", "--filter", "name=himalia-user-",
                                    check=False).stdout.split():
            engine.docker("volume", "rm", "-f", volume, check=False)


def container(engine: DockerEngine, name: str) -> dict | None:
    """``docker inspect`` of the user's server container, None when there is none."""
    ids = engine.docker("ps", "-aq", "--filter", f"name=^himalia-{name}$").stdout.split()
    return json.loads(engine.docker("inspect", ids[0]).stdout)[0] if ids else None


def person(platform: Platform, unique_name, prefix: str):
    name = unique_name(prefix)
    session = platform.login(name, platform.create_user(name))
    return name, session


def test_two_people_get_containers_with_the_platform_in_their_kernels(platform, engine, unique_name):
    (alice, alice_session), (bob, bob_session) = person(platform, unique_name, "da"), person(platform, unique_name, "db")
    urls = {alice: platform.spawn(alice_session, {"profile": "cpu"}, timeout=180),
            bob: platform.spawn(bob_session, {"profile": "cpu"}, timeout=180)}
    for name, session in ((alice, alice_session), (bob, bob_session)):
        info = container(engine, name)
        assert info is not None and info["State"]["Running"]
        assert info["HostConfig"]["NetworkMode"] == "host"
        assert info["Config"]["User"] in ("1000", "jovyan")  # never root
        token = platform.user_token(session)["token"]
        with Kernel(urls[name], token) as kernel:
            out = kernel.execute("%himalia")
            assert out["error"] is None, out
            assert name in out["stdout"] or any(name in json.dumps(d) for d in out["data"]), out
            env = kernel.execute("import os; print(os.environ['TEAM'], os.getuid(), os.environ['HOME'])")
            assert env["stdout"].split() == ["ml", "1000", "/home/jovyan"]
            written = kernel.execute(f"open('/home/jovyan/work/{name}.txt', 'w').write('{name}')\n"
                                     "import os; print(sorted(os.listdir('/home/jovyan/work')))")
            # Each person's volume holds their own files only.
            assert written["stdout"].strip() == repr([f"{name}.txt"]), written
    alice_volume = engine.docker("volume", "inspect", f"himalia-user-{alice}").stdout
    assert f"himalia-user-{alice}" in alice_volume


def test_limits_from_the_profile_are_enforced_by_the_engine(platform, engine, unique_name):
    name, session = person(platform, unique_name, "dl")
    url = platform.spawn(session, {"profile": "cpu"}, timeout=180)
    host_config = container(engine, name)["HostConfig"]
    assert host_config["Memory"] == 768 * 1024**2
    assert host_config["MemorySwap"] == host_config["Memory"]
    assert host_config["CpuQuota"] == int(CPU_LIMIT * host_config["CpuPeriod"])
    with Kernel(url, platform.user_token(session)["token"]) as kernel:
        # What the container's own cgroup says (v1 or v2).
        seen = kernel.execute(
            "from pathlib import Path\n"
            "v1 = Path('/sys/fs/cgroup/memory/memory.limit_in_bytes')\n"
            "mem = v1.read_text() if v1.exists() else Path('/sys/fs/cgroup/memory.max').read_text()\n"
            "q = Path('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')\n"
            "cpu = q.read_text() if q.exists() else Path('/sys/fs/cgroup/cpu.max').read_text().split()[0]\n"
            "print(int(mem), int(cpu))"
        )
        memory, quota = map(int, seen["stdout"].split())
        assert memory == 768 * 1024**2
        assert quota == int(CPU_LIMIT * host_config["CpuPeriod"])


def test_a_kernel_past_its_memory_limit_is_killed_and_the_person_is_told_why(platform, engine, unique_name):
    name, session = person(platform, unique_name, "dm")
    url = platform.spawn(session, {"profile": "small"}, timeout=180)
    token = platform.user_token(session)["token"]
    kernel = Kernel(url, token)
    try:
        _run_until_dead(kernel)
        headers = {"Authorization": f"token {token}"}
        exits = wait_for(lambda: requests.get(f"{url}himalia/kernel-exits", headers=headers, timeout=30).json()["exits"],
                         60, what="the kernel's exit to be recorded")
        assert exits[-1]["kernel_id"] == kernel.id
        assert exits[-1]["reason"] == "out-of-memory"
        assert "320" in exits[-1]["message"] and "memory limit" in exits[-1]["message"]
        # The server itself survived: the person can go on.
        assert container(engine, name)["State"]["Running"]
    finally:
        kernel.close()


def _run_until_dead(kernel: Kernel) -> None:
    """Allocate past the limit: the kernel dies before it can answer, and the server says so."""
    with pytest.raises(KernelDied):
        kernel.execute("blocks = []\nwhile True:\n    blocks.append(bytearray(64 * 1024**2))", timeout=120)


def test_the_volume_outlives_the_container(platform, engine, unique_name):
    name, session = person(platform, unique_name, "dv")
    url = platform.spawn(session, {"profile": "cpu"}, timeout=180)
    with Kernel(url, platform.user_token(session)["token"]) as kernel:
        kernel.execute("open('/home/jovyan/work/kept.txt', 'w').write('still here')")
    platform.stop_server(name)
    assert container(engine, name) is None  # stopped containers are removed; volumes stay
    url = platform.spawn(session, {"profile": "cpu"}, timeout=180)
    with Kernel(url, platform.user_token(session)["token"]) as kernel:
        assert kernel.execute("print(open('/home/jovyan/work/kept.txt').read())")["stdout"].strip() == "still here"


def test_containers_keep_running_through_a_hub_restart(platform, engine, unique_name):
    name, session = person(platform, unique_name, "dr")
    url = platform.spawn(session, {"profile": "cpu"}, timeout=180)
    before = container(engine, name)["Id"]
    token = platform.user_token(session)["token"]
    with Kernel(url, token) as kernel:
        kernel.execute("x = 41")
        # The hub dies; himalia up starts a new one, which finds the container again.
        old_hub = platform.runtime()["pids"]["hub"]
        os.kill(old_hub, signal.SIGTERM)
        wait_for(lambda: platform.runtime()["pids"]["hub"] not in (old_hub, None), 60,
                 what="himalia up to start a new hub")
        wait_for(lambda: requests.get(f"{platform.url}/hub/health", timeout=5).ok, 90, what="the new hub")
        assert not alive(old_hub)
        assert container(engine, name)["Id"] == before and container(engine, name)["State"]["Running"]
        assert platform.api("GET", f"/users/{name}").json()["servers"][""]["ready"] is True
        # Through the new hub's proxy routes, the same kernel still holds its state.
        assert requests.get(f"{url}api/status", headers={"Authorization": f"token {token}"}, timeout=30).ok
        assert kernel.execute("print(x + 1)")["stdout"].strip() == "42"


def test_a_missing_image_fails_the_spawn_with_what_to_do(platform, unique_name):
    name, session = person(platform, unique_name, "di")
    r = session.post(f"{platform.url}/hub/api/users/{name}/server", json={"profile": "missing"}, timeout=120)
    if r.status_code in (201, 202):
        # The spawn runs on; its progress reports the failure.
        events = session.get(f"{platform.url}/hub/api/users/{name}/server/progress", timeout=120, stream=True)
        text = "".join(line for line in events.iter_lines(decode_unicode=True) if line)
        message = text
    else:
        message = r.text
    assert "himalia/no-such-image:0" in message
    assert "images/build.sh" in message


def test_the_culler_stops_an_idle_container(engine, proxy_bin, unique_name):
    base = next(tag for tag in engine.images if tag.startswith("himalia/base:"))
    platform = Platform(None, proxy_bin)
    platform.write_config("c.HimaliaConfig.cull_idle_timeout = 20", backend="docker", profiles=profiles(base))
    platform.start(env={"DOCKER_HOST": engine.host})
    try:
        name, session = person(platform, unique_name, "dc")
        platform.spawn(session, {"profile": "cpu"}, timeout=180)
        assert container(engine, name)["State"]["Running"]
        wait_for(lambda: container(engine, name) is None, 180, interval=2, what="the culler to stop the container")
        assert not platform.api("GET", f"/users/{name}").json()["servers"]
    finally:
        platform.close()
        engine.docker("volume", "rm", "-f", f"himalia-user-{name}", check=False)


def test_the_hub_image_runs_himalia_and_the_proxy(engine):
    hub = next(tag for tag in engine.images if tag.startswith("himalia/hub:"))
    out = engine.docker("run", "--rm", "--network", "host", hub, "sh", "-c",
                        "himalia --version && configurable-http-proxy --version").stdout.split()
    assert out[-1] == "5.3.0"


def test_a_job_container_runs_with_the_owners_volume_and_the_profiles_limits(engine, unique_name):
    """The seam jobs and deployments run through: ``himalia.hub.containers.run_task``."""
    import docker

    from himalia.hub.containers import ContainerTask, run_task, volume_name
    from himalia.hub.profiles import Profile

    base = next(tag for tag in engine.images if tag.startswith("himalia/base:"))
    cpu, small = (Profile.from_dict(p) for p in profiles(base)[:2])
    owner = unique_name("dj")
    client = docker.DockerClient(base_url=engine.host)
    try:
        # The owner's files, written as their server would (a new volume takes the ownership of
        # the image's folder it is mounted on).
        work = f"{volume_name(owner)}:/home/jovyan/work"
        engine.docker("run", "--rm", "-v", work, base, "sh", "-c", "echo input > /home/jovyan/work/in.txt")
        script = ("import os\nfrom pathlib import Path\n"
                  "mem = Path('/sys/fs/cgroup/memory/memory.limit_in_bytes')\n"
                  "mem = mem if mem.exists() else Path('/sys/fs/cgroup/memory.max')\n"
                  "print(os.getuid(), os.getgid(), open('in.txt').read().strip(), os.environ['TEAM'],"
                  " os.environ['RUN'], int(mem.read_text()))\n"
                  "open('out.txt', 'w').write('done')")
        result = run_task(ContainerTask(cpu, owner, ["python3", "-c", script], kind="job",
                                        environment={"RUN": "r1"}), timeout=120, client=client)
        assert result.ok, result.logs
        assert result.logs.split() == ["1000", "100", "input", "ml", "r1", str(768 * 1024**2)]
        assert engine.docker("run", "--rm", "-v", work, base, "cat", "/home/jovyan/work/out.txt").stdout == "done"
        hog = run_task(ContainerTask(small, owner, ["python3", "-c", "b = []\nwhile True: b.append(bytearray(2**26))"],
                                     kind="job"), timeout=120, client=client)
        assert hog.oom_killed and hog.exit_code == 137 and not hog.ok
        slow = run_task(ContainerTask(cpu, owner, ["sleep", "600"], kind="job"), timeout=3, client=client)
        assert slow.timed_out and not slow.ok
        # Nothing is left behind but the owner's volume.
        assert engine.docker("ps", "-aq", "--filter", f"label=dev.himalia.owner={owner}").stdout.split() == []
    finally:
        client.close()
        engine.docker("volume", "rm", "-f", volume_name(owner), check=False)
