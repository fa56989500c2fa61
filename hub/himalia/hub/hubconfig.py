"""JupyterHub configuration built from :class:`HimaliaConfig`, as plain data.

``jupyterhub_config.py`` (the file the hub is started with) calls :func:`configure` ;
:func:`build_hub_config` is pure so tests check the exact settings we hand to JupyterHub.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from jupyterhub.utils import subdomain_hook_idna
from traitlets.config import Config, PyFileConfigLoader

from ._version import __version__
from .auth import role_members
from .config import ADMIN_GROUP, HimaliaConfig, StatePaths, write_private
from . import userenv
from .features.repo import FeatureSettings, online_config
from .labels.service import LabelSettings
from .clusters import gateway as cluster_gateway
from .dashboards import server as dashboards_server
from .dashboards.service import DashboardSettings
from .tracking import server as tracking_server
from .unixusers import username_help, username_pattern

API_SERVICE = "himalia"
JOBS_SERVICE = "himalia-jobs"
MODELS_SERVICE = "himalia-models"
ADMIN_SERVICE = "himalia-admin"
CULLER_SERVICE = "idle-culler"
TRACKING_SERVICE = tracking_server.SERVICE
DASHBOARDS_SERVICE = dashboards_server.SERVICE
GATEWAY_SERVICE = cluster_gateway.SERVICE
#: Seconds the hub waits for a managed web service (API, MLflow, ...) to answer at start.
SERVICE_START_TIMEOUT = 120
#: Wrapper that ends a managed service when its hub is gone (see services/tied.py).
TIED = "himalia.hub.services.tied"

_ACCESS_API = f"access:services!service={API_SERVICE}"
_ACCESS_TRACKING = f"access:services!service={TRACKING_SERVICE}"
_ACCESS_MODELS = f"access:services!service={MODELS_SERVICE}"
_ACCESS_DASHBOARDS = f"access:services!service={DASHBOARDS_SERVICE}"
_ACCESS_GATEWAY = f"access:services!service={GATEWAY_SERVICE}"
#: What any logged-in person may do, whatever their role: see who they are.
BASE_SCOPES = [
    "read:users:name!user",
    "read:users:groups!user",
    "read:roles:users!user",
    _ACCESS_API,
    # Calling a deployed model; who may call which is the deployment's own rule (owner,
    # admins, the people it is shared with).
    _ACCESS_MODELS,
]
SCIENTIST_SCOPES = [
    "read:users!user",
    "users:activity!user",
    "servers!user",
    "access:servers!user",
    "tokens!user",
    "read:roles:users!user",
    _ACCESS_API,
    _ACCESS_TRACKING,
    _ACCESS_MODELS,
    _ACCESS_DASHBOARDS,
    _ACCESS_GATEWAY,
]
#: Viewers open the dashboards shared with them (and nothing else of their own).
VIEWER_SCOPES = [*BASE_SCOPES, _ACCESS_DASHBOARDS]
#: Labelers reach the platform API, where only labeling admits them (authz.LABELER).
LABELER_SCOPES = list(BASE_SCOPES)
#: Scopes of $JUPYTERHUB_API_TOKEN in a user's server and kernels (intersected with the user's).
SERVER_TOKEN_SCOPES = ["users:activity!user", *BASE_SCOPES, _ACCESS_TRACKING, _ACCESS_GATEWAY]
#: Seconds a user's server trusts the hub's answer about a token: a revoked token stops
#: working there this soon (JupyterHub's default is 300).
SERVER_TOKEN_CACHE_SECONDS = 10
KERNEL_SPEC_MANAGER = "himalia.extension.kernelspecs.HimaliaKernelSpecManager"
#: OAuthenticator settings that need ``manage_groups``, which conflicts with the groups himalia declares.
GROUP_SETTINGS = ("allowed_groups", "admin_groups", "auth_state_groups_key", "manage_groups")


def write_private_json(path: Path, data: dict) -> None:
    """Write ``data`` readable by the owner only (it may hold database URLs with passwords)."""
    write_private(path, json.dumps(data, indent=1))


@dataclass
class Runtime:
    """Facts of one ``himalia up`` run that the hub configuration needs."""

    hub_port: int
    api_port: int
    proxy_api_port: int
    tracking_port: int = 0
    models_port: int = 0
    dashboards_port: int = 0
    gateway_port: int = 0
    gateway_scheduler_port: int = 0
    admin_token: str = ""
    #: HimaliaConfig values given on the command line, which the hub process must see too.
    overrides: dict = field(default_factory=dict)
    #: Secrets read from their own files by the hub process; never in ``runtime.json``.
    api_cookie_secret: str = ""
    api_db_password: str = ""

    SECRETS = ("admin_token", "api_cookie_secret", "api_db_password")

    def public_fields(self) -> dict:
        """What the hub process reads back from ``runtime.json`` (never a secret)."""
        return {k: v for k, v in asdict(self).items() if k not in self.SECRETS}

    def save(self, path: Path) -> None:
        write_private_json(path, self.public_fields())

    @classmethod
    def load(cls, paths: StatePaths) -> "Runtime":
        """The facts ``himalia up`` recorded, with the secrets read from their private files."""
        data = json.loads(paths.runtime.read_text())

        def secret(path: Path) -> str:
            return path.read_text().strip() if path.exists() else ""

        return cls(hub_port=data["hub_port"], api_port=data["api_port"],
                   proxy_api_port=data["proxy_api_port"], tracking_port=data.get("tracking_port", 0),
                   models_port=data.get("models_port", 0),
                   dashboards_port=data.get("dashboards_port", 0),
                   gateway_port=data.get("gateway_port", 0),
                   gateway_scheduler_port=data.get("gateway_scheduler_port", 0),
                   admin_token=secret(paths.admin_token),
                   overrides=data.get("overrides") or {},
                   api_cookie_secret=secret(paths.api_cookie_secret),
                   api_db_password=secret(paths.api_db_password))


def load_config_file(state_dir: str | os.PathLike) -> Config:
    """Everything ``<state-dir>/himalia_config.py`` sets, for himalia and for JupyterHub classes."""
    paths = StatePaths(state_dir)
    if not paths.user_config.exists():
        return Config()
    return PyFileConfigLoader(paths.user_config.name, str(paths.user_config.parent)).load_config()


def load_himalia_config(state_dir: str | os.PathLike, overrides: Config | None = None) -> HimaliaConfig:
    """Settings from ``<state-dir>/himalia_config.py`` with command-line ``overrides`` on top."""
    paths = StatePaths(state_dir)
    config = load_config_file(state_dir)
    if overrides:
        config.merge(overrides)
    cfg = HimaliaConfig(config=config)
    cfg.state_dir = str(paths.root)
    return cfg


def unsupported_settings(file_config: Config) -> list[str]:
    """Settings in ``himalia_config.py`` that would stop the hub from starting, as messages."""
    problems = []
    for section in ("HimaliaOAuthenticator", "GenericOAuthenticator", "OAuthenticator"):
        for key in GROUP_SETTINGS:
            if key in file_config.get(section, {}):
                problems.append(
                    f"c.{section}.{key} needs OAuthenticator's manage_groups, which conflicts with "
                    "the admins group himalia declares: choose who may log in with allowed_users (or "
                    "allow_all) and give roles on the People page or with himalia users role"
                )
    return problems


def _authenticator(c: Config, cfg: HimaliaConfig, paths: StatePaths) -> None:
    # Administrators only by explicit configuration (admin_user defaults to "admin" for the
    # built-in accounts, and to nobody with an identity provider).
    c.Authenticator.admin_users = {cfg.admin_user} if cfg.admin_user else set()
    # One name, one Unix account: names the account scheme cannot map one-to-one are refused
    # when the user is created, signs up or logs in.
    c.Authenticator.username_pattern = username_pattern(cfg.system_user_prefix)
    c.HimaliaAuthenticator.username_help = username_help(cfg.system_user_prefix)
    if cfg.authenticator == "oauth":
        # Who may log in is the admin's choice: allowed_users or allow_all.
        c.JupyterHub.authenticator_class = "himalia.hub.auth.HimaliaOAuthenticator"
        c.HimaliaOAuthenticator.default_role = cfg.default_role
        return
    # Admin approval (or an invitation) decides who gets in.
    c.Authenticator.allow_all = True
    c.JupyterHub.authenticator_class = "himalia.hub.auth.HimaliaAuthenticator"
    c.HimaliaAuthenticator.bootstrap_password_file = str(paths.bootstrap_password)
    c.HimaliaAuthenticator.bootstrap_password_lifetime = cfg.bootstrap_password_lifetime
    c.HimaliaAuthenticator.default_role = cfg.default_role
    c.HimaliaAuthenticator.enable_signup = True
    c.HimaliaAuthenticator.open_signup = False
    c.HimaliaAuthenticator.minimum_password_length = 8
    c.HimaliaAuthenticator.check_common_password = True


def server_token(spawner) -> str:
    """The server's own hub token (its ``JUPYTERHUB_API_TOKEN``), for MLflow's client."""
    return spawner.api_token


def default_experiment(spawner) -> str:
    """Each person's default MLflow experiment, in their own namespace (tracking/hubauth.py)."""
    return f"users/{spawner.user.name}"


def _spawner(c: Config, cfg: HimaliaConfig, paths: StatePaths, api_url: str,
             tracking_url: str) -> None:
    env = {
        "HIMALIA_API_URL": api_url,
        # Deployed models, at the same host as the API: <hub>/models/<name>/predict.
        "HIMALIA_MODELS_URL": api_url.split("/services/", 1)[0] + "/models/",
        # Plain `import mlflow` works in every kernel and job: the platform's server, the
        # server's token (sent as a bearer token), and the person's own default experiment.
        "MLFLOW_TRACKING_URI": tracking_url,
        "MLFLOW_TRACKING_TOKEN": server_token,
        "MLFLOW_EXPERIMENT_NAME": default_experiment,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    if cfg.backend == "local":
        c.JupyterHub.spawner_class = "himalia.hub.spawners.HimaliaLocalSpawner"
        c.HimaliaLocalSpawner.system_users = cfg.system_users
        c.HimaliaLocalSpawner.system_user_prefix = cfg.system_user_prefix
        c.HimaliaLocalSpawner.shared_home_root = str(paths.users)
        c.HimaliaLocalSpawner.account_registry = str(paths.accounts)
        # Servers, kernels and terminals run in the user overlay (`himalia up` makes it): the
        # shared packages, read-only, and each user's own packages in their home.
        overlay = userenv.user_environment(userenv.overlay_location(paths.root))
        c.HimaliaLocalSpawner.user_environment = str(overlay.root)
        c.Spawner.cmd = overlay.server_command()
    elif cfg.backend == "docker":
        c.JupyterHub.spawner_class = "himalia.hub.backends.HimaliaDockerSpawner"
        c.DockerSpawner.network_name = cfg.docker_network
        # An init process reaps what kernels leave behind, as docker-stacks' tini does.
        host_config: dict = {"init": True}
        if cfg.docker_network != "host":
            # host-gateway makes host.docker.internal resolve on Linux engines too.
            host_config["extra_hosts"] = {"host.docker.internal": "host-gateway"}
        c.DockerSpawner.extra_host_config = host_config
    else:
        c.JupyterHub.spawner_class = "himalia.hub.backends.HimaliaKubeSpawner"
    if cfg.profiles:
        c.Spawner.himalia_profiles = cfg.profiles
    c.Spawner.default_url = "/lab"
    # Servers may have no route to the internet: no news feed, update checks or PyPI browsing.
    c.Spawner.args = [
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        f"--HubOAuth.cache_max_age={SERVER_TOKEN_CACHE_SECONDS}",
        # The himalia kernel (magics loaded) is the default and stands in for plain Python.
        f"--ServerApp.kernel_spec_manager_class={KERNEL_SPEC_MANAGER}",
        "--MappingKernelManager.default_kernel_name=himalia",
    ]
    c.Spawner.environment = env
    c.Spawner.server_token_scopes = SERVER_TOKEN_SCOPES
    c.Spawner.start_timeout = 60
    c.Spawner.http_timeout = 60


def _service_url_for_servers(cfg: HimaliaConfig, servers_reach: str, service: str = API_SERVICE) -> str:
    """Where kernels and servers reach a service (its own subdomain with subdomain_host)."""
    if cfg.subdomain_host:
        parsed = urlparse(cfg.subdomain_host)
        host = subdomain_hook_idna(service, parsed.hostname, "service")
        port = f":{parsed.port}" if parsed.port else ""
        return f"{parsed.scheme}://{host}{port}/services/{service}/"
    return f"{servers_reach}/services/{service}/"


def _profile_names(cfg: HimaliaConfig) -> tuple[list[str], str]:
    from .profiles import parse_profiles

    profiles = parse_profiles(cfg.profiles) if cfg.profiles else []
    default = next((p.name for p in profiles if p.default), profiles[0].name if profiles else "")
    return [p.name for p in profiles], default


def _jobs_api_environment(cfg: HimaliaConfig, paths: StatePaths) -> dict:
    names, default = _profile_names(cfg)
    return {
        "HIMALIA_JOBS_DIR": str(paths.jobs),
        "HIMALIA_JOBS_SOCKET": str(paths.jobs_socket),
        "HIMALIA_JOBS_LIMITS": json.dumps({"profiles": names, "default_profile": default,
                                           "max_notebook_bytes": cfg.job_max_notebook_bytes}),
    }


def _files_owner(cfg: HimaliaConfig, as_root: bool) -> tuple[int | None, int | None]:
    """The API's account (uid, gid), which must read what the root services write for it and
    may open their control sockets; (None, None) without root or before it exists."""
    import pwd

    if as_root:
        try:
            account = pwd.getpwnam(cfg.service_user)
            return account.pw_uid, account.pw_gid
        except KeyError:
            pass
    return None, None


def _jobs_runner(cfg: HimaliaConfig, paths: StatePaths, runtime: Runtime, as_root: bool,
                 python: str, api_url: str, tracking_url: str) -> dict:
    """The job runner service: root when the platform is (kernels run as each run's owner)."""
    files_uid, files_gid = _files_owner(cfg, as_root)
    local = cfg.backend == "local"
    runner = {
        "state_dir": str(paths.root),
        "db_url": cfg.resolved_api_db_url(runtime.api_db_password),
        "jobs_dir": str(paths.jobs),
        "socket": str(paths.jobs_socket),
        "api_url": api_url,
        "tracking_url": tracking_url,
        "system_users": bool(cfg.system_users and as_root),
        "user_prefix": cfg.system_user_prefix,
        "account_registry": str(paths.accounts),
        "user_environment": str(userenv.user_environment(userenv.overlay_location(paths.root)).root)
                            if local else "",
        "profiles": list(cfg.profiles),
        "pool_sizes": dict(cfg.job_kernel_pool),
        "kernel_idle_seconds": cfg.job_kernel_idle_seconds,
        "max_parallel": cfg.job_max_parallel,
        "misfire_grace_seconds": cfg.job_misfire_grace_seconds,
        "smtp": dict(cfg.smtp),
        "files_uid": files_uid,
        "files_gid": files_gid,
        "public_url": cfg.resolved_public_url(),
    }
    return {
        "name": JOBS_SERVICE,
        "display": False,
        "info": {"description": "Scheduled notebook jobs (papermill)"},
        "command": [python, "-m", TIED, "himalia.hub.jobs.runner"],
        "environment": {"HIMALIA_JOBS_RUNNER": json.dumps(runner)},
        **({"cwd": str(paths.jobs)} if as_root else {}),
    }


def _deployments_api_environment(paths: StatePaths) -> dict:
    return {"HIMALIA_DEPLOYMENTS_DIR": str(paths.deployments),
            "HIMALIA_DEPLOYMENTS_SOCKET": str(paths.deployments_socket)}


def _features_api_environment(cfg: HimaliaConfig, paths: StatePaths, runtime: Runtime,
                              as_root: bool) -> dict:
    """The feature store's repository: Feast's SQL registry in the API database."""
    settings = FeatureSettings(
        root=paths.features,
        registry_url=cfg.resolved_api_db_url(runtime.api_db_password),
        online=online_config(cfg.feature_online_store, paths.features),
        offline=dict(cfg.feature_offline_store),
        system_users=bool(cfg.system_users and as_root),
        user_prefix=cfg.system_user_prefix,
        users_root=str(paths.users),
    )
    return {"HIMALIA_FEATURES": json.dumps(settings.to_json())}


def _deployment_manager(cfg: HimaliaConfig, paths: StatePaths, runtime: Runtime, as_root: bool,
                        python: str) -> dict:
    """The deployment manager and model router: root when the platform is (model servers run
    as their deployment's owner), behind the proxy at /models/ (Proxy.extra_routes)."""
    files_uid, files_gid = _files_owner(cfg, as_root)
    manager = {
        "state_dir": str(paths.root),
        "db_url": cfg.resolved_api_db_url(runtime.api_db_password),
        "root": str(paths.deployments),
        "socket": str(paths.deployments_socket),
        # Builds read models from MLflow directly on loopback (with the owner's token).
        "tracking_url": f"http://127.0.0.1:{runtime.tracking_port}/services/{TRACKING_SERVICE}",
        "system_users": bool(cfg.system_users and as_root),
        "user_prefix": cfg.system_user_prefix,
        "account_registry": str(paths.accounts),
        "files_uid": files_uid,
        "files_gid": files_gid,
        "start_timeout": cfg.deploy_start_timeout,
        "smoke_timeout": cfg.deploy_smoke_timeout,
        # Versions that declare feature refs get them filled in from the online store.
        "features_online": online_config(cfg.feature_online_store, paths.features),
    }
    return {
        "name": MODELS_SERVICE,
        "display": False,
        "info": {"description": "Model deployments (BentoML) at /models/<name>/"},
        "url": f"http://127.0.0.1:{runtime.models_port}",
        "command": [python, "-m", TIED, "himalia.hub.deployments.manager"],
        "environment": {"HIMALIA_DEPLOYMENTS": json.dumps(manager)},
        **({"cwd": str(paths.deployments)} if as_root else {}),
    }


def build_hub_config(cfg: HimaliaConfig, runtime: Runtime, as_root: bool | None = None,
                     role_members: dict[str, list[str]] | None = None) -> Config:
    """The complete JupyterHub configuration of one installation.

    ``as_root`` (default: whether this process is root) runs the platform's services as
    ``cfg.service_user`` instead of the hub's own account. ``role_members`` lists who holds
    the scientist and viewer roles now (``auth.role_members``): the hub resets every configured
    role to the members its configuration lists.
    """
    paths = StatePaths(cfg.state_dir)
    role_members = role_members or {}
    as_root = os.geteuid() == 0 if as_root is None else as_root
    c = Config()
    local_public = cfg.local_url()

    c.JupyterHub.bind_url = cfg.bind_url()
    if cfg.public_url:
        # An https public URL makes the hub's cookies Secure.
        c.JupyterHub.public_url = cfg.resolved_public_url() + "/"
    if cfg.subdomain_host:
        c.JupyterHub.subdomain_host = cfg.subdomain_host
    if cfg.backend == "local":
        c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{runtime.hub_port}"
        servers_reach = local_public
    elif cfg.backend == "docker" and cfg.docker_network == "host":
        # Containers on the host network reach everything on loopback; nothing else listens.
        host = cfg.server_connect_host or "127.0.0.1"
        c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{runtime.hub_port}"
        c.JupyterHub.hub_connect_url = f"http://{host}:{runtime.hub_port}"
        servers_reach = local_public if host == "127.0.0.1" else f"http://{host}:{cfg.port}"
    else:
        # Containers and pods reach the hub and the proxy through the host's network.
        host = cfg.server_connect_host or ("host.docker.internal" if cfg.backend == "docker" else "127.0.0.1")
        c.JupyterHub.hub_bind_url = f"http://0.0.0.0:{runtime.hub_port}"
        c.JupyterHub.hub_connect_url = f"http://{host}:{runtime.hub_port}"
        servers_reach = f"http://{host}:{cfg.port}"
    c.JupyterHub.db_url = cfg.resolved_db_url()
    c.JupyterHub.cookie_secret_file = str(paths.cookie_secret)
    c.JupyterHub.pid_file = str(paths.run / "jupyterhub.pid")
    # Servers and proxy outlive a hub restart; `himalia up` stops them on shutdown.
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.cleanup_proxy = False
    c.JupyterHub.upgrade_db = True
    c.JupyterHub.template_paths = [str(Path(__file__).with_name("templates"))]
    c.JupyterHub.redirect_to_server = False
    c.ConfigurableHTTPProxy.should_start = False
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{runtime.proxy_api_port}"

    _authenticator(c, cfg, paths)
    _spawner(c, cfg, paths, api_url=_service_url_for_servers(cfg, servers_reach),
             tracking_url=_service_url_for_servers(cfg, servers_reach, TRACKING_SERVICE).rstrip("/"))

    python = sys.executable
    # The hub needs root to start servers as their users; its services do not.
    service_account = {"user": cfg.service_user, "cwd": str(paths.api)} if as_root else {}
    services = [
        {
            "name": API_SERVICE,
            "display": True,
            "info": {"description": "himalia platform API", "version": __version__},
            "url": f"http://127.0.0.1:{runtime.api_port}",
            "command": [python, "-m", TIED, "himalia.hub.services.api"],
            "environment": {
                "HIMALIA_API_DB_URL": cfg.resolved_api_db_url(runtime.api_db_password),
                "HIMALIA_PROXY_URL": local_public,
                "HIMALIA_PUBLIC_URL": cfg.resolved_public_url(),
                "HIMALIA_API_COOKIE_SECRET": runtime.api_cookie_secret,
            },
            "oauth_no_confirm": True,
            "oauth_client_allowed_scopes": BASE_SCOPES,
            **service_account,
        },
        {
            "name": TRACKING_SERVICE,
            "display": True,
            "info": {"description": "MLflow experiment tracking and model registry"},
            "url": f"http://127.0.0.1:{runtime.tracking_port}",
            "command": [python, "-m", TIED, "himalia.hub.tracking.server"],
            "environment": {
                "HIMALIA_TRACKING_DIR": str(paths.tracking),
                "HIMALIA_TRACKING_DB_URL": cfg.resolved_tracking_db_url(),
                "HIMALIA_PUBLIC_URL": cfg.resolved_public_url(),
            },
            "oauth_no_confirm": True,
            # The browser's token must show the person's roles to MLflow's authorization.
            "oauth_client_allowed_scopes": [*BASE_SCOPES, _ACCESS_TRACKING],
            **({"user": cfg.service_user, "cwd": str(paths.tracking)} if as_root else {}),
        },
        _jobs_runner(cfg, paths, runtime, as_root, python,
                     api_url=_service_url_for_servers(cfg, servers_reach),
                     tracking_url=_service_url_for_servers(cfg, servers_reach, TRACKING_SERVICE).rstrip("/")),
        _deployment_manager(cfg, paths, runtime, as_root, python),
        *dashboards_server.hub_services(cfg, paths, runtime, as_root, python),
        *cluster_gateway.hub_services(cfg, paths, runtime, as_root, python),
        {"name": ADMIN_SERVICE, "api_token": runtime.admin_token},
    ]
    services[0]["environment"].update(_jobs_api_environment(cfg, paths))
    services[0]["environment"].update(_deployments_api_environment(paths))
    services[0]["environment"].update(_features_api_environment(cfg, paths, runtime, as_root))
    services[0]["environment"]["HIMALIA_LABELS"] = json.dumps(LabelSettings(
        system_users=bool(cfg.system_users and as_root), user_prefix=cfg.system_user_prefix,
        users_root=str(paths.users)).to_json())
    services[0]["environment"]["HIMALIA_DASHBOARDS"] = json.dumps(DashboardSettings(
        public_url=cfg.resolved_public_url(), system_users=bool(cfg.system_users and as_root),
        user_prefix=cfg.system_user_prefix, users_root=str(paths.users)).to_json())
    # Deployed models answer at /models/<name>/ (the router of the deployment manager).
    c.Proxy.extra_routes = {"/models/": f"http://127.0.0.1:{runtime.models_port}"}
    if cfg.cull_idle_timeout > 0:
        services.append(
            {
                "name": CULLER_SERVICE,
                "command": [python, "-m", TIED, "jupyterhub_idle_culler",
                            f"--timeout={cfg.cull_idle_timeout}"],
                **service_account,
            }
        )
    for service in services:
        if "url" in service and "command" in service:
            # How long the hub waits for a managed service to answer before it gives up and
            # exits (JupyterHub's default is 30 s; MLflow alone takes 25 s on a busy 2-core
            # machine).
            service.setdefault("timeout", SERVICE_START_TIMEOUT)
    c.JupyterHub.services = services

    # Admins are a group (as in JupyterHub's admin page); scientists and viewers hold their role
    # directly, given by invitations, the People page or `himalia users role`. The hub sets each
    # role below to exactly the members listed, so they list the current ones (role_members).
    c.JupyterHub.load_groups = {
        ADMIN_GROUP: {"users": [cfg.admin_user] if cfg.admin_user else []},
    }
    roles = [
        {"name": "user", "description": "Any logged-in person", "scopes": BASE_SCOPES},
        {"name": "admin", "groups": [ADMIN_GROUP], "services": [ADMIN_SERVICE]},
        {"name": "scientist", "description": "Own servers, jobs, runs, deployments, labels",
         "scopes": SCIENTIST_SCOPES, "users": role_members.get("scientist", [])},
        {"name": "viewer", "description": "Dashboards and published job outputs only",
         "scopes": VIEWER_SCOPES, "users": role_members.get("viewer", [])},
        {"name": "labeler", "description": "Labels the label sets shared with them, in the browser",
         "scopes": LABELER_SCOPES, "users": role_members.get("labeler", [])},
        {"name": "himalia-jobs", "description": "The job runner: a token per run for its owner",
         "scopes": ["tokens", "read:users"], "services": [JOBS_SERVICE]},
        {"name": MODELS_SERVICE, "description": "Deployment manager: build tokens of owners, "
         "checking callers' tokens", "scopes": ["tokens", "read:users"], "services": [MODELS_SERVICE]},
        {"name": "himalia-api", "description": "The platform API service",
         "scopes": ["list:services", "read:services", "list:users", "read:users", "read:groups"],
         "services": [API_SERVICE]},
    ]
    roles += dashboards_server.hub_roles(cfg) + cluster_gateway.hub_roles(cfg)
    if cfg.cull_idle_timeout > 0:
        roles.append(
            {"name": "idle-culler", "description": "Stops idle servers",
             "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
             "services": [CULLER_SERVICE]}
        )
    c.JupyterHub.load_roles = roles

    for section, values in cfg.extra_hub_config.items():
        for key, value in values.items():
            c[section][key] = value
    return c


def configure(c: Config, env: dict | None = None) -> None:
    """Fill the hub's config object ``c``; the environment is read here and nowhere else."""
    env = os.environ if env is None else env
    state_dir = env["HIMALIA_STATE_DIR"]
    paths = StatePaths(state_dir)
    runtime = Runtime.load(paths)
    cfg = load_himalia_config(state_dir, Config({"HimaliaConfig": runtime.overrides}))
    c.merge(build_hub_config(cfg, runtime, role_members=role_members(cfg.resolved_db_url())))
    # The admin's own settings for JupyterHub classes (authenticators, spawners) win.
    file_config = load_config_file(state_dir)
    file_config.pop("HimaliaConfig", None)
    c.merge(file_config)
