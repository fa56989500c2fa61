"""The JupyterHub configuration we generate, checked as data."""

from __future__ import annotations

from traitlets.config import Config

from himalia.hub.config import HimaliaConfig
from himalia.hub.hubconfig import SERVER_TOKEN_SCOPES, Runtime, build_hub_config, load_himalia_config


def make(tmp_path, as_root=False, **settings):
    cfg = HimaliaConfig(state_dir=str(tmp_path), **settings)
    runtime = Runtime(hub_port=1111, api_port=2222, proxy_api_port=3333, admin_token="t0k",
                      api_cookie_secret="c00k1e")
    return build_hub_config(cfg, runtime, as_root=as_root)


def roles(c) -> dict:
    return {r["name"]: r for r in c.JupyterHub.load_roles}


def test_viewer_and_default_user_roles_cannot_spawn(tmp_path):
    c = make(tmp_path)
    r = roles(c)
    for name in ("user", "viewer"):
        assert not any(s.startswith(("servers", "access:servers")) for s in r[name]["scopes"]), name
    assert "servers!user" in r["scientist"]["scopes"]
    # Scientists and viewers hold their role directly (no group: cheaper hub lookups). The hub
    # resets a configured role to the members listed: they are the current ones (none here).
    for name in ("scientist", "viewer"):
        assert "groups" not in r[name] and r[name]["users"] == []
    assert r["admin"]["groups"] == ["admins"]
    assert set(c.JupyterHub.load_groups) == {"admins"}
    assert r["admin"] == {"name": "admin", "groups": ["admins"], "services": ["himalia-admin"]}


def test_servers_and_proxy_survive_hub_restarts(tmp_path):
    c = make(tmp_path)
    assert c.JupyterHub.cleanup_servers is False
    assert c.JupyterHub.cleanup_proxy is False
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:3333"
    assert c.JupyterHub.hub_bind_url == "http://127.0.0.1:1111"


def test_services_api_admin_token_and_culler(tmp_path):
    c = make(tmp_path, cull_idle_timeout=120)
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services["himalia"]["url"] == "http://127.0.0.1:2222"
    assert services["himalia"]["environment"]["HIMALIA_API_DB_URL"].startswith("sqlite:///")
    assert services["himalia-admin"]["api_token"] == "t0k"
    assert "--timeout=120" in services["idle-culler"]["command"]
    assert {"delete:servers", "list:users"} <= set(roles(c)["idle-culler"]["scopes"])
    assert "idle-culler" not in {s["name"] for s in make(tmp_path, cull_idle_timeout=0).JupyterHub.services}


def test_on_the_hubs_postgres_the_api_logs_in_as_its_own_role(tmp_path):
    url = "postgresql://postgres@127.0.0.1:5432/hub"
    cfg = HimaliaConfig(state_dir=str(tmp_path), db_url=url)
    runtime = Runtime(hub_port=1, api_port=2, proxy_api_port=3, api_db_password="s3cret")
    c = build_hub_config(cfg, runtime)
    assert c.JupyterHub.db_url == url
    services = {s["name"]: s for s in c.JupyterHub.services}
    api_url = services["himalia"]["environment"]["HIMALIA_API_DB_URL"]
    assert api_url == "postgresql://himalia_api_hub:s3cret@127.0.0.1:5432/hub"
    # The password travels in the environment, never on a command line.
    assert not any("s3cret" in arg for s in services.values() for arg in s.get("command", []))


def test_kernel_token_can_reach_the_api_and_see_its_groups(tmp_path):
    c = make(tmp_path)
    assert c.Spawner.server_token_scopes == SERVER_TOKEN_SCOPES
    assert "access:services!service=himalia" in SERVER_TOKEN_SCOPES
    assert "read:users:groups!user" in SERVER_TOKEN_SCOPES
    assert c.Spawner.environment["HIMALIA_API_URL"].endswith("/services/himalia/")


def test_native_auth_requires_approval_and_strong_passwords(tmp_path):
    c = make(tmp_path, default_role="viewer")
    assert c.JupyterHub.authenticator_class == "himalia.hub.auth.HimaliaAuthenticator"
    assert c.HimaliaAuthenticator.open_signup is False
    assert c.HimaliaAuthenticator.default_role == "viewer"
    assert c.HimaliaAuthenticator.minimum_password_length >= 8
    assert make(tmp_path, authenticator="oauth").JupyterHub.authenticator_class.endswith("HimaliaOAuthenticator")


def test_backends_select_spawner_classes(tmp_path):
    assert make(tmp_path, backend="docker").JupyterHub.spawner_class.endswith("HimaliaDockerSpawner")
    assert make(tmp_path, backend="kubernetes").JupyterHub.spawner_class.endswith("HimaliaKubeSpawner")
    local = make(tmp_path, system_users=False)
    assert local.JupyterHub.spawner_class.endswith("HimaliaLocalSpawner")
    assert local.HimaliaLocalSpawner.system_users is False


def test_state_dir_config_file_and_command_line_overrides(tmp_path):
    (tmp_path / "himalia_config.py").write_text("c.HimaliaConfig.port = 9001\nc.HimaliaConfig.admin_user = 'root2'\n")
    cfg = load_himalia_config(tmp_path, Config({"HimaliaConfig": {"port": 9002}}))
    assert cfg.port == 9002
    assert cfg.admin_user == "root2"
    assert cfg.state_dir == str(tmp_path.resolve())


def test_servers_do_not_reach_for_the_internet(tmp_path):
    args = make(tmp_path).Spawner.args
    assert "--LabApp.news_url=None" in args
    assert "--LabApp.extension_manager=readonly" in args


def test_config_file_settings_for_hub_classes_reach_the_hub(tmp_path):
    from himalia.hub.hubconfig import configure

    (tmp_path / "himalia_config.py").write_text(
        "c.HimaliaConfig.authenticator = 'oauth'\n"
        "c.HimaliaConfig.admin_user = 'ada'\n"
        "c.HimaliaOAuthenticator.client_id = 'himalia-client'\n"
        "c.HimaliaOAuthenticator.allowed_users = {'ada', 'bob'}\n"
    )
    (tmp_path / "admin-token").write_text("t0k\n")
    (tmp_path / "run").mkdir()
    Runtime(hub_port=1, api_port=2, proxy_api_port=3, overrides={"port": 8123}).save(tmp_path / "run" / "runtime.json")
    c = Config()
    configure(c, {"HIMALIA_STATE_DIR": str(tmp_path)})
    assert c.JupyterHub.authenticator_class == "himalia.hub.auth.HimaliaOAuthenticator"
    assert c.HimaliaOAuthenticator.client_id == "himalia-client"
    assert c.HimaliaOAuthenticator.allowed_users == {"ada", "bob"}
    assert c.HimaliaOAuthenticator.default_role == "scientist"
    assert c.Authenticator.admin_users == {"ada"}
    # OAuth mode does not let everyone in: the admin chooses who is allowed.
    assert "allow_all" not in c.Authenticator
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8123"
    assert oct((tmp_path / "run" / "runtime.json").stat().st_mode & 0o777) == "0o600"


def test_group_based_oauth_settings_are_reported_not_passed_through():
    from himalia.hub.hubconfig import unsupported_settings

    problems = unsupported_settings(Config({"HimaliaOAuthenticator": {"allowed_groups": {"ml"}}}))
    assert len(problems) == 1 and "manage_groups" in problems[0] and "allowed_users" in problems[0]
    assert unsupported_settings(Config({"HimaliaOAuthenticator": {"allowed_users": {"a"}}})) == []


def test_with_an_identity_provider_nobody_is_admin_by_default(tmp_path):
    c = make(tmp_path, authenticator="oauth")
    assert c.Authenticator.admin_users == set()
    assert c.JupyterHub.load_groups["admins"] == {"users": []}
    native = make(tmp_path)
    assert native.Authenticator.admin_users == {"admin"}
    assert native.JupyterHub.load_groups["admins"] == {"users": ["admin"]}


def test_as_root_the_services_run_as_the_service_account(tmp_path):
    services = {s["name"]: s for s in make(tmp_path, as_root=True, service_user="himalia-svc").JupyterHub.services}
    for name in ("himalia", "idle-culler"):
        assert services[name]["user"] == "himalia-svc"
        assert services[name]["cwd"] == str(tmp_path / "api")
    assert services["himalia"]["environment"]["HIMALIA_API_COOKIE_SECRET"] == "c00k1e"
    assert "user" not in {s["name"]: s for s in make(tmp_path).JupyterHub.services}["himalia"]


def test_runtime_json_never_holds_a_secret():
    runtime = Runtime(hub_port=1, api_port=2, proxy_api_port=3, admin_token="a",
                      api_cookie_secret="b", api_db_password="c")
    assert set(runtime.public_fields()) == {"hub_port", "api_port", "proxy_api_port", "tracking_port", "models_port",
                                            "dashboards_port", "gateway_port", "gateway_scheduler_port",
                                            "overrides"}


def test_names_are_limited_to_what_maps_onto_one_unix_account(tmp_path):
    import re

    c = make(tmp_path)
    pattern = re.compile(c.Authenticator.username_pattern)
    assert pattern.match("ann-lee") and pattern.match("a" * 24)
    for bad in ("ann.lee", "ann+lee", "a" * 25, "Ann"):
        assert not pattern.match(bad), bad
    assert re.compile(make(tmp_path, system_user_prefix="u-").Authenticator.username_pattern).match("a" * 30)


def test_revoked_tokens_stop_working_on_users_servers_within_seconds(tmp_path):
    assert "--HubOAuth.cache_max_age=10" in make(tmp_path).Spawner.args


def test_https_public_url_and_subdomains(tmp_path):
    c = make(tmp_path, public_url="https://hub.example.org")
    assert c.JupyterHub.public_url == "https://hub.example.org/"
    api = {s["name"]: s for s in c.JupyterHub.services}["himalia"]
    assert api["environment"]["HIMALIA_PUBLIC_URL"] == "https://hub.example.org"
    sub = make(tmp_path, subdomain_host="https://hub.example.org")
    assert sub.JupyterHub.subdomain_host == "https://hub.example.org"
    # With subdomains the API has its own origin, apart from every user's server.
    assert sub.Spawner.environment["HIMALIA_API_URL"] == "https://himalia--service.hub.example.org/services/himalia/"
    tls = make(tmp_path, ssl_cert="/c.pem", ssl_key="/k.pem")
    assert tls.JupyterHub.bind_url == "https://127.0.0.1:8000"


def test_docker_on_the_host_network_keeps_everything_on_loopback(tmp_path):
    c = make(tmp_path, backend="docker")
    assert c.DockerSpawner.network_name == "host"
    assert c.JupyterHub.hub_bind_url == "http://127.0.0.1:1111"
    assert c.JupyterHub.hub_connect_url == "http://127.0.0.1:1111"
    assert c.DockerSpawner.extra_host_config == {"init": True}
    assert c.Spawner.environment["HIMALIA_API_URL"] == "http://127.0.0.1:8000/services/himalia/"


def test_docker_servers_reach_hub_and_api_through_the_host_gateway(tmp_path):
    c = make(tmp_path, backend="docker", ip="0.0.0.0", docker_network="bridge")
    assert c.DockerSpawner.network_name == "bridge"
    assert c.JupyterHub.hub_bind_url == "http://0.0.0.0:1111"
    assert c.JupyterHub.hub_connect_url == "http://host.docker.internal:1111"
    assert c.DockerSpawner.extra_host_config == {
        "init": True, "extra_hosts": {"host.docker.internal": "host-gateway"}}
    assert c.Spawner.environment["HIMALIA_API_URL"] == "http://host.docker.internal:8000/services/himalia/"
    k8s = make(tmp_path, backend="kubernetes", server_connect_host="hub.himalia.svc")
    assert k8s.JupyterHub.hub_connect_url == "http://hub.himalia.svc:1111"


def test_deployed_models_are_routed_at_models_by_the_deployment_manager(tmp_path):
    import json

    cfg = HimaliaConfig(state_dir=str(tmp_path), deploy_smoke_timeout=7)
    runtime = Runtime(hub_port=1, api_port=2, proxy_api_port=3, tracking_port=4, models_port=5)
    c = build_hub_config(cfg, runtime, as_root=False)
    services = {s["name"]: s for s in c.JupyterHub.services}
    manager = services["himalia-models"]
    assert manager["url"] == "http://127.0.0.1:5"
    assert c.Proxy.extra_routes == {"/models/": "http://127.0.0.1:5"}
    settings = json.loads(manager["environment"]["HIMALIA_DEPLOYMENTS"])
    assert settings["tracking_url"] == "http://127.0.0.1:4/services/mlflow"
    assert settings["smoke_timeout"] == 7 and settings["socket"] == str(tmp_path / "deployments" / "manager.sock")
    assert "user" not in manager  # root when the platform is: it starts model servers as their owners
    api_env = services["himalia"]["environment"]
    assert api_env["HIMALIA_DEPLOYMENTS_SOCKET"] == settings["socket"]
    # It mints short-lived tokens of owners for builds and checks callers' tokens.
    assert roles(c)["himalia-models"]["scopes"] == ["tokens", "read:users"]
    # Every person's tokens may reach the router; which deployment they may call is its rule.
    for role in ("user", "scientist", "viewer"):
        assert "access:services!service=himalia-models" in roles(c)[role]["scopes"]
    assert c.Spawner.environment["HIMALIA_MODELS_URL"] == "http://127.0.0.1:8000/models/"
