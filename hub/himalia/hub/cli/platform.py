"""``himalia up`` runs the platform, ``himalia status`` reports on it."""

from __future__ import annotations

import argparse
import json
import logging
import os
import pwd
import secrets
import signal
import stat
import sys
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from traitlets import TraitError
from traitlets.config import Config

from .. import hubconfig
from .._version import __version__
from ..config import StatePaths, write_private
from ..hubconfig import (Runtime, load_config_file, load_himalia_config, unsupported_settings,
                         write_private_json)
from ..proxy import ProxyInstallError, ensure_proxy, proxy_command
from ..storage import upgrade as upgrade_api_db
from ..storage.roles import provision_api_role, same_role
from ..supervisor import ManagedProcess, pid_alive
from ..trust import UntrustedPath, check_trusted, check_tree_trusted
from ..unixusers import AccountError, AccountRegistry
from ..userenv import UserEnvError, ensure_user_environment, overlay_location
from .common import CLIError, Running, free_port, port_free

log = logging.getLogger("himalia")

READY_TIMEOUT = 180.0
#: A hub that dies this soon after starting, this many times in a row, is not restarted again.
CRASH_WINDOW, CRASH_LIMIT = 20.0, 3


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
        tracking_port=pick(cfg.tracking_port, "tracking_port"),
        models_port=pick(cfg.models_port, "models_port"),
        dashboards_port=pick(cfg.dashboards_port, "dashboards_port"),
        gateway_port=pick(cfg.gateway_port, "gateway_port"),
        gateway_scheduler_port=pick(cfg.gateway_scheduler_port, "gateway_scheduler_port"),
    )


def _check_db_url(url: str, option: str) -> None:
    if url and not url.startswith(("sqlite", "postgresql", "mysql")):
        raise CLIError(f"{option} must be an SQLAlchemy URL such as postgresql://user@host/db, not {url!r}")


def _database_option(args: argparse.Namespace, option: str, env_key: str) -> str | None:
    """A database URL from the command line (never with a password) or the environment."""
    flag = "--" + option.replace("_", "-")
    value = getattr(args, option)
    if value:
        _check_db_url(value, flag)
        try:
            has_password = make_url(value).password is not None
        except ArgumentError as e:
            raise CLIError(f"{flag} is not a database URL: {e}") from e
        if has_password:
            # Every account on the machine can read a command line (ps).
            raise CLIError(f"{flag} contains a password, which ps shows to every account: put the "
                           f"URL in the {env_key} environment variable or himalia_config.py, or "
                           "the password in a PostgreSQL password file (PGPASSFILE)")
        return value
    return args.env.get(env_key) or None


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
                          hub_port=runtime.hub_port, ssl_cert=cfg.ssl_cert, ssl_key=cfg.ssl_key),
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
            url=self.cfg.resolved_public_url(), local_url=self.local_url, version=__version__,
        )
        write_private_json(self.paths.runtime, data)

    def start(self) -> None:
        self.runtime.save(self.paths.runtime)
        self.proxy.start()
        self.hub.start()
        self.write_runtime()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until people can use the platform: the hub, the platform API and MLflow answer, and
        the proxy routes to them (the hub adds the routes some time after it answers)."""
        deadline = time.monotonic() + timeout
        proxy_api = f"http://127.0.0.1:{self.runtime.proxy_api_port}/api/routes"
        proxy_auth = {"Authorization": f"token {self.proxy.env['CONFIGPROXY_AUTH_TOKEN']}"}

        def routed(client: httpx.Client) -> bool:
            routes = client.get(proxy_api, headers=proxy_auth).json()
            # The proxy keeps route specs without their trailing slash (except "/").
            return "/" in routes and "/models" in routes and all(
                f"/services/{name}" in routes
                for name in (hubconfig.API_SERVICE, hubconfig.TRACKING_SERVICE))

        checks = [
            lambda client: client.get(f"http://127.0.0.1:{self.runtime.hub_port}/hub/health").status_code == 200,
            lambda client: client.get(f"http://127.0.0.1:{self.runtime.api_port}/services/"
                                      f"{hubconfig.API_SERVICE}/openapi.json").status_code < 500,
            lambda client: client.get(f"http://127.0.0.1:{self.runtime.tracking_port}/services/"
                                      f"{hubconfig.TRACKING_SERVICE}/health").status_code == 200,
            routed,
        ]
        with httpx.Client(timeout=2) as client:
            for ready in checks:
                while True:
                    if not self.hub.running():
                        raise CLIError(f"JupyterHub exited during start-up; see {self.hub.log_path}")
                    if not self.proxy.running():
                        raise CLIError(f"The proxy exited during start-up; see {self.proxy.log_path}")
                    try:
                        if ready(client):
                            break
                    except (httpx.HTTPError, ValueError):
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
    """Create the state directory; return True on first run (and write the bootstrap secrets).

    Everything in it is private to this account (the API's folder becomes the service
    account's): the hub's database, logs and secrets included.
    """
    paths.root.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.root, 0o700)
    for sub in (paths.logs, paths.run, paths.users, paths.jupyter_data, *paths.service_folders()):
        sub.mkdir(parents=True, exist_ok=True)
    for entry in paths.root.iterdir():
        mode = entry.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & 0o077:
            os.chmod(entry, stat.S_IMODE(mode) & 0o700)
    if not paths.api_cookie_secret.exists():
        write_private(paths.api_cookie_secret, secrets.token_hex(32) + "\n")
    first_run = not paths.admin_token.exists()
    if first_run:
        write_private(paths.admin_token, secrets.token_hex(32) + "\n")
        if bootstrap_password:
            write_private(paths.bootstrap_password, secrets.token_urlsafe(12) + "\n")
    return first_run


def _check_trusted_state(paths: StatePaths) -> None:
    """Refuse a state directory, or a config file in it, that another account can change."""
    try:
        check_trusted(paths.root, "The state directory")
        if paths.user_config.exists():
            check_trusted(paths.user_config, "The configuration file")
    except UntrustedPath as e:
        raise CLIError(str(e)) from e


def _check_trusted_proxy(paths: StatePaths, executable: str) -> None:
    try:
        if Path(executable).is_relative_to(paths.proxy_prefix):
            check_tree_trusted(paths.proxy_prefix, "The proxy installed in")
        else:
            check_trusted(Path(executable).resolve(), "The proxy")
    except UntrustedPath as e:
        raise CLIError(str(e)) from e


def _ensure_service_account(cfg, paths: StatePaths) -> pwd.struct_passwd:
    """The unprivileged account of the platform's services; it may enter the state directory."""
    try:
        account = AccountRegistry(paths.accounts).ensure(cfg.service_user, "service", system=True)
    except AccountError as e:
        raise CLIError(f"{e} (it is c.HimaliaConfig.service_user)") from e
    blocked = unreadable_by_others(paths.root.parent)
    if blocked is not None:
        raise CLIError(f"the platform's services run as the account {cfg.service_user}, which cannot "
                       f"reach the state directory {paths.root} ({blocked} is private): use a "
                       "--state-dir outside private folders, e.g. /var/lib/himalia")
    os.chown(paths.root, 0, account.pw_gid)
    os.chmod(paths.root, 0o710)
    return account


def _api_database_url(cfg, paths: StatePaths) -> str:
    """The API database's URL; on the hub's PostgreSQL, the API's own role is made first."""
    legacy = paths.root / "himalia.sqlite"
    current = paths.api / "himalia.sqlite"
    if legacy.exists() and not current.exists() and not cfg.api_db_url and not cfg.db_url:
        legacy.rename(current)
    if cfg.api_db_url:
        if cfg.db_url.startswith("postgresql") and cfg.api_db_url.startswith("postgresql") \
                and same_role(cfg.db_url, cfg.api_db_url):
            raise CLIError("the API database URL uses the hub's database role: give the platform "
                           "API a role of its own (or leave --api-db-url out and himalia creates one)")
        return cfg.api_db_url
    if not cfg.db_url.startswith("postgresql"):
        return cfg.resolved_api_db_url()
    if not paths.api_db_password.exists():
        write_private(paths.api_db_password, secrets.token_urlsafe(24) + "\n")
    password = paths.api_db_password.read_text().strip()
    try:
        return provision_api_role(cfg.db_url, password)
    except SQLAlchemyError as e:
        first = str(e.orig if getattr(e, "orig", None) else e).strip().splitlines()[0]
        raise CLIError(f"Cannot create the platform API's own database role with the hub's "
                       f"credentials ({first}): create one and give its URL in HIMALIA_API_DB_URL") from e


def _migrate(cfg, paths: StatePaths, url: str | None = None) -> None:
    """Bring the API database to the current schema; the hub upgrades its own (upgrade_db)."""
    previous = paths.version.read_text().strip() if paths.version.exists() else None
    try:
        upgrade_api_db(url or cfg.resolved_api_db_url())
    except Exception as e:  # the driver's error says what is wrong with the URL or server
        raise CLIError(f"Cannot migrate the API database: {str(e).splitlines()[0]}") from e
    if previous and previous != __version__:
        log.info("Upgraded from himalia %s to %s", previous, __version__)
    write_private(paths.version, __version__ + "\n")


def _give_service_folders(paths: StatePaths, account: pwd.struct_passwd) -> None:
    """The services (running as the service account) own their folders and SQLite files."""
    for root in paths.service_folders():
        for folder, dirs, files in os.walk(root):
            for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
                os.chown(name, account.pw_uid, account.pw_gid)


def unreadable_by_others(path: Path) -> Path | None:
    """The first folder (or the file) on ``path`` that other Unix accounts cannot enter or run."""
    path = path.resolve()
    for part in [*reversed(path.parents), path]:
        mode = part.stat().st_mode
        if not mode & 0o001:
            return part
    return None


def _check_other_accounts_can_run_himalia() -> None:
    """Servers and services run as other accounts: they must run this Python and import himalia."""
    import jupyterhub

    import himalia.hub

    for target in (Path(sys.executable), Path(himalia.hub.__file__).parent,
                   Path(jupyterhub.__file__).parent):
        blocked = unreadable_by_others(target)
        if blocked is not None:
            raise CLIError(
                f"users' servers and himalia's services run as their own Unix accounts, which "
                f"cannot use {target} ({blocked} is private): create the virtual environment "
                f"from a Python outside private folders (e.g. /usr/bin/python3 -m venv), in a "
                f"clone outside home folders such as /root (e.g. under /srv or /opt)"
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
    write_private(pidfile, str(os.getpid()))


def _load_config(args: argparse.Namespace, paths: StatePaths):
    overrides = Config()
    for option in ("ip", "port", "backend"):
        value = getattr(args, option)
        if value is not None:
            overrides.HimaliaConfig[option] = value
    for option, env_key in (("db_url", "HIMALIA_DB_URL"), ("api_db_url", "HIMALIA_API_DB_URL"),
                            ("tracking_db_url", "HIMALIA_TRACKING_DB_URL")):
        value = _database_option(args, option, env_key)
        if value:
            overrides.HimaliaConfig[option] = value
    # himalia_config.py is Python that runs here, possibly as root: check who can change it first.
    _check_trusted_state(paths)
    try:
        cfg = load_himalia_config(paths.root, overrides)
        # Validate every setting now, so a bad one is one line here, not a hub that will not start.
        for name in cfg.traits(config=True):
            getattr(cfg, name)
    except TraitError as e:
        raise CLIError(str(e).splitlines()[0]) from e
    _check_db_url(cfg.db_url, "c.HimaliaConfig.db_url")
    _check_db_url(cfg.api_db_url, "c.HimaliaConfig.api_db_url")
    _check_db_url(cfg.tracking_db_url, "c.HimaliaConfig.tracking_db_url")
    if bool(cfg.ssl_cert) != bool(cfg.ssl_key):
        raise CLIError("c.HimaliaConfig.ssl_cert and ssl_key go together: set both or neither")
    problems = unsupported_settings(load_config_file(paths.root))
    if problems:
        raise CLIError(problems[0])
    return cfg, overrides


def cmd_up(args: argparse.Namespace) -> int:
    # Files of the platform (and of the hub and services it starts) are private by default.
    os.umask(0o077)
    paths = StatePaths(args.state_dir)
    cfg, overrides = _load_config(args, paths)
    as_root = os.geteuid() == 0
    if as_root and not cfg.system_users:
        raise CLIError("as root, every user's server runs as the user's own Unix account: remove "
                       "c.HimaliaConfig.system_users = False, or run himalia up as an unprivileged "
                       "account (then all servers share that account)")
    if cfg.backend == "docker" and cfg.docker_network != "host" and cfg.ip.startswith("127."):
        raise CLIError(f"--backend docker on the {cfg.docker_network!r} network needs the proxy on an "
                       "address containers can reach: add --ip 0.0.0.0 (or the Docker bridge address)")
    _prepare_state(paths, bootstrap_password=cfg.authenticator == "native")
    _lock(paths)
    service_account = None
    if as_root:
        _check_other_accounts_can_run_himalia()
        service_account = _ensure_service_account(cfg, paths)
    else:
        print("WARNING: one Unix account for everyone (himalia up is not running as root): every "
              "server runs as this user and users can read each other's files.",
              file=sys.stderr)
    if cfg.backend == "local":
        try:
            ensure_user_environment(overlay_location(paths.root))
        except UserEnvError as e:
            raise CLIError(str(e)) from e
    try:
        proxy_exe = ensure_proxy(paths.proxy_prefix)
    except ProxyInstallError as e:
        raise CLIError(str(e)) from e
    _check_trusted_proxy(paths, proxy_exe)
    _migrate(cfg, paths, _api_database_url(cfg, paths))
    if service_account is not None:
        _give_service_folders(paths, service_account)
    # Read before the hub consumes it, so a failed first start still shows it next time.
    bootstrap = paths.bootstrap_password.read_text().strip() if paths.bootstrap_password.exists() else ""
    runtime = _choose_ports(cfg, paths)
    runtime.overrides = dict(overrides.HimaliaConfig)
    platform = Platform(cfg, paths, runtime, proxy_exe)
    platform.runtime.admin_token = paths.admin_token.read_text().strip()

    def on_signal(signum, frame):
        platform.stopping.set()

    # A closed terminal (SIGHUP) stops the platform as Ctrl-C and SIGTERM do.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    platform.start()
    try:
        platform.wait_ready()
        print(f"himalia {__version__} is running at {cfg.resolved_public_url()}/", flush=True)
        if bootstrap:
            hours = cfg.bootstrap_password_lifetime / 3600
            print(f"Log in as '{cfg.admin_user}' within {hours:g} hours with the one-time "
                  f"password: {bootstrap}", flush=True)
            print("Then set your own at /hub/change-password; the one-time password expires.",
                  flush=True)
        print(f"Admin API token: {paths.admin_token} · logs: {paths.logs}", flush=True)
        platform.supervise()
    finally:
        try:
            print("Stopping himalia ...", file=sys.stderr, flush=True)
        except OSError:
            pass  # whoever read our output is gone; the processes must still be stopped
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
    if getattr(args, "name", None):
        # `himalia status NAME`: one deployment (cli/deployments.py).
        from .deployments import cmd_deployments

        args.json, args.limit = False, 1
        return cmd_deployments(args)
    running = Running.load(args.state_dir or ".himalia")
    runtime = running.runtime
    pids = runtime.get("pids") or {}
    local = runtime.get("local_url", "")
    rows = [("himalia", pid_alive(pids.get("himalia")), f"pid {pids.get('himalia', '-')}")]
    rows.append(("proxy", *_probe(f"{local}/hub/health")))
    rows.append(("hub", *_probe(f"{running.hub_api}/")))
    health = None
    if running.admin_token:
        try:
            r = httpx.get(f"{local}/services/himalia/api/v1/health",
                          headers={"Authorization": f"token {running.admin_token}"}, timeout=10)
            health = r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            health = None
    rows.append(("api", health is not None, "answered" if health else "no answer"))
    for name, part in ((health or {}).get("services") or {}).items():
        if name in ("hub", "proxy"):
            continue
        rows.append((name, part["ok"], part.get("detail", "")))
    width = max(len(r[0]) for r in rows)
    for name, ok, detail in rows:
        print(f"{name:<{width}}  {'up  ' if ok else 'DOWN'}  {detail}")
    return 0 if all(ok for _, ok, _ in rows) else 1


def add_commands(sub) -> None:
    up = sub.add_parser("up", help="run the hub, proxy and platform services until interrupted")
    up.add_argument("--ip", help="public IP address (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="public port (default 8000)")
    up.add_argument("--state-dir", default=".himalia", help="state directory (default ./.himalia)")
    up.add_argument("--db-url", help="hub database URL without a password (default SQLite in the "
                                     "state directory; or set HIMALIA_DB_URL)")
    up.add_argument("--api-db-url", help="platform API database URL without a password (default: "
                                         "beside the hub's; or set HIMALIA_API_DB_URL)")
    up.add_argument("--tracking-db-url", help="MLflow backend store URL without a password "
                                              "(default SQLite in the state directory; or set "
                                              "HIMALIA_TRACKING_DB_URL)")
    up.add_argument("--backend", choices=["local", "docker", "kubernetes"], help="where servers run")
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", help="show the state of each service, or of one deployment")
    status.add_argument("name", nargs="?", help="a deployment: its versions, traffic and health")
    status.add_argument("--state-dir", default=None, help="state directory (default ./.himalia)")
    status.set_defaults(func=cmd_status)
