"""The platform's own settings, shared by the CLI, the hub configuration and the API service.

Every knob is a trait with help text; the CLI maps its options onto these traits and
``<state-dir>/himalia_config.py`` may set any of them (``c.HimaliaConfig.port = 8001``).
"""

from __future__ import annotations

import os
from pathlib import Path

from traitlets import Bool, CaselessStrEnum, Dict, Int, List, Unicode, default
from traitlets.config import Configurable

ROLES = ("admin", "scientist", "viewer")
#: The hub group whose members hold each platform role.
ROLE_GROUPS = {"admin": "admins", "scientist": "scientists", "viewer": "viewers"}


class HimaliaConfig(Configurable):
    """Settings of one himalia installation."""

    state_dir = Unicode(
        ".himalia",
        help="""Directory holding all state: databases, logs, tokens, proxy install, Jupyter data.

        Nothing is written to home directories; MLflow, BentoML and Jupyter homes live here.

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    ip = Unicode("127.0.0.1", help="Public IP address the proxy listens on.").tag(config=True)

    port = Int(8000, help="Public port the proxy listens on.").tag(config=True)

    hub_port = Int(
        0, help="Port of the hub's own HTTP server (0: the previous run's if free, else any free one)."
    ).tag(config=True)

    api_port = Int(
        0, help="Port of the platform API service (0: the previous run's if free, else any free one)."
    ).tag(config=True)

    proxy_api_port = Int(
        0, help="Port of configurable-http-proxy's REST API (0: the previous run's if free, else any)."
    ).tag(config=True)

    db_url = Unicode(
        "",
        help="""SQLAlchemy URL of the hub database.

        Empty means SQLite in the state directory. Use ``postgresql://user@host:5432/db``
        in production.
        """,
    ).tag(config=True)

    api_db_url = Unicode(
        "",
        help="""SQLAlchemy URL of the platform API database.

        Empty means SQLite in the state directory, or, when ``db_url`` is a PostgreSQL URL,
        the same server and database (the API's tables carry a ``himalia_`` prefix).
        """,
    ).tag(config=True)

    backend = CaselessStrEnum(
        ["local", "docker", "kubernetes"],
        default_value="local",
        help="""Where single-user servers run: local processes, Docker containers
        (DockerSpawner, ``himalia[docker]``) or Kubernetes pods (KubeSpawner, ``himalia[k8s]``).
        """,
    ).tag(config=True)

    server_connect_host = Unicode(
        "",
        help="""Host name at which servers in containers or pods reach this machine's hub and proxy.

        Empty means ``host.docker.internal`` for the Docker backend (mapped to the host's
        gateway in every container) and ``127.0.0.1`` otherwise. With Kubernetes the hub
        usually runs in the cluster: set this to the hub's service name there.
        """,
    ).tag(config=True)

    profiles = List(
        Dict(),
        help="""Server profiles offered at spawn time, declared once for every backend.

        Each entry: ``name``, ``display_name``, ``description``, ``cpu``, ``memory``, ``gpus``,
        ``image``, ``env``, ``default``. Empty means the built-in cpu / gpu / dask profiles.
        """,
    ).tag(config=True)

    admin_user = Unicode("admin", help="Name of the administrator bootstrapped on first run.").tag(
        config=True
    )

    default_role = CaselessStrEnum(
        list(ROLES),
        default_value="scientist",
        help="Platform role given to a user the first time the hub adds them.",
    ).tag(config=True)

    authenticator = CaselessStrEnum(
        ["native", "oauth"],
        default_value="native",
        help="""How people log in.

        ``native``: accounts kept by the hub (NativeAuthenticator); people sign up and an
        admin approves them, or an admin creates them. ``oauth``: a generic OpenID Connect
        provider through OAuthenticator; configure ``c.HimaliaOAuthenticator`` (client id,
        secret, URLs, and who is allowed) in ``<state-dir>/himalia_config.py``.
        """,
    ).tag(config=True)

    system_users = Bool(
        help="""Give each hub user a real Unix account and run their server as that account.

        Defaults to True when running as root. Without it, every server runs as the user who
        started the platform and users can read each other's files.
        """,
    ).tag(config=True)

    @default("system_users")
    def _default_system_users(self):
        return os.geteuid() == 0

    system_user_prefix = Unicode(
        "jupyter-",
        help="Prefix of the Unix account made for each hub user (``jupyter-alice``).",
    ).tag(config=True)

    cull_idle_timeout = Int(
        3600,
        help="Seconds of inactivity after which a server is stopped; 0 turns culling off.",
    ).tag(config=True)

    extra_hub_config = Dict(
        help="""Extra JupyterHub configuration, as ``{"Class": {"trait": value}}``, merged over
        himalia's own settings; plain ``c.Class.trait`` lines in ``himalia_config.py`` win over it.""",
    ).tag(config=True)

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).resolve()

    def resolved_db_url(self) -> str:
        return self.db_url or f"sqlite:///{self.state_path / 'jupyterhub.sqlite'}"

    def resolved_api_db_url(self) -> str:
        if self.api_db_url:
            return self.api_db_url
        if self.db_url.startswith("postgresql"):
            return self.db_url
        return f"sqlite:///{self.state_path / 'himalia.sqlite'}"

    def public_url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    def local_url(self) -> str:
        """The public URL as this machine reaches it (loopback when listening on all addresses)."""
        host = "127.0.0.1" if self.ip in ("0.0.0.0", "") else self.ip
        return f"http://{host}:{self.port}"


def write_private(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` readable by the owner only (tokens, passwords, database URLs)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


class StatePaths:
    """Well-known files and folders inside the state directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def admin_token(self) -> Path:
        return self.root / "admin-token"

    @property
    def bootstrap_password(self) -> Path:
        return self.run / "admin-bootstrap-password"

    @property
    def cookie_secret(self) -> Path:
        return self.root / "jupyterhub_cookie_secret"

    @property
    def runtime(self) -> Path:
        return self.run / "runtime.json"

    @property
    def version(self) -> Path:
        return self.root / "version"

    @property
    def user_config(self) -> Path:
        return self.root / "himalia_config.py"

    @property
    def proxy_prefix(self) -> Path:
        return self.root / "proxy"

    @property
    def jupyter_data(self) -> Path:
        return self.root / "jupyter" / "data"

    @property
    def users(self) -> Path:
        return self.root / "users"
