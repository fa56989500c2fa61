"""`himalia up` as an admin runs it: restarts, second starts, status, and a clean stop."""

from __future__ import annotations

import os
import signal

import requests

from himalia_testing import Kernel, Platform, alive, himalia_cli, wait_for


def test_hub_restart_keeps_user_servers_running(sqlite_platform, unique_name):
    platform = sqlite_platform
    name = unique_name("rs")
    session = platform.login(name, platform.create_user(name))
    viewer = unique_name("rv")
    platform.create_user(viewer, role="viewer")
    server = platform.spawn(session)
    token = platform.user_token(session)["token"]
    kernel = Kernel(server, token)
    kernel.execute("x = 41")
    old_hub = platform.runtime()["pids"]["hub"]
    old_api = platform.api("GET", "/services/himalia").json()["pid"]
    old_culler = platform.api("GET", "/services/idle-culler").json()["pid"]
    assert alive(old_api) and alive(old_culler)

    os.kill(old_hub, signal.SIGTERM)
    new_hub = wait_for(lambda: (pid := platform.runtime()["pids"]["hub"]) != old_hub and pid, 60,
                       what="the supervisor to restart the hub")
    wait_for(lambda: requests.get(f"{platform.url}/hub/health", timeout=5).ok, 60, what="hub health")

    assert not alive(old_hub) and alive(new_hub)
    # The old hub's managed services went with it; the new hub runs its own.
    wait_for(lambda: not alive(old_api), 30, what="the old API service to exit")
    new_api = wait_for(lambda: platform.api("GET", "/services/himalia").json().get("pid"), 30,
                       what="the new API service")
    assert new_api != old_api and alive(new_api)
    # The new hub starts the culler after the API answers: wait for it too, so the platform
    # is whole again when this test ends.
    new_culler = wait_for(lambda: platform.api("GET", "/services/idle-culler").json().get("pid"), 60,
                          what="the new idle culler")
    assert new_culler != old_culler and alive(new_culler)
    wait_for(lambda: not alive(old_culler), 30, what="the old idle culler to exit")
    user = platform.api("GET", f"/users/{name}").json()
    assert user["servers"][""]["ready"] is True
    # Roles given at run time survive: the new hub's configuration lists their holders.
    assert platform.role_of(name) == "scientist" and platform.role_of(viewer) == "viewer"
    # The very same kernel still holds its state: the server process survived the hub restart.
    assert kernel.execute("print(x + 1)")["stdout"].strip() == "42"
    r = requests.get(f"{server}api/status", headers={"Authorization": f"token {token}"}, timeout=30)
    assert r.status_code == 200
    kernel.close()
    platform.stop_server(name)


def test_status_reports_each_service(sqlite_platform):
    result = himalia_cli("status", "--state-dir", str(sqlite_platform.state_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()}
    for part in ("himalia", "proxy", "hub", "api", "database", "service:himalia", "service:idle-culler"):
        assert rows.get(part) == "up", result.stdout


def test_second_up_on_the_same_state_reuses_it_and_stop_leaves_nothing(proxy_bin, unique_name):
    platform = Platform(None, proxy_bin)
    try:
        platform.start()
        first_password = platform.admin_password
        assert first_password, "first start prints the one-time admin password"
        token = platform.admin_token
        ports = {k: platform.runtime()[k] for k in ("hub_port", "api_port", "proxy_api_port")}
        name = unique_name("su")
        session = platform.login(name, platform.create_user(name))
        server = platform.spawn(session)
        kernel = Kernel(server, platform.user_token(session)["token"])
        assert kernel.execute("print(6 * 7)")["stdout"].strip() == "42"
        # Everything running now: himalia up, proxy, hub, its services, the server, its kernel.
        tree = platform.processes()
        commands = " ".join(" ".join(p.cmdline()) for p in tree)
        for part in ("configurable-http-proxy", "jupyterhub", "himalia.hub.services.api",
                     "jupyterhub_idle_culler", "himalia.kernels.singleuser", "himalia.kernels -f"):
            assert part in commands, part
        assert platform.stop() == 0
        left = [p for p in tree if p.is_running() and p.status() != "zombie"]
        assert left == [], f"processes left behind: {[(p.pid, p.cmdline()) for p in left]}"

        platform.start()
        assert platform.admin_password == "", "no new bootstrap on a second start"
        assert platform.admin_token == token
        assert (platform.state_dir / "version").read_text().strip()
        # The internal ports of the first run are free again (even with connections in
        # TIME_WAIT), so the second run takes the same ones.
        assert {k: platform.runtime()[k] for k in ports} == ports
        # The admin logs in with the password from the first start; the user still exists.
        platform.login("admin", first_password)
        assert platform.api("GET", f"/users/{name}").json()["servers"] == {}
        result = himalia_cli("up", "--state-dir", str(platform.state_dir), "--port", str(platform.port))
        assert result.returncode == 1
        assert result.stderr.strip().count("\n") == 0
        assert "already running" in result.stderr
        # The terminal it runs in closes (SIGHUP): it stops as with Ctrl-C, leaving nothing.
        tree = platform.processes()
        assert len(tree) > 3
        os.kill(platform.proc.pid, signal.SIGHUP)
        assert platform.proc.wait(90) == 0
        left = [p for p in tree if p.is_running() and p.status() != "zombie"]
        assert left == [], f"processes left behind: {[(p.pid, p.cmdline()) for p in left]}"
    finally:
        platform.close()


def test_cli_errors_are_one_line(tmp_path):
    result = himalia_cli("up", "--state-dir", str(tmp_path / "s"), "--db-url", "mongodb://nowhere")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("himalia: --db-url must be an SQLAlchemy URL")
    assert "Traceback" not in result.stderr
    result = himalia_cli("status", "--state-dir", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert "run 'himalia up" in result.stderr and "Traceback" not in result.stderr
    # On a bridge network containers cannot reach a proxy on loopback (on the default host
    # network they can, so only this configuration is refused).
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "himalia_config.py").write_text('c.HimaliaConfig.docker_network = "bridge"\n')
    result = himalia_cli("up", "--state-dir", str(tmp_path / "d"), "--backend", "docker")
    assert result.returncode == 1 and "--ip 0.0.0.0" in result.stderr
    assert result.stderr.strip().count("\n") == 0
    result = himalia_cli("--help")
    assert result.returncode == 0 and "up" in result.stdout and "status" in result.stdout
