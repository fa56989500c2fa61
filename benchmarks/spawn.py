"""Spawn-to-ready and hub API latency: himalia vs stock JupyterHub, side by side in one run.

Both hubs use the same spawner (HimaliaLocalSpawner, one Unix account per user when root)
and the same configurable-http-proxy; only himalia's own configuration differs (native auth,
RBAC roles, platform API and idle-culler services). For each hub:

* 20 users spawned at once, then 10 more one after another (spawn request -> server ready);
* ``GET /hub/api/users/<name>`` from 20 concurrent clients (p50 / p99), with the user's own
  token as a kernel or script would send it, once both hubs run: rounds alternate between
  the hubs, so load elsewhere on the machine falls on both alike. On a small machine one
  round's p99 swings by a third either way; the ratio is the median over rounds of each
  round's himalia/stock p99 (the pooled p99 of all rounds is printed beside it).

Then the Docker backend (as root, with ``dockerd`` installed): a Docker engine of the
benchmark's own (as the tests start it, host network only) and the CPU user image from
``images/build.sh --local-base``; ``--docker-users`` (10) users spawned at once in containers
by himalia (``--backend docker``) and by stock JupyterHub with the stock DockerSpawner on the
same image (on the host network, with the ``get_ip_and_port`` override DockerSpawner's
documentation gives for it).

Usage: ``python benchmarks/spawn.py [--concurrent 20] [--sequential 10] [--requests 1000]
[--rounds 8] [--docker-users 10 | --no-docker | --docker-only]``. It prints ``RESULT spawn_ratio
<himalia/stock median spawn time> (goal <= 1.1)``, ``RESULT hub_api_p99_ratio <median of
per-round himalia/stock p99> (goal <= 1.0)`` and ends with ``RESULT docker_spawn_ratio
<himalia/stock median container spawn time> (goal <= 1.1)`` (``--docker-only``: that line only).
"""

from __future__ import annotations

import argparse
import os
import pwd
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from tqdm import tqdm

from himalia.hub.cli import free_port
from himalia.hub.proxy import ensure_proxy

READY_TIMEOUT = 180.0


def wait_http(url: str, timeout: float = 120.0, token: str = "") -> None:
    """Until ``url`` answers 200 (a 404 from the proxy means the hub's route is not set yet)."""
    headers = {"Authorization": f"token {token}"} if token else {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not up after {timeout}s")


class Hub:
    """A running hub with an admin token, started in its own process group."""

    name = ""

    def __init__(self, workdir: Path, proxy_exe: str, prefix: str):
        self.workdir = workdir
        self.proxy_exe = proxy_exe
        self.prefix = prefix
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.token = ""

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(120)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.url}/hub/api", timeout=60,
                            headers={"Authorization": f"token {self.token}"})


class HimaliaHub(Hub):
    name = "himalia"
    extra_config = ""
    env: dict[str, str] = {}

    def start(self) -> None:
        state = self.workdir / self.name
        state.mkdir()
        (state / "himalia_config.py").write_text(
            f"c.HimaliaConfig.system_user_prefix = {self.prefix!r}\n"
            f"c.HimaliaConfig.service_user = {self.prefix + 'svc'!r}\n" + self.extra_config
        )
        env = dict(os.environ, PATH=f"{Path(self.proxy_exe).parent}{os.pathsep}{os.environ['PATH']}",
                   **self.env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "himalia.hub", "up", "--state-dir", str(state), "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
        )
        token_file = state / "admin-token"
        deadline = time.monotonic() + 120
        while not token_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.token = token_file.read_text().strip()
        wait_http(f"{self.url}/hub/health")
        # The API documents itself to logged-in callers only.
        wait_http(f"{self.url}/services/himalia/openapi.json", token=self.token)


class StockHub(Hub):
    name = "stock"
    env: dict[str, str] = {}

    def stop(self) -> None:
        super().stop()
        # JupyterHub runs the proxy in a session of its own and records its pid here.
        pidfile = self.workdir / self.name / "jupyterhub-proxy.pid"
        if pidfile.exists():
            try:
                os.killpg(int(pidfile.read_text()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass

    def spawner_config(self, home: Path) -> str:
        return (
            "c.JupyterHub.spawner_class = 'himalia.hub.spawners.HimaliaLocalSpawner'\n"
            f"c.HimaliaLocalSpawner.system_users = {os.geteuid() == 0}\n"
            f"c.HimaliaLocalSpawner.system_user_prefix = {self.prefix!r}\n"
            f"c.HimaliaLocalSpawner.shared_home_root = '{home}/users'\n"
            f"c.HimaliaLocalSpawner.account_registry = '{home}/accounts.json'\n"
            "c.Spawner.cmd = [str(Path(sys.executable).parent / 'jupyterhub-singleuser')]\n"
        )

    def start(self) -> None:
        home = self.workdir / self.name
        home.mkdir()
        self.token = secrets.token_hex(32)
        config = home / "jupyterhub_config.py"
        config.write_text(
            "import sys\nfrom pathlib import Path\n"
            f"c.JupyterHub.bind_url = {self.url!r}\n"
            f"c.JupyterHub.hub_bind_url = 'http://127.0.0.1:{free_port()}'\n"
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{free_port()}'\n"
            f"c.JupyterHub.db_url = 'sqlite:///{home}/jupyterhub.sqlite'\n"
            f"c.JupyterHub.cookie_secret_file = '{home}/cookie_secret'\n"
            f"c.ConfigurableHTTPProxy.command = [{self.proxy_exe!r}]\n"
            + self.spawner_config(home) +
            "c.Spawner.start_timeout = 60\nc.Spawner.http_timeout = 60\n"
            "c.JupyterHub.authenticator_class = 'null'\n"
            "c.Authenticator.allow_all = True\n"
            f"c.JupyterHub.services = [{{'name': 'bench', 'api_token': {self.token!r}}}]\n"
            "c.JupyterHub.load_roles = [{'name': 'admin', 'services': ['bench']}]\n"
        )
        with open(home / "hub.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(config)], cwd=home,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **self.env},
            )
        wait_http(f"{self.url}/hub/health")


class StockDockerHub(StockHub):
    """Stock JupyterHub with the stock DockerSpawner on the host network."""

    name = "stock-docker"

    def __init__(self, workdir: Path, proxy_exe: str, prefix: str, image: str, docker_host: str):
        super().__init__(workdir, proxy_exe, prefix)
        self.image = image
        self.env = {"DOCKER_HOST": docker_host}

    def spawner_config(self, home: Path) -> str:
        # On the host network every container needs its own port, nothing may be published
        # (the engine refuses port bindings there: use_internal_ip), and DockerSpawner's docs
        # say to override get_ip_and_port; this is the smallest config that does all three.
        return (
            "from dockerspawner import DockerSpawner\n"
            "from jupyterhub.utils import random_port\n"
            "class HostNetworkDockerSpawner(DockerSpawner):\n"
            "    async def start(self):\n"
            "        self.port = random_port()\n"
            "        return await super().start()\n"
            "    async def get_ip_and_port(self):\n"
            "        return self.host_ip, self.port\n"
            "c.JupyterHub.spawner_class = HostNetworkDockerSpawner\n"
            f"c.DockerSpawner.image = {self.image!r}\n"
            "c.DockerSpawner.network_name = 'host'\n"
            "c.DockerSpawner.use_internal_ip = True\n"
            "c.DockerSpawner.remove = True\n"
            "c.DockerSpawner.prefix = 'stock'\n"
            "c.Spawner.start_timeout = 120\nc.Spawner.http_timeout = 120\n"
        )


class HimaliaDockerHub(HimaliaHub):
    """``himalia up --backend docker`` with one profile on the same image."""

    name = "himalia-docker"

    def __init__(self, workdir: Path, proxy_exe: str, prefix: str, image: str, docker_host: str):
        super().__init__(workdir, proxy_exe, prefix)
        self.env = {"DOCKER_HOST": docker_host}
        self.extra_config = (
            "c.HimaliaConfig.backend = 'docker'\n"
            f"c.HimaliaConfig.profiles = [{{'name': 'cpu', 'display_name': 'CPU', 'image': {image!r}}}]\n"
            "c.Spawner.start_timeout = 120\nc.Spawner.http_timeout = 120\n"
        )


def measure_docker(args, workdir: Path, proxy_exe: str) -> dict[str, list[float | None]]:
    """Container spawn-to-ready of ``args.docker_users`` users at once, stock then himalia."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from himalia_testing import DockerEngine

    engine = DockerEngine().start()
    results: dict[str, list[float | None]] = {}
    try:
        image = next(t for t in engine.build_images("base") if t.startswith("himalia/base:"))
        engine.docker("run", "--rm", "--network", "host", image, "true")  # image layers read once
        names = [f"d{i:02d}" for i in range(args.docker_users)]
        with tqdm(total=2 * len(names), desc="container spawns", unit="server") as bar:
            for hub_class in (StockDockerHub, HimaliaDockerHub):
                hub = hub_class(workdir, proxy_exe, f"bd{secrets.token_hex(2)}-", image, engine.host)
                bar.set_postfix_str(hub.name)
                try:
                    hub.start()
                    results[hub.name] = run_spawns(hub, names, True, bar)
                    stop_all(hub, names)
                finally:
                    hub.stop()
                    remove_accounts(hub.prefix)
    finally:
        engine.stop()
    return results


def spawn_one(hub: Hub, name: str) -> float | None:
    """Seconds from the spawn request to the server answering through the proxy; None on failure."""
    with hub.client() as client:
        start = time.perf_counter()
        r = client.post(f"/users/{name}/server", json={})
        if r.status_code not in (201, 202):
            return None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            server = (client.get(f"/users/{name}").json().get("servers") or {}).get("", {})
            if server.get("ready"):
                return time.perf_counter() - start
            if not server.get("pending") and not server.get("ready"):
                return None
            time.sleep(0.05)
    return None


def run_spawns(hub: Hub, names: list[str], concurrent: bool, bar: tqdm) -> list[float | None]:
    with hub.client() as client:
        r = client.post("/users", json={"usernames": names})
        if r.status_code != 201:
            raise RuntimeError(f"{hub.name}: creating users failed: {r.status_code} {r.text}")
    results: list[float | None] = []
    if concurrent:
        with ThreadPoolExecutor(len(names)) as pool:
            for value in pool.map(lambda n: spawn_one(hub, n), names):
                results.append(value)
                bar.update(1)
    else:
        for name in names:
            results.append(spawn_one(hub, name))
            bar.update(1)
    return results


def stop_all(hub: Hub, names: list[str]) -> None:
    with hub.client() as client:
        for name in names:
            client.delete(f"/users/{name}/server")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if not client.get("/users", params={"state": "active"}).json():
                return
            time.sleep(0.2)


def user_token(hub: Hub, name: str) -> str:
    """A token of ``name``'s own (generated by the hub, as a kernel's or a script's is)."""
    with hub.client() as client:
        r = client.post(f"/users/{name}/tokens", json={"note": "benchmark"})
        r.raise_for_status()
        return r.json()["token"]


def api_latency(hub: Hub, name: str, token: str, total: int, clients: int = 20) -> list[float]:
    per_client = total // clients

    def worker(_: int) -> list[float]:
        times = []
        with httpx.Client(base_url=f"{hub.url}/hub/api", timeout=60,
                          headers={"Authorization": f"token {token}"}) as client:
            for _ in range(per_client):
                start = time.perf_counter()
                client.get(f"/users/{name}").raise_for_status()
                times.append(time.perf_counter() - start)
        return times

    with ThreadPoolExecutor(clients) as pool:
        return [t for batch in pool.map(worker, range(clients)) for t in batch]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def remove_accounts(prefix: str) -> None:
    for account in pwd.getpwall():
        if account.pw_name.startswith(prefix):
            subprocess.run(["userdel", "--remove", "--force", account.pw_name], capture_output=True)


def measure_spawns(hub: Hub, args, bar: tqdm) -> dict:
    burst = [f"c{i:02d}" for i in range(args.concurrent)]
    serial = [f"s{i:02d}" for i in range(args.sequential)]
    concurrent = run_spawns(hub, burst, True, bar)
    stop_all(hub, burst)
    sequential = run_spawns(hub, serial, False, bar)
    stop_all(hub, serial)
    return {"concurrent": concurrent, "sequential": sequential, "latency": []}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument("--sequential", type=int, default=10)
    parser.add_argument("--requests", type=int, default=1000, help="requests per hub per round")
    parser.add_argument("--rounds", type=int, default=8, help="alternating latency rounds per hub")
    parser.add_argument("--docker-users", type=int, default=10, help="users spawned at once in containers")
    parser.add_argument("--no-docker", action="store_true", help="leave out the Docker backend")
    parser.add_argument("--docker-only", action="store_true", help="only the Docker backend")
    args = parser.parse_args()

    results = {}
    hubs: list[Hub] = []
    with tempfile.TemporaryDirectory(prefix="himalia-bench-") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        proxy_exe = ensure_proxy(workdir / "proxy")
        total = 2 * (args.concurrent + args.sequential)
        if args.docker_only:
            return report_docker(measure_docker(args, workdir, proxy_exe))
        try:
            with tqdm(total=total, desc="spawns", unit="server") as bar:
                for hub_class in (StockHub, HimaliaHub):
                    hub = hub_class(workdir, proxy_exe, f"bn{secrets.token_hex(2)}-")
                    hubs.append(hub)
                    bar.set_postfix_str(hub.name)
                    hub.start()
                    results[hub.name] = measure_spawns(hub, args, bar)
            tokens = {hub.name: user_token(hub, "c00") for hub in hubs}
            for hub in hubs:  # warm up
                api_latency(hub, "c00", tokens[hub.name], 100)
            round_ratios = []
            for i in tqdm(range(args.rounds), desc="api rounds", unit="round"):
                round_p99 = {}
                for hub in hubs if i % 2 == 0 else hubs[::-1]:  # neither always goes first
                    latency = api_latency(hub, "c00", tokens[hub.name], args.requests)
                    results[hub.name]["latency"] += latency
                    round_p99[hub.name] = percentile(latency, 0.99)
                round_ratios.append(round_p99["himalia"] / round_p99["stock"])
        finally:
            for hub in hubs:
                hub.stop()
                remove_accounts(hub.prefix)
        docker = {} if args.no_docker else measure_docker(args, workdir, proxy_exe)

    print()
    print(f"{'':10}{'burst p50':>11}{'burst max':>11}{'serial p50':>12}{'api p50':>10}{'api p99':>10}{'failures':>10}")
    medians, p99 = {}, {}
    for name, r in results.items():
        ok_c = [t for t in r["concurrent"] if t is not None]
        ok_s = [t for t in r["sequential"] if t is not None]
        failures = len(r["concurrent"]) + len(r["sequential"]) - len(ok_c) - len(ok_s)
        medians[name] = statistics.median(ok_c + ok_s) if ok_c + ok_s else float("inf")
        p99[name] = percentile(r["latency"], 0.99)
        print(f"{name:10}{statistics.median(ok_c) if ok_c else float('nan'):>10.2f}s"
              f"{max(ok_c) if ok_c else float('nan'):>10.2f}s"
              f"{statistics.median(ok_s) if ok_s else float('nan'):>11.2f}s"
              f"{percentile(r['latency'], 0.5) * 1000:>8.1f}ms{p99[name] * 1000:>8.1f}ms"
              f"{failures:>10}")
        results[name]["failures"] = failures
    print(f"himalia failures: {results['himalia']['failures']} (goal 0)")
    print(f"RESULT spawn_ratio {medians['himalia'] / medians['stock']:.3f} (goal <= 1.1)")
    print(f"api p99 ratio per round: {' '.join(f'{r:.2f}' for r in round_ratios)}; "
          f"pooled {p99['himalia'] / p99['stock']:.3f}")
    print(f"RESULT hub_api_p99_ratio {statistics.median(round_ratios):.3f} (goal <= 1.0)")
    return report_docker(docker) if docker else 0


def report_docker(docker: dict[str, list[float | None]]) -> int:
    print()
    print(f"{'containers':16}{'p50':>9}{'max':>9}{'failures':>10}")
    docker_medians = {}
    for name, times in docker.items():
        ok = [t for t in times if t is not None]
        docker_medians[name] = statistics.median(ok) if ok else float("inf")
        print(f"{name:16}{docker_medians[name]:>8.2f}s{max(ok) if ok else float('nan'):>8.2f}s"
              f"{len(times) - len(ok):>10}")
    failures = sum(t is None for t in docker["himalia-docker"])
    print(f"himalia-docker failures: {failures} (goal 0)")
    ratio = docker_medians["himalia-docker"] / docker_medians["stock-docker"]
    print(f"RESULT docker_spawn_ratio {ratio:.3f} (goal <= 1.1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
