"""The dask-gateway service as data: the hub service entry ``himalia up`` declares, the gateway's
own configuration, cluster options from the profiles, per-person limits and the GPU message.

GPUs and Kubernetes do not exist here: the worker command of a GPU profile and the Kubernetes
back end's settings are tested as the exact values we would hand to dask-gateway (the latter
loaded into dask-gateway's own ``KubeClusterConfig``, which rejects unknown or mistyped values).
"""

from __future__ import annotations

import json

import pytest
from traitlets.config import Config

from himalia.hub.clusters.config import (GPU_WORKER_CLASS, ORPHAN_ENV, ClusterOptionError, GatewaySettings,
                                         cluster_options, cluster_overrides, gateway_config, gpu_problem,
                                         memory_bytes, worker_command)
from himalia.hub.clusters.kubernetes import kube_config, worker_pod_overrides
from himalia.hub.clusters.starting import first_workers
from himalia.hub.hubconfig import SERVER_TOKEN_SCOPES, Runtime, build_hub_config, load_himalia_config

PROFILES = [{"name": "cpu", "default": True}, {"name": "gpu", "gpus": 1, "image": "himalia/gpu:1",
            "node_selector": {"nvidia.com/gpu.present": "true"}}]
NO_GPU = {"gpu_check": lambda gpus: None}


def settings(**overrides) -> GatewaySettings:
    values = {"state_dir": "/srv/h", "port": 9001, "scheduler_port": 9002, "api_port": 9003,
              "proxy_port": 9004, "python": "/env/bin/python", "profiles": PROFILES,
              "default_profile": "cpu", "max_cores": 4, "max_clusters": 2, "idle_timeout": 600,
              "orphan_timeout": 60, "worker_cores": 1, "worker_memory": "2G"}
    return GatewaySettings(**{**values, **overrides})


def hub_config(tmp_path, as_root=False, **traits):
    cfg = load_himalia_config(tmp_path, Config({"HimaliaConfig": traits}))
    runtime = Runtime(hub_port=1, api_port=2, proxy_api_port=3, gateway_port=4444,
                      gateway_scheduler_port=5555)
    return build_hub_config(cfg, runtime, as_root=as_root)


def gateway_service(c) -> dict:
    return next(s for s in c.JupyterHub.services if s["name"] == "dask-gateway")


def test_the_hub_runs_the_gateway_behind_services_dask_gateway(tmp_path):
    c = hub_config(tmp_path, cluster_max_cores=3, cluster_idle_timeout=120)
    service = gateway_service(c)
    assert service["url"] == "http://127.0.0.1:4444"
    assert service["command"][1:] == ["-m", "himalia.hub.services.tied", "himalia.hub.clusters.gateway"]
    assert service["timeout"] > 30 and service["oauth_no_confirm"] is True
    s = GatewaySettings.from_json(service["environment"]["HIMALIA_GATEWAY"])
    assert (s.port, s.scheduler_port, s.max_cores, s.idle_timeout) == (4444, 5555, 3, 120)
    assert [p["name"] for p in s.profiles] == ["cpu", "gpu", "dask"] and s.default_profile == "cpu"
    role = next(r for r in c.JupyterHub.load_roles if r.get("services") == ["dask-gateway"])
    assert role["scopes"] == ["read:users"]
    # Kernels' tokens may use the gateway.
    assert "access:services!service=dask-gateway" in SERVER_TOKEN_SCOPES


def test_as_root_clusters_run_as_their_owners_or_else_as_the_service_account_never_root(tmp_path):
    with_users = gateway_service(hub_config(tmp_path, as_root=True, system_users=True))
    assert "user" not in with_users  # root, to start processes as each owner's account
    assert GatewaySettings.from_json(with_users["environment"]["HIMALIA_GATEWAY"]).system_users
    without = gateway_service(hub_config(tmp_path, as_root=True, system_users=False, service_user="svc"))
    assert without["user"] == "svc"
    assert not GatewaySettings.from_json(without["environment"]["HIMALIA_GATEWAY"]).system_users


def test_gateway_configuration_is_dask_gateways_own_with_hub_authentication():
    c = gateway_config(settings(system_users=True))
    assert c.DaskGateway.authenticator_class == "dask_gateway_server.auth.JupyterHubAuthenticator"
    assert c.JupyterHubAuthenticator.jupyterhub_service_name == "dask-gateway"
    assert c.DaskGateway.backend_class == "himalia.hub.clusters.backend.HimaliaLocalBackend"
    assert (c.Proxy.address, c.Proxy.tcp_address, c.Proxy.prefix) == (
        "127.0.0.1:9004", "127.0.0.1:9002", "/services/dask-gateway")
    assert c.HimaliaLocalBackend.system_users is True and c.HimaliaLocalBackend.max_clusters == 2
    # Owners cannot enter the state directory: private temporary folders then.
    assert c.HimaliaLocalBackend.clusters_directory == ""
    assert c.LocalClusterConfig.idle_timeout == 600
    assert c.LocalClusterConfig.scheduler_cmd == ["/env/bin/python", "-m", "distributed.cli.dask_scheduler",
                                                  "--no-dashboard", "--preload", "himalia.hub.clusters.orphans",
                                                  "--preload", "himalia.hub.clusters.starting"]
    assert gateway_config(settings()).HimaliaLocalBackend.clusters_directory == "/srv/h/clusters/work"


def test_a_cluster_gets_the_profiles_workers_and_the_persons_limit():
    values = cluster_overrides(settings(), "cpu", 2, **NO_GPU)
    assert values["worker_cores"] == 1 and values["worker_memory"] == 2 * 1024 ** 3
    assert values["cluster_max_workers"] == 4
    assert values["worker_cmd"] == ["/env/bin/python", "-m", "distributed.cli.dask_worker", "--no-dashboard"]
    assert values["environment"][ORPHAN_ENV] == "60" and values["idle_timeout"] == 600
    # The scheduler asks for a fixed-size cluster's workers itself; an adaptive one starts none.
    assert values["environment"]["HIMALIA_CLUSTER_WORKERS"] == "2"
    adaptive = cluster_overrides(settings(), "cpu", 3, adaptive=True, **NO_GPU)
    assert adaptive["environment"]["HIMALIA_CLUSTER_WORKERS"] == "0"
    assert first_workers({"HIMALIA_CLUSTER_WORKERS": "2"}) == 2
    # Nannies fork their workers (no second interpreter start); GPU workers are spawned fresh.
    assert values["environment"]["DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"] == "fork"
    gpu = cluster_overrides(settings(), "gpu", 1, **NO_GPU)
    assert "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD" not in gpu["environment"]
    assert first_workers({}) == first_workers({"HIMALIA_CLUSTER_WORKERS": "x"}) == 0


@pytest.mark.parametrize("limits, wanted, most", [
    ({"max_cores": 4}, 5, 4),
    ({"max_cores": 0, "max_memory": "5G"}, 3, 2),
    ({"max_cores": 8, "max_workers": 3}, 4, 3),
])
def test_asking_for_more_than_the_limits_is_refused_with_the_limit(limits, wanted, most):
    with pytest.raises(ClusterOptionError, match=f"ask for at most {most}$"):
        cluster_overrides(settings(**limits), "cpu", wanted, **NO_GPU)
    assert cluster_overrides(settings(**limits), "cpu", most, **NO_GPU)["cluster_max_workers"] == most


def test_an_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ClusterOptionError, match="unknown profile 'huge'; choose one of: cpu, gpu"):
        cluster_overrides(settings(), "huge", 1)


def test_gpu_profiles_run_dask_cuda_workers():
    values = cluster_overrides(settings(), "gpu", 1, **NO_GPU)
    assert values["worker_cmd"] == ["/env/bin/python", "-m", "distributed.cli.dask_worker", "--no-dashboard",
                                    "--worker-class", GPU_WORKER_CLASS]
    assert worker_command("python") == ["python", "-m", "distributed.cli.dask_worker", "--no-dashboard"]


def test_without_a_gpu_or_dask_cuda_the_message_says_what_is_missing():
    assert "install himalia with the 'gpu' extra" in gpu_problem(1, cuda_available=True, dask_cuda_installed=False)
    assert "no NVIDIA GPU" in gpu_problem(1, cuda_available=False, dask_cuda_installed=True)
    assert gpu_problem(0, cuda_available=False, dask_cuda_installed=False) is None
    with pytest.raises(ClusterOptionError, match="no NVIDIA GPU"):
        cluster_overrides(settings(), "gpu", 1, gpu_check=lambda n: gpu_problem(
            n, cuda_available=False, dask_cuda_installed=True))


def test_the_options_form_is_dask_gateways_and_applies_the_rules():
    options = cluster_options(settings(), gpu_check=lambda n: None)
    spec = {f["field"]: f for f in options.get_specification()}
    assert spec["profile"]["spec"]["options"] == ["cpu", "gpu"] and spec["profile"]["default"] == "cpu"
    chosen = options.parse_options({"workers": 3})
    assert options.get_configuration(chosen, user=None)["cluster_max_workers"] == 4
    assert options.get_configuration(chosen, user=None)["environment"]["HIMALIA_CLUSTER_WORKERS"] == "3"
    adaptive = options.parse_options({"workers": 3, "adaptive": True, "job_run": "17"})
    assert options.get_configuration(adaptive, user=None)["environment"]["HIMALIA_CLUSTER_WORKERS"] == "0"
    assert adaptive["job_run"] == "17" and chosen["job_run"] == ""
    with pytest.raises(ClusterOptionError):
        options.get_configuration(options.parse_options({"workers": 9}), user=None)


def test_memory_sizes():
    assert memory_bytes("2G") == 2 * 1024 ** 3 and memory_bytes("512M") == 512 * 1024 ** 2
    assert memory_bytes("") is None and memory_bytes("1.5GiB") == int(1.5 * 1024 ** 3)


def test_kubernetes_settings_from_the_profiles_load_into_dask_gateways_config():
    from dask_gateway_server.backends.kubernetes import KubeClusterConfig

    c = gateway_config(settings(backend="kubernetes"))
    assert c.DaskGateway.backend_class == "dask_gateway_server.backends.kubernetes.KubeBackend"
    loaded = KubeClusterConfig(config=c)
    assert loaded.worker_cores == 1 and loaded.worker_memory == 2 * 1024 ** 3 and loaded.idle_timeout == 600
    # The pods' scheduler loads the same plug-ins as a local one (orphans, first workers).
    assert loaded.scheduler_cmd == ["python", "-m", "distributed.cli.dask_scheduler", "--no-dashboard",
                                    "--preload", "himalia.hub.clusters.orphans",
                                    "--preload", "himalia.hub.clusters.starting"]
    assert loaded.worker_cmd == ["python", "-m", "distributed.cli.dask_worker", "--no-dashboard"]
    gpu = worker_pod_overrides(settings(), PROFILES[1])
    assert gpu["image"] == "himalia/gpu:1"
    assert gpu["worker_extra_container_config"] == {"resources": {"limits": {"nvidia.com/gpu": 1}}}
    assert gpu["worker_extra_pod_config"] == {"nodeSelector": {"nvidia.com/gpu.present": "true"}}
    KubeClusterConfig(**gpu)
    # A GPU profile's pods get dask-cuda workers (in the image's Python) and the GPU resources.
    options = kube_config(settings()).KubeBackend.cluster_options
    values = options.get_configuration(options.parse_options({"profile": "gpu", "workers": 1}), user=None)
    assert values["worker_cmd"][-2:] == ["--worker-class", GPU_WORKER_CLASS]
    assert values["image"] == "himalia/gpu:1" and values["worker_cmd"][0] == "python"
    assert json.dumps(values["worker_extra_container_config"]) == '{"resources": {"limits": {"nvidia.com/gpu": 1}}}'
