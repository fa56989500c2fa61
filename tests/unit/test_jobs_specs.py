"""A job run rendered for the Docker and Kubernetes back ends (tested as data: no engine or
cluster is needed to check the exact objects the platform would send)."""

from __future__ import annotations

import json

import pytest

from himalia.hub.jobs.specs import RunSpec, container_spec, kubernetes_job
from himalia.hub.profiles import DEFAULT_PROFILES, Profile, parse_profiles
from unit.test_backends import choose, kube_spawner, pod_spec  # noqa: F401 - the fixture is used


def profile(name: str) -> Profile:
    return next(p for p in parse_profiles(DEFAULT_PROFILES) if p.name == name)


def spec(name: str = "gpu", owner: str = "alice") -> RunSpec:
    return RunSpec(run_id=7, job_id=3, job_name="nightly", owner=owner, profile=profile(name),
                   parameters={"n": 4, "label": "x"}, timeout_seconds=600,
                   environment={"HIMALIA_API_URL": "http://hub/services/himalia/"})


def test_a_docker_run_is_the_owners_server_container_running_papermill():
    kwargs = container_spec(spec("cpu"), "/srv/jobs/runs/7", token="T")
    assert kwargs["command"][:3] == ["papermill", "/himalia/run/input.ipynb", "/himalia/run/output.ipynb"]
    assert json.loads(kwargs["command"][-1]) == {"n": 4, "label": "x"}
    assert kwargs["user"] == "1000:100"  # never root
    assert kwargs["volumes"]["/srv/jobs/runs/7"] == {"bind": "/himalia/run", "mode": "rw"}
    assert kwargs["volumes"]["himalia-user-alice"]["bind"] == "/home/jovyan/work"
    assert kwargs["network_mode"] == "host" and kwargs["init"] is True
    assert kwargs["environment"]["HIMALIA_JOB_RUN_ID"] == "7"
    assert kwargs["environment"]["JUPYTERHUB_API_TOKEN"] == "T"
    assert kwargs["labels"]["dev.himalia.kind"] == "job" and kwargs["labels"]["dev.himalia.run"] == "7"
    cpu = profile("cpu")
    assert kwargs["nano_cpus"] == int(cpu.cpu * 1e9)
    assert kwargs["mem_limit"] == kwargs["memswap_limit"] == cpu.memory


@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_a_kubernetes_run_asks_for_what_the_owners_server_pod_gets(kube_spawner, name):  # noqa: F811
    rendered = kubernetes_job(spec(name), '{"cells": []}', namespace="jhub", token_secret="run-7-token")
    job, config_map = rendered["job"], rendered["config_map"]
    server = kube_spawner()
    choose(server, {"profile": name})
    pod = pod_spec(server)
    template = job["spec"]["template"]["spec"]
    container = template["containers"][0]
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["spec"]["backoffLimit"] == 0  # retries are the platform's, with its backoff
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert container["image"] == pod["containers"][0]["image"]
    limits = container["resources"]["limits"]
    pod_limits = pod["containers"][0]["resources"]["limits"]
    assert float(limits["cpu"]) == float(pod_limits["cpu"])
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
    assert float(limits["memory"][:-2]) * units[limits["memory"][-2:]] == float(pod_limits["memory"])
    assert limits.get("nvidia.com/gpu") == pod_limits.get("nvidia.com/gpu")
    assert container["resources"]["requests"] == limits
    assert template.get("nodeSelector") == pod.get("nodeSelector")
    assert template.get("tolerations") == pod.get("tolerations")
    assert template["securityContext"]["runAsNonRoot"] is True and template["securityContext"]["runAsUser"] == 1000
    assert template["restartPolicy"] == "Never"
    env = {e["name"]: e for e in container["env"]}
    assert env["HIMALIA_JOB_RUN_ID"]["value"] == "7"
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "run-7-token", "key": "token"}
    assert "value" not in env["JUPYTERHUB_API_TOKEN"]  # the token is never in the manifest
    volumes = {v["name"]: v for v in template["volumes"]}
    assert volumes["input"]["configMap"]["name"] == config_map["metadata"]["name"]
    assert config_map["data"]["input.ipynb"] == '{"cells": []}'
    assert container["command"][1] == "/himalia/input/input.ipynb"
    # The same claim as the owner's server, so a job sees the owner's files.
    server_claims = [v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", [])
                     if "persistentVolumeClaim" in v]
    assert server_claims == [server.pvc_name]
    assert volumes["home"]["persistentVolumeClaim"]["claimName"] == server.pvc_name
