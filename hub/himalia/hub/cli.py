"""The ``himalia`` command: ``up`` runs the platform, ``status`` reports on it."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
from traitlets.config import Config

from . import hubconfig
from ._version import __version__
from .config import StatePaths, write_private
from .hubconfig import Runtime, load_himalia_config, write_private_json
from .proxy import ProxyInstallError, ensure_proxy, proxy_command
from .storage import upgrade as upgrade_api_db
from .supervisor import ManagedProcess, pid_alive

log = logging.getLogger("himalia")

READY_TIMEOUT = 180.0
#: A hub that dies this soon after starting, this many times in a row, is not restarted again.
CRASH_WINDOW, CRASH_LIMIT = 20.0, 3


class CLIError(Exception):
    """A problem the person running the command can fix; printed as one line."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _choose_ports(cfg, paths: StatePaths) -> Runtime:
    """Keep the previous run's internal ports when they are free (servers remember the hub's)."""
    previous = {}
    if paths.runtime.exists():
        try:
            previous = json.loads(paths.runtime.read_text())
        except ValueError:
            previous = {}

    def pick(configured: int, key: str) -> int:
        if configured:
            return configured
        old = previous.get(key)
        return old if old and port_free(old) else free_port()

    return Runtime(
        hub_port=pick(cfg.hub_port, "hub_port"),
        api_port=pick(cfg.api_port, "api_port"),
        proxy_api_port=pick(cfg.proxy_api_port, "proxy_api_port"),
    )


def _check_db_url(url: str, option: str) -> None:
    if url and not url.startswith(("sqlite", "postgresql", "mysql")):
        raise CLIError(f"{option} must be an SQLAlchemy URL such as postgresql://user@host/db, not {url!r}")


class Platform:
    """The processes of one ``himalia up``: proxy and hub (which runs the managed services)."""

    def __init__(self, cfg, paths: StatePaths, runtime: Runtime, proxy_exe: str):
        self.cfg = cfg
        self.paths = paths
        self.runtime = runtime
        proxy_token = secrets.token_hex(32)
        self.proxy = ManagedProcess(
            "proxy",
            proxy_command(proxy_exe, ip=cfg.ip, port=cfg.port, api_port=runtime.proxy_api_port,
                          hub_port=runtime.hub_port),
            paths.logs / "proxy.log",
            env={"CONFIGPROXY_AUTH_TOKEN": proxy_token},
        )
        self.hub = ManagedProcess(
            "hub",
            [sys.executable, "-m", "jupyterhub", "-f", str(Path(hubconfig.__file__).with_name("jupyterhub_config.py"))],
            paths.logs / "hub.log",
            env={
                "CONFIGPROXY_AUTH_TOKEN": proxy_token,
                "HIMALIA_STATE_DIR": str(paths.root),
                "JUPYTER_DATA_DIR": str(paths.jupyter_data),
                "JUPYTER_CONFIG_DIR": str(paths.root / "jupyter" / "config"),
                "JUPYTER_RUNTIME_DIR": str(paths.root / "jupyter" / "runtime"),
                "IPYTHONDIR": str(paths.root / "ipython"),
            },
            cwd=str(paths.root),
        )
        self.stopping = threading.Event()

    @property
    def local_url(self) -> str:
        return self.cfg.local_url()

    def write_runtime(self) -> None:
        data = json.loads(self.paths.runtime.read_text()) if self.paths.runtime.exists() else {}
        data.update(
            self.runtime.public_fields(),
            pids={"himalia": os.getpid(), "proxy": self.proxy.pid, "hub": self.hub.pid},
            url=self.cfg.public_url(), local_url=self.local_url, version=__version__,
        )
        write_private_json(self.paths.runtime, data)

    def start(self) -> None:
        self.runtime.save(self.paths.runtime)
        self.proxy.start()
        self.hub.start()
        self.write_runtime()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        urls = [
            f"{self.local_url}/hub/health",
            f"http://127.0.0.1:{self.runtime.api_port}/services/himalia/openapi.json",
        ]
        with httpx.Client(timeout=2) as client:
            for url in urls:
                while True:
                    if not self.hub.running():
                        raise CLIError(f"JupyterHub exited during start-up; see {self.hub.log_path}")
                    if not self.proxy.running():
                        raise CLIError(f"The proxy exited during start-up; see {self.proxy.log_path}")
                    try:
                        if client.get(url).status_code < 500:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline or self.stopping.is_set():
                        raise CLIError(f"The platform did not become ready in {timeout:.0f}s; see {self.paths.logs}")
                    self.stopping.wait(0.2)

    def supervise(self) -> None:
        """Restart the hub or proxy when they die, until asked to stop."""
        crashes = 0
        while not self.stopping.wait(0.5):
            for child in (self.proxy, self.hub):
                if child.running():
                    continue
                lived = time.monotonic() - child.started_at
                crashes = crashes + 1 if lived < CRASH_WINDOW else 1
                if crashes > CRASH_LIMIT:
                    raise CLIError(f"{child.name} keeps exiting; see {child.log_path}")
                log.warning("%s exited (code %s); restarting it", child.name, child.proc.returncode)
                child.restarts += 1
                child.start()
                self.write_runtime()

    def stop_user_servers(self, timeout: float = 30.0) -> None:
        """Stop every running single-user server through the hub API (the hub leaves them up)."""
        token = self.paths.admin_token.read_text().strip()
        api = f"http://127.0.0.1:{self.runtime.hub_port}/hub/api"
        headers = {"Authorization": f"token {token}"}
        try:
            with httpx.Client(timeout=10, headers=headers) as client:
                users = client.get(f"{api}/users", params={"state": "active"}).json()
                for user in users:
                    for server in (user.get("servers") or {}):
                        suffix = f"/servers/{server}" if server else "/server"
                        client.delete(f"{api}/users/{user['name']}{suffix}")
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if not client.get(f"{api}/users", params={"state": "active"}).json():
                        return
                    time.sleep(0.5)
        except (httpx.HTTPError, ValueError) as e:
            log.warning("Could not stop user servers through the hub: %s", e)

    def shutdown(self) -> None:
        if self.hub.running():
            self.stop_user_servers()
        self.hub.stop()
        self.proxy.stop()
        data = json.loads(self.paths.runtime.read_text())
        data["pids"] = {}
        write_private_json(self.paths.runtime, data)


def _prepare_state(paths: StatePaths, bootstrap_password: bool = True) -> bool:
    """Create the state directory; return True on first run (and write the bootstrap secrets)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.root, 0o700)
    for sub in (paths.logs, paths.run, paths.users, paths.jupyter_data):
        sub.mkdir(parents=True, exist_ok=True)
    first_run = not paths.admin_token.exists()
    if first_run:
        write_private(paths.admin_token, secrets.token_hex(32) + "\n")
        if bootstrap_password:
            write_private(paths.bootstrap_password, secrets.token_urlsafe(12) + "\n")
    return first_run


def _migrate(cfg, paths: StatePaths) -> None:
    """Bring the API database to the current schema; the hub upgrades its own (upgrade_db)."""
    previous = paths.version.read_text().strip() if paths.version.exists() else None
    try:
        upgrade_api_db(cfg.resolved_api_db_url())
    except Exception as e:  # the driver's error says what is wrong with the URL or server
        raise CLIError(f"Cannot migrate the API database: {str(e).splitlines()[0]}") from e
    if previous and previous != __version__:
        log.info("Upgraded from himalia %s to %s", previous, __version__)
    paths.version.write_text(__version__ + "\n")


def unreadable_by_others(path: Path) -> Path | None:
    """The first folder (or the file) on ``path`` that other Unix accounts cannot enter or run."""
    path = path.resolve()
    for part in [*reversed(path.parents), path]:
        mode = part.stat().st_mode
        if not mode & 0o001:
            return part
    return None


def _check_system_users() -> None:
    """Servers run as other accounts: they must be able to run this Python and import himalia."""
    import jupyterhub

    import himalia.hub

    for target in (Path(sys.executable), Path(himalia.hub.__file__).parent,
                   Path(jupyterhub.__file__).parent):
        blocked = unreadable_by_others(target)
        if blocked is not None:
            raise CLIError(
                f"users' servers run as their own Unix accounts, which cannot use {target} "
                f"({blocked} is private): create the virtual environment from a Python outside "
                f"private folders (e.g. /usr/bin/python3 -m venv, in a clone outside /root) or set "
                f"c.HimaliaConfig.system_users = False"
            )


def _lock(paths: StatePaths) -> None:
    pidfile = paths.run / "himalia.pid"
    if pidfile.exists():
        try:
            other = int(pidfile.read_text())
        except ValueError:
            other = 0
        if other != os.getpid() and pid_alive(other):
            raise CLIError(f"himalia is already running on {paths.root} (pid {other}).")
    pidfile.write_text(str(os.getpid()))


def cmd_up(args: argparse.Namespace) -> int:
    overrides = Config()
    for option in ("ip", "port", "db_url", "api_db_url", "backend"):
        value = getattr(args, option)
        if value is not None:
            overrides.HimaliaConfig[option] = value
    _check_db_url(args.db_url or "", "--db-url")
    _check_db_url(args.api_db_url or "", "--api-db-url")
    cfg = load_himalia_config(args.state_dir, overrides)
    if cfg.backend == "docker" and cfg.ip.startswith("127."):
        raise CLIError("--backend docker needs the proxy on an address containers can reach: "
                       "add --ip 0.0.0.0 (or the Docker bridge address)")
    paths = StatePaths(cfg.state_dir)
    _prepare_state(paths, bootstrap_password=cfg.authenticator == "native")
    _lock(paths)
    if cfg.system_users:
        _check_system_users()
    else:
        print("WARNING: one Unix account for everyone (system_users is off, the default when not "
              "root): every server runs as this user and users can read each other's files.",
              file=sys.stderr)
    try:
        proxy_exe = ensure_proxy(paths.proxy_prefix)
    except ProxyInstallError as e:
        raise CLIError(str(e)) from e
    _migrate(cfg, paths)
    # Read before the hub consumes it, so a failed first start still shows it next time.
    bootstrap = paths.bootstrap_password.read_text().strip() if paths.bootstrap_password.exists() else ""
    runtime = _choose_ports(cfg, paths)
    runtime.overrides = dict(overrides.HimaliaConfig)
    platform = Platform(cfg, paths, runtime, proxy_exe)
    platform.runtime.admin_token = paths.admin_token.read_text().strip()

    def on_signal(signum, frame):
        platform.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    platform.start()
    try:
        platform.wait_ready()
        print(f"himalia {__version__} is running at {cfg.public_url()}/", flush=True)
        if bootstrap:
            print(f"Log in as '{cfg.admin_user}' with the one-time password: {bootstrap}", flush=True)
            print("Change it at /hub/change-password after logging in.", flush=True)
        print(f"Admin API token: {paths.admin_token} · logs: {paths.logs}", flush=True)
        platform.supervise()
    finally:
        print("Stopping himalia ...", file=sys.stderr, flush=True)
        platform.shutdown()
        (paths.run / "himalia.pid").unlink(missing_ok=True)
    return 0


def _probe(url: str, headers: dict | None = None) -> tuple[bool, str]:
    try:
        r = httpx.get(url, headers=headers, timeout=3)
    except httpx.HTTPError as e:
        return False, type(e).__name__
    return r.status_code < 500, f"HTTP {r.status_code}"


def cmd_status(args: argparse.Namespace) -> int:
    paths = StatePaths(args.state_dir)
    if not paths.runtime.exists():
        raise CLIError(f"No himalia state in {paths.root}: run 'himalia up --state-dir {args.state_dir}' first.")
    runtime = json.loads(paths.runtime.read_text())
    pids = runtime.get("pids") or {}
    local = runtime.get("local_url", "")
    rows = [("himalia", pid_alive(pids.get("himalia")), f"pid {pids.get('himalia', '-')}")]
    rows.append(("proxy", *_probe(f"{local}/hub/health")))
    rows.append(("hub", *_probe(f"http://127.0.0.1:{runtime['hub_port']}/hub/api/")))
    token = paths.admin_token.read_text().strip() if paths.admin_token.exists() else ""
    health = None
    if token:
        try:
            r = httpx.get(f"{local}/services/himalia/api/v1/health",
                          headers={"Authorization": f"token {token}"}, timeout=10)
            health = r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            health = None
    rows.append(("api", health is not None, "answered" if health else "no answer"))
    for name, part in ((health or {}).get("services") or {}).items():
        if name in ("hub", "proxy"):
            continue
        rows.append((name, part["ok"], part["detail"]))
    width = max(len(r[0]) for r in rows)
    for name, ok, detail in rows:
        print(f"{name:<{width}}  {'up  ' if ok else 'DOWN'}  {detail}")
    return 0 if all(ok for _, ok, _ in rows) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="himalia", description="A Jupyter-centric ML platform.")
    parser.add_argument("--version", action="version", version=f"himalia {__version__}")
    parser.add_argument("--log-level", default="WARNING", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    up = sub.add_parser("up", help="run the hub, proxy and platform services until interrupted")
    up.add_argument("--ip", help="public IP address (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="public port (default 8000)")
    up.add_argument("--state-dir", default=".himalia", help="state directory (default ./.himalia)")
    up.add_argument("--db-url", help="hub database URL (default SQLite in the state directory)")
    up.add_argument("--api-db-url", help="platform API database URL (default: beside the hub's)")
    up.add_argument("--backend", choices=["local", "docker", "kubernetes"], help="where servers run")
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", help="show the state of each service")
    status.add_argument("--state-dir", default=".himalia", help="state directory (default ./.himalia)")
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="[himalia] %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except CLIError as e:
        print(f"himalia: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
