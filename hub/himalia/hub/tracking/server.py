"""The MLflow tracking server, run by the hub as the managed service ``mlflow``.

``python -m himalia.hub.services.tied himalia.hub.tracking.server`` writes MLflow's auth
configuration and starts ``mlflow server`` with its ``basic-auth`` app, whose authorization
function (:mod:`himalia.hub.tracking.hubauth`) accepts hub tokens and the hub's OAuth login
instead of passwords. MLflow starts worker processes, so it runs in a process
group of its own, which this process ends when the hub stops the service.

The objects handed to MLflow (command line, environment, auth configuration) are built by pure
functions so tests check them as data.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from ..config import write_private
from ..supervisor import signal_group

SERVICE = "mlflow"
PREFIX = f"/services/{SERVICE}"
AUTH_FUNCTION = "himalia.hub.tracking.hubauth:authenticate"
#: MLflow's administrator in its own user store: a name no hub user can have ('.'), whose
#: password nobody needs (requests authenticate with hub tokens only).
MLFLOW_ADMIN = "himalia.admin"
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
STOP_GRACE_SECONDS = 3


def auth_config(auth_db_url: str, admin_password: str) -> str:
    """MLflow's ``basic_auth.ini``: others' experiments and models are read-only by default;
    the creator of one gets MANAGE (MLflow grants it)."""
    return (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {auth_db_url}\n"
        f"admin_username = {MLFLOW_ADMIN}\n"
        f"admin_password = {admin_password}\n"
        f"authorization_function = {AUTH_FUNCTION}\n"
    )


def allowed_hosts(public_url: str) -> list[str]:
    """``Host`` headers MLflow accepts besides its default (localhost and private addresses):
    the platform's public host, which the proxy passes through."""
    parsed = urlparse(public_url)
    host = parsed.hostname or ""
    if not host or host in LOOPBACK_HOSTS:
        return []
    hosts = [host, f"{host}:{parsed.port}" if parsed.port else host]
    return sorted({*hosts, "localhost", "127.0.0.1", "localhost:*", "127.0.0.1:*"})


def server_command(python: str, *, port: int, backend_uri: str, artifacts: Path,
                   public_url: str = "") -> list[str]:
    """``mlflow server`` on 127.0.0.1 behind the proxy at ``/services/mlflow``."""
    argv = [
        python, "-m", "mlflow", "server",
        "--app-name", "basic-auth",
        "--host", "127.0.0.1",
        "--port", str(port),
        # One worker: four take 13 s to start on two cores and buy nothing at this scale.
        "--workers", "1",
        "--backend-store-uri", backend_uri,
        "--serve-artifacts",
        "--artifacts-destination", artifacts.as_uri(),
        "--static-prefix", PREFIX,
    ]
    hosts = allowed_hosts(public_url)
    if hosts:
        argv += ["--allowed-hosts", ",".join(hosts)]
    return argv


def server_environment(auth_config_path: Path, home: Path) -> dict[str, str]:
    """Settings of the server process: its auth configuration, no telemetry, every route
    without an authorization rule refused, nothing written to a home folder, and no GenAI
    job runner (task-queue consumers that would poll and take CPU from the hub beside them;
    himalia runs its jobs itself)."""
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_config_path),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_BASIC_AUTH_FAIL_CLOSED": "true",
        "HOME": str(home),
    }


def main() -> int:
    env = os.environ
    folder = Path(env["HIMALIA_TRACKING_DIR"])
    port = urlparse(env["JUPYTERHUB_SERVICE_URL"]).port
    (folder / "artifacts").mkdir(parents=True, exist_ok=True)
    cookie_secret, flask_secret = folder / "cookie_secret", folder / "flask_secret"
    for secret in (cookie_secret, flask_secret):
        if not secret.exists():
            write_private(secret, secrets.token_hex(32) + "\n")
    ini = folder / "basic_auth.ini"
    write_private(ini, auth_config(f"sqlite:///{folder / 'auth.db'}", secrets.token_urlsafe(24)))
    argv = server_command(sys.executable, port=port, backend_uri=env["HIMALIA_TRACKING_DB_URL"],
                          artifacts=folder / "artifacts", public_url=env.get("HIMALIA_PUBLIC_URL", ""))
    server_env = {**env, **server_environment(ini, folder),
                  "HIMALIA_TRACKING_COOKIE_SECRET_FILE": str(cookie_secret),
                  # Signs the CSRF tokens of MLflow's own forms; stable across restarts.
                  "MLFLOW_FLASK_SERVER_SECRET_KEY": flask_secret.read_text().strip()}
    server = subprocess.Popen(argv, env=server_env, cwd=folder,
                              start_new_session=True)

    def stop(signum, frame):
        # Once: the hub sends SIGINT then SIGTERM, and the tied watcher SIGTERM when the hub is
        # gone. Finish well within the hub's patience (10 s after SIGINT, 5 s after SIGTERM).
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        signal_group(server.pid, signal.SIGTERM)
        try:
            server.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        # Its task-queue consumers outlive the server's own exit: end the whole group.
        signal_group(server.pid, signal.SIGKILL)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return server.wait()


if __name__ == "__main__":
    sys.exit(main())
