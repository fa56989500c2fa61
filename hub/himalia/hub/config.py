"""The platform's own settings, shared by the CLI, the hub configuration and the API service.

Every knob is a trait with help text; the CLI maps its options onto these traits and
``<state-dir>/himalia_config.py`` may set any of them (``c.HimaliaConfig.port = 8001``).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from traitlets import Bool, CaselessStrEnum, Dict, Float, Int, List, TraitError, Unicode, default, validate
from traitlets.config import Configurable

ROLES = ("admin", "scientist", "viewer", "labeler")
#: Unix account names ``useradd`` accepts, and the longest it allows.
UNIX_NAME = re.compile(r"^[a-z_][a-z0-9_-]*$")
MAX_UNIX_NAME = 32
#: Members of this hub group are administrators (JupyterHub's admin role).
ADMIN_GROUP = "admins"
#: The platform roles that are JupyterHub roles held by users directly (not through groups: a
#: group on every user costs the hub extra queries on every request).
USER_ROLES = ("scientist", "viewer", "labeler")
#: Hub groups that carried the scientist and viewer roles before; their members are moved to
#: the roles themselves when the hub starts.
LEGACY_ROLE_GROUPS = {"scientist": "scientists", "viewer": "viewers"}


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
        in production; give the password in ``himalia_config.py``, the ``HIMALIA_DB_URL``
        environment variable or a PostgreSQL password file, never on the command line.
        """,
    ).tag(config=True)

    tracking_port = Int(
        0, help="Port of the MLflow tracking server (0: the previous run's if free, else any free one)."
    ).tag(config=True)

    models_port = Int(
        0, help="Port of the model router at /models/ (0: the previous run's if free, else any free one)."
    ).tag(config=True)

    dashboards_port = Int(
        0, help="Port of the Voilà dashboards service (0: the previous run's if free, else any free one)."
    ).tag(config=True)

    gateway_port = Int(
        0, help="Port of the dask-gateway server's HTTP API (0: the previous run's if free, else any free one)."
    ).tag(config=True)

    gateway_scheduler_port = Int(
        0, help="Port where Dask clients reach their clusters' schedulers through dask-gateway "
        "(0: the previous run's if free, else any free one)."
    ).tag(config=True)

    cluster_max_cores = Int(
        0,
        help="""Cores one person's Dask cluster may use in all (its workers; the scheduler is not
        counted). 0 means the cores of this machine.
        """,
    ).tag(config=True)

    cluster_max_memory = Unicode(
        "", help="Memory one person's Dask cluster may use in all, e.g. ``16G`` (empty: no limit)."
    ).tag(config=True)

    cluster_max_workers = Int(
        0, help="Workers one person's Dask cluster may have (0: as many as the cores and memory allow)."
    ).tag(config=True)

    cluster_max_clusters = Int(
        2, help="Dask clusters one person may have running or starting at once (0: no limit)."
    ).tag(config=True)

    cluster_idle_timeout = Int(
        1800, help="Seconds a Dask cluster may run no task before it is shut down (0: never)."
    ).tag(config=True)

    cluster_orphan_timeout = Int(
        60,
        help="""Seconds a Dask cluster stays up with no client connected (its kernel was killed)
        before it is shut down (0: never; a kernel that shuts down closes its clusters at once).
        """,
    ).tag(config=True)

    cluster_worker_cores = Int(1, help="Cores (and threads) of one Dask worker.").tag(config=True)

    cluster_worker_memory = Unicode(
        "2G", help="Memory of one Dask worker (suffixes K, M, G, T of 1024)."
    ).tag(config=True)

    deploy_start_timeout = Int(
        180, help="Seconds a model version's server has to become ready before it is marked failed."
    ).tag(config=True)

    deploy_smoke_timeout = Int(
        30, help="Seconds a new model version has to answer the smoke request with its input example."
    ).tag(config=True)

    feature_online_store = Unicode(
        "sqlite",
        help="""Where the feature store keeps online values: ``sqlite`` (a file under
        ``<state-dir>/features/``) or a Redis URL such as ``redis://127.0.0.1:6379/0``
        (kernels on the same network then read it directly, which is fastest).
        """,
    ).tag(config=True)

    feature_offline_store = Dict(
        {"type": "duckdb"},
        help="""Feast's offline store of the platform's feature repository (Feast's
        ``offline_store`` setting as a dict). Training sets over Parquet sources are computed by
        himalia's own engine (DuckDB ASOF joins) wherever the sources are readable.
        """,
    ).tag(config=True)

    tracking_db_url = Unicode(
        "",
        help="""SQLAlchemy URL of MLflow's backend store (experiments, runs, metrics, models).

        Empty means SQLite in ``<state-dir>/tracking/``. A PostgreSQL URL needs a database of
        MLflow's own (MLflow keeps its own schema versions there). Artifacts always live in
        ``<state-dir>/tracking/artifacts`` and are served through the tracking server. Keep
        passwords off the command line: ``HIMALIA_TRACKING_DB_URL`` or ``himalia_config.py``.

        .. versionadded:: 0.2
        """,
    ).tag(config=True)

    api_db_url = Unicode(
        "",
        help="""SQLAlchemy URL of the platform API database.

        Empty means SQLite in ``<state-dir>/api/``, or, when ``db_url`` is a PostgreSQL URL,
        the same server and database under a role and schema of the API's own, which
        ``himalia up`` creates with the hub's credentials (they need CREATEROLE). A URL given
        here must use a database role other than the hub's. Keep passwords off the command
        line: put them in ``himalia_config.py``, the ``HIMALIA_API_DB_URL`` environment variable
        or a PostgreSQL password file.
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

        Empty means ``127.0.0.1`` on the host network, ``host.docker.internal`` for the
        Docker backend on another network (mapped to the host's gateway in every container),
        and ``127.0.0.1`` otherwise. With Kubernetes the hub
        usually runs in the cluster: set this to the hub's service name there.
        """,
    ).tag(config=True)

    docker_network = Unicode(
        "host",
        help="""Docker network of the users' containers (Docker backend).

        ``host`` (the default, for one machine): containers share the host's network, each
        server listens on 127.0.0.1 at a port of its own and reaches the hub, the proxy and
        the platform's services on 127.0.0.1; nothing is published. Any other value is a
        Docker network (``bridge``, or one made with ``docker network create``, an overlay
        network for a swarm): containers then reach this machine at
        ``server_connect_host`` and the hub listens on all interfaces for them.
        """,
    ).tag(config=True)

    profiles = List(
        Dict(),
        help="""Server profiles offered at spawn time, declared once for every backend.

        Each entry: ``name``, ``display_name``, ``description``, ``cpu``, ``memory``, ``gpus``,
        ``image``, ``env``, ``default``. Empty means the built-in cpu / gpu / dask profiles.
        """,
    ).tag(config=True)

    admin_user = Unicode(
        help="""Name of the administrator.

        With ``authenticator = "native"`` it defaults to ``admin``, whose account is bootstrapped
        with a one-time password on the first run. With ``"oauth"`` there is no default: the
        identity provider decides who people are, so administrators come only from this setting
        (or ``c.Authenticator.admin_users``).
        """,
    ).tag(config=True)

    @default("admin_user")
    def _default_admin_user(self):
        return "admin" if self.authenticator == "native" else ""

    bootstrap_password_lifetime = Int(
        24 * 3600,
        help="""Seconds the first administrator's one-time password stays valid.

        After that it no longer logs in; ``himalia users invite <admin>`` sends a new link.
        """,
    ).tag(config=True)

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
        help="""Prefix of the Unix account made for each hub user (``jupyter-alice``).

        Lower-case letters, digits, ``_`` and ``-``, starting with a letter or ``_``, at most 16
        characters. Hub user names are then limited to ``32 - len(prefix)`` characters
        (24 with the default), checked when the user is created.
        """,
    ).tag(config=True)

    @validate("feature_online_store")
    def _validate_online_store(self, proposal):
        from .features.repo import redis_connection_string

        value = proposal["value"].strip()
        if value and value != "sqlite":
            try:
                redis_connection_string(value)
            except ValueError as e:
                raise TraitError(str(e)) from None
        return value or "sqlite"

    @validate("system_user_prefix")
    def _validate_prefix(self, proposal):
        prefix = proposal["value"]
        if not UNIX_NAME.match(prefix) or len(prefix) > 16:
            raise TraitError(
                f"system_user_prefix {prefix!r} must be 1 to 16 characters of a-z, 0-9, '_' or "
                "'-', starting with a letter or '_' (e.g. 'jupyter-')"
            )
        return prefix

    service_user = Unicode(
        "himalia",
        help="""Unix account the platform's own services (the platform API, the idle culler) run
        as when ``himalia up`` runs as root; created as a system account on first start.

        The hub itself needs root to start servers as other accounts; its services do not.
        """,
    ).tag(config=True)

    @validate("service_user")
    def _validate_service_user(self, proposal):
        name = proposal["value"]
        if not UNIX_NAME.match(name) or len(name) > MAX_UNIX_NAME:
            raise TraitError(f"service_user {name!r} is not a valid Unix account name")
        return name

    public_url = Unicode(
        "",
        help="""The URL people use to reach the hub, when it differs from ``http://ip:port``:
        for example ``https://hub.example.org`` behind a TLS-terminating load balancer.

        An ``https`` URL makes every cookie of the hub and the platform API ``Secure``.
        """,
    ).tag(config=True)

    ssl_cert = Unicode(
        "", help="TLS certificate file for the proxy; with ``ssl_key`` the hub is served over HTTPS."
    ).tag(config=True)

    ssl_key = Unicode("", help="TLS private key file for the proxy (see ``ssl_cert``).").tag(config=True)

    subdomain_host = Unicode(
        "",
        help="""Serve each user's server, and each service, on its own subdomain of this URL
        (JupyterHub's ``subdomain_host``), e.g. ``https://hub.example.org``.

        Recommended in production: on one origin every user's server and the platform API
        share the browser's same-origin trust, so a page served from one user's server runs
        with the same origin as everyone else's. Needs wildcard DNS (and a wildcard
        certificate) for ``*.hub.example.org``.
        """,
    ).tag(config=True)

    cull_idle_timeout = Int(
        3600,
        help="Seconds of inactivity after which a server is stopped; 0 turns culling off.",
    ).tag(config=True)

    dashboard_pool_size = Int(
        1,
        help="""Pre-heated kernels kept per dashboard: each has the dashboard's notebook already
        executed, so a viewer's page is drawn at once (0 executes it at each visit).""",
    ).tag(config=True)

    dashboard_refill_delay = Float(
        3.0,
        help="""Seconds after a pre-heated dashboard kernel is handed to a viewer before the next
        one is started: starting it (and running the notebook) right away would compete with the
        viewer's page for the CPU.""",
    ).tag(config=True)

    dashboard_kernel_idle_seconds = Int(
        600, help="Seconds a viewer's dashboard kernel may sit idle before it is stopped."
    ).tag(config=True)

    job_kernel_pool = Dict(
        {},
        help="""Started kernels kept waiting for job runs, per profile (default 1 each).

        Kernels run as a job's owner, so each owner with active jobs gets this many per profile;
        ``{"gpu": 0}`` keeps none for the GPU profile. An idle kernel stops after
        ``job_kernel_idle_seconds``.
        """,
    ).tag(config=True)

    job_kernel_idle_seconds = Int(
        600, help="Seconds a started kernel waits for a job run before it is shut down."
    ).tag(config=True)

    job_max_parallel = Int(
        2, help="Job runs executed at the same time by the runner (each job also has its own limit)."
    ).tag(config=True)

    job_misfire_grace_seconds = Int(
        3600,
        help="""How late a scheduled run may start after the runner was down.

        Slots missed while the runner was not running are coalesced: the latest one runs if it
        is at most this many seconds old, the others are skipped (never run twice).
        """,
    ).tag(config=True)

    job_max_notebook_bytes = Int(
        20 * 1024 * 1024, help="Largest notebook (with its outputs) a job may be made from."
    ).tag(config=True)

    smtp = Dict(
        {},
        help="""SMTP server for job e-mail notifications: ``{"host", "port", "sender",
        "starttls": bool, "username", "password_file"}``. Empty: jobs cannot send e-mail.
        """,
    ).tag(config=True)

    extra_hub_config = Dict(
        help="""Extra JupyterHub configuration, as ``{"Class": {"trait": value}}``, merged over
        himalia's own settings; plain ``c.Class.trait`` lines in ``himalia_config.py`` win over it.""",
    ).tag(config=True)

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).resolve()

    def resolved_db_url(self) -> str:
        return self.db_url or f"sqlite:///{StatePaths(self.state_path).hub_db}"

    def resolved_tracking_db_url(self) -> str:
        return self.tracking_db_url or f"sqlite:///{StatePaths(self.state_path).tracking / 'mlflow.db'}"

    def resolved_api_db_url(self, api_password: str = "") -> str:
        """The API database's URL; on the hub's PostgreSQL, as the API's own role.

        ``api_password`` is that role's password (``StatePaths.api_db_password``).
        """
        if self.api_db_url:
            return self.api_db_url
        if self.db_url.startswith("postgresql"):
            from .storage.roles import api_role_url

            return api_role_url(self.db_url, api_password)
        return f"sqlite:///{self.state_path / 'api' / 'himalia.sqlite'}"

    def bind_url(self) -> str:
        """The proxy's own address."""
        scheme = "https" if self.ssl_cert else "http"
        return f"{scheme}://{self.ip}:{self.port}"

    def resolved_public_url(self) -> str:
        """How people reach the hub: ``public_url``, else the proxy's own address."""
        return self.public_url.rstrip("/") if self.public_url else self.bind_url()

    def local_url(self) -> str:
        """The public URL as this machine reaches it (loopback when listening on all addresses)."""
        host = "127.0.0.1" if self.ip in ("0.0.0.0", "") else self.ip
        scheme = "https" if self.ssl_cert else "http"
        return f"{scheme}://{host}:{self.port}"


def write_private(path: str | os.PathLike, text: str, owner: tuple[int, int] | None = None) -> None:
    """Write ``text`` readable by the owner only (tokens, passwords, database URLs).

    The file is replaced atomically (temporary file, fsync, rename): a reader, or a crash,
    sees the old content or the new, never an empty or half-written file. ``owner`` is a
    ``(uid, gid)`` to give the file to before it appears.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o600)
            if owner is not None:
                os.fchown(f.fileno(), *owner)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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

    @property
    def hub_db(self) -> Path:
        """The hub's SQLite database (when it is not on PostgreSQL)."""
        return self.root / "jupyterhub.sqlite"

    @property
    def accounts(self) -> Path:
        """The Unix accounts himalia created (name, uid, owner), kept by the hub."""
        return self.root / "accounts.json"

    @property
    def api(self) -> Path:
        """The platform API's own folder (its SQLite database), owned by ``service_user``."""
        return self.root / "api"

    @property
    def tracking(self) -> Path:
        """MLflow's folder (SQLite stores, artifacts, auth config), owned by ``service_user``."""
        return self.root / "tracking"

    @property
    def jobs(self) -> Path:
        """Scheduled jobs' notebooks, inputs and run outputs, owned by ``service_user``."""
        return self.root / "jobs"

    @property
    def jobs_socket(self) -> Path:
        """The job runner's control socket (see jobs/control.py), where the API's account
        reaches it."""
        return self.jobs / "runner.sock"

    @property
    def deployments(self) -> Path:
        """Model deployments: per deployment its bento store, versions' folders and logs."""
        return self.root / "deployments"

    @property
    def deployments_socket(self) -> Path:
        """The deployment manager's control socket (see deployments/control.py)."""
        return self.deployments / "manager.sock"

    @property
    def features(self) -> Path:
        """The feature store: Feast's repository folder and the SQLite online store."""
        return self.root / "features"

    @property
    def clusters(self) -> Path:
        """The dask-gateway service's folder: its cookie secret and clusters' working folders."""
        return self.root / "clusters"

    def service_folders(self) -> list[Path]:
        """Folders the platform's services own (as ``service_user`` when root)."""
        return [self.api, self.tracking, self.jobs, self.deployments, self.features, self.clusters]

    @property
    def api_cookie_secret(self) -> Path:
        return self.root / "api-cookie-secret"

    @property
    def api_db_password(self) -> Path:
        """Password of the API's own PostgreSQL role, when himalia created that role."""
        return self.root / "api-db-password"
