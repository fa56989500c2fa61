"""The MLflow service as data: the command, environment and auth configuration handed to MLflow,
the hub service and scopes around it, and what every spawned server gets to use it."""

from __future__ import annotations

import configparser
from pathlib import Path
from types import SimpleNamespace

from himalia.hub.config import HimaliaConfig
from himalia.hub.hubconfig import (SCIENTIST_SCOPES, SERVER_TOKEN_SCOPES, VIEWER_SCOPES, Runtime,
                                   build_hub_config)
from himalia.hub.tracking import server
from himalia.hub.tracking.hubauth import namespace_violation

ACCESS = "access:services!service=mlflow"


def make(tmp_path, as_root=False, **settings):
    cfg = HimaliaConfig(state_dir=str(tmp_path), **settings)
    runtime = Runtime(hub_port=1111, api_port=2222, proxy_api_port=3333, tracking_port=4444,
                      admin_token="t0k", api_cookie_secret="c00k1e")
    return build_hub_config(cfg, runtime, as_root=as_root)


def service(c) -> dict:
    return {s["name"]: s for s in c.JupyterHub.services}["mlflow"]


def test_the_server_runs_behind_the_proxy_with_its_auth_app_and_served_artifacts(tmp_path):
    argv = server.server_command("/py", port=4444, backend_uri="sqlite:///x.db",
                                 artifacts=tmp_path / "artifacts")
    flags = [a for a in argv[4:] if a == "--serve-artifacts"]
    rest = [a for a in argv[4:] if a != "--serve-artifacts"]
    options = dict(zip(rest[::2], rest[1::2]))
    assert argv[:4] == ["/py", "-m", "mlflow", "server"]
    assert options["--app-name"] == "basic-auth" and options["--host"] == "127.0.0.1"
    assert options["--static-prefix"] == "/services/mlflow" and options["--workers"] == "1"
    assert options["--artifacts-destination"] == (tmp_path / "artifacts").as_uri()
    assert flags == ["--serve-artifacts"] and "--allowed-hosts" not in argv


def test_a_public_host_is_allowed_besides_mlflows_defaults():
    assert server.allowed_hosts("http://127.0.0.1:8000") == []
    hosts = server.allowed_hosts("https://ml.example.org:8443")
    assert "ml.example.org" in hosts and "ml.example.org:8443" in hosts and "127.0.0.1:*" in hosts


def test_auth_config_reads_back_with_read_only_defaults_and_the_hub_function():
    parsed = configparser.ConfigParser()
    parsed.read_string(server.auth_config("sqlite:///auth.db", "pw"))
    section = parsed["mlflow"]
    assert section["default_permission"] == "READ"
    assert section["authorization_function"] == "himalia.hub.tracking.hubauth:authenticate"
    assert "." in section["admin_username"]  # a name no hub user can have


def test_every_route_without_a_rule_is_refused_and_nothing_goes_to_a_home(tmp_path):
    env = server.server_environment(tmp_path / "basic_auth.ini", tmp_path)
    assert env["MLFLOW_BASIC_AUTH_FAIL_CLOSED"] == "true"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["HOME"] == str(tmp_path)
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_the_hub_runs_mlflow_as_a_service_with_its_own_folder_and_store(tmp_path):
    s = service(make(tmp_path))
    assert s["url"] == "http://127.0.0.1:4444"
    assert s["command"][-1] == "himalia.hub.tracking.server"
    assert s["environment"]["HIMALIA_TRACKING_DIR"] == str(tmp_path / "tracking")
    assert s["environment"]["HIMALIA_TRACKING_DB_URL"] == f"sqlite:///{tmp_path / 'tracking' / 'mlflow.db'}"
    assert ACCESS in s["oauth_client_allowed_scopes"]
    assert "read:roles:users!user" in s["oauth_client_allowed_scopes"]
    pg = "postgresql+psycopg://mlflow@db/mlflow"
    assert service(make(tmp_path, tracking_db_url=pg))["environment"]["HIMALIA_TRACKING_DB_URL"] == pg


def test_as_root_it_runs_as_the_service_account_in_its_folder(tmp_path):
    s = service(make(tmp_path, as_root=True, service_user="svc"))
    assert s["user"] == "svc" and s["cwd"] == str(tmp_path / "tracking")


def test_scientists_and_their_servers_may_use_it_viewers_may_not():
    assert ACCESS in SCIENTIST_SCOPES and ACCESS in SERVER_TOKEN_SCOPES
    assert ACCESS not in VIEWER_SCOPES


def test_every_server_gets_the_tracking_uri_its_token_and_an_experiment_of_its_own(tmp_path):
    env = make(tmp_path, port=8123).Spawner.environment
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:8123/services/mlflow"
    spawner = SimpleNamespace(api_token="server-token", user=SimpleNamespace(name="ada"))
    assert env["MLFLOW_TRACKING_TOKEN"](spawner) == "server-token"
    assert env["MLFLOW_EXPERIMENT_NAME"](spawner) == "users/ada"


def test_with_subdomains_the_tracking_uri_is_the_services_own_host(tmp_path):
    env = make(tmp_path, subdomain_host="https://hub.example.org").Spawner.environment
    assert env["MLFLOW_TRACKING_URI"] == "https://mlflow--service.hub.example.org/services/mlflow"


def test_users_namespaces_belong_to_their_person():
    create = "/services/mlflow/api/2.0/mlflow/experiments/create"
    rename = "/services/mlflow/ajax-api/2.0/mlflow/experiments/update"
    assert namespace_violation(create, {"name": "users/ada"}, "ada", False) is None
    assert namespace_violation(create, {"name": "users/ada/churn"}, "ada", False) is None
    assert namespace_violation(create, {"name": "churn"}, "ada", False) is None
    assert "belong to their person" in namespace_violation(create, {"name": "users/bob"}, "ada", False)
    assert namespace_violation(create, {"name": "users/adam"}, "ada", False)
    assert namespace_violation(rename, {"experiment_id": "1", "new_name": "users/bob/x"}, "ada", False)
    assert namespace_violation(create, {"name": "users/bob"}, "ada", True) is None
    assert namespace_violation("/services/mlflow/api/2.0/mlflow/runs/create", {"name": "users/bob"},
                               "ada", False) is None


def test_the_service_folder_is_the_platforms(tmp_path):
    from himalia.hub.config import StatePaths

    paths = StatePaths(tmp_path)
    assert paths.tracking in paths.service_folders() and paths.api in paths.service_folders()
    assert Path(paths.tracking).parent == paths.root
