"""The Kubernetes back end of model deployments: each version as a Deployment plus a Service, and
the traffic split between versions as a Gateway API HTTPRoute.

No cluster runs here, so the objects we would send are tested as data: exact names, labels,
selectors, probes, security context, GPU requests and weights, plus the schema checks available
offline (the Deployment and Service go through the kubernetes_asyncio client's models, which reject
missing required fields and drop unknown ones, so a misspelt field shows up as a difference).
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest
import yaml

from himalia.hub.deployments.kubernetes import render_yaml, traffic_manifest, version_manifests

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


def manifests(**overrides):
    args = {"deployment": "iris", "version": 2, "owner": "alice", "bento_tag": "iris_clf:v2abc",
            "image": "ghcr.io/himalia/serve:1.4", **overrides}
    deployment, service = version_manifests(**args)
    return deployment, service


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def container(deployment: dict) -> dict:
    (only,) = pod_spec(deployment)["containers"]
    return only


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_a_version_is_a_deployment_and_a_service_named_after_the_deployment_and_version():
    deployment, service = manifests()
    assert (deployment["apiVersion"], deployment["kind"]) == ("apps/v1", "Deployment")
    assert (service["apiVersion"], service["kind"]) == ("v1", "Service")
    for obj in (deployment, service):
        assert obj["metadata"]["name"] == "himalia-model-iris-v2"
        assert obj["metadata"]["namespace"] == "himalia"
        assert obj["metadata"]["labels"] == {
            "app.kubernetes.io/name": "himalia-model",
            "app.kubernetes.io/instance": "iris",
            "app.kubernetes.io/version": "v2",
            "app.kubernetes.io/managed-by": "himalia",
            "himalia.io/owner": "alice",
        }
        assert obj["metadata"]["annotations"]["himalia.io/owner"] == "alice"


def test_the_namespace_is_a_parameter():
    deployment, service = manifests(namespace="models-prod")
    assert deployment["metadata"]["namespace"] == service["metadata"]["namespace"] == "models-prod"


def test_the_service_selects_exactly_the_pods_of_its_own_version():
    deployment, service = manifests()
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    match_labels = deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == match_labels == {
        "app.kubernetes.io/name": "himalia-model",
        "app.kubernetes.io/instance": "iris",
        "app.kubernetes.io/version": "v2",
    }
    assert selects(match_labels, pod_labels)
    other_version, _ = manifests(version=3)
    other_deployment, _ = manifests(deployment="iris-big")
    for other in (other_version, other_deployment):
        assert not selects(service["spec"]["selector"], other["spec"]["template"]["metadata"]["labels"])


def test_the_service_is_cluster_internal_on_port_80_forwarding_to_the_bento_port():
    _, service = manifests(port=3100)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 3100, "protocol": "TCP"}]


def test_the_container_serves_the_bento_on_all_interfaces_without_telemetry():
    deployment, _ = manifests(port=3100, env={"MODEL_THREADS": 4, "BENTOML_DO_NOT_TRACK": "false"})
    c = container(deployment)
    assert c["image"] == "ghcr.io/himalia/serve:1.4"
    assert c["command"] == ["bentoml", "serve", "iris_clf:v2abc", "--port", "3100", "--host", "0.0.0.0"]
    assert c["ports"] == [{"name": "http", "containerPort": 3100, "protocol": "TCP"}]
    # The user's variables come through as strings; tracking stays off even when asked otherwise.
    assert {e["name"]: e["value"] for e in c["env"]} == {"MODEL_THREADS": "4", "BENTOML_DO_NOT_TRACK": "true"}
    assert deployment["spec"]["replicas"] == 1


def test_probes_use_bentoml_health_endpoints_and_give_the_model_time_to_load():
    deployment, _ = manifests(port=3100)
    c = container(deployment)
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 3100}
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": 3100}
    startup = c["startupProbe"]
    assert startup["httpGet"]["port"] == 3100
    allowed = startup["periodSeconds"] * startup["failureThreshold"]
    assert allowed >= 300
    # The rollout deadline outlasts the startup budget, so a slow load is not a failed rollout.
    assert deployment["spec"]["progressDeadlineSeconds"] > allowed


def test_the_container_runs_as_non_root_with_no_capabilities():
    deployment, _ = manifests()
    assert container(deployment)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    spec = pod_spec(deployment)
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec


def test_a_named_service_account_is_used_and_its_token_mounted():
    deployment, _ = manifests(service_account="model-reader")
    spec = pod_spec(deployment)
    assert spec["serviceAccountName"] == "model-reader"
    assert spec["automountServiceAccountToken"] is True


def test_rolling_updates_never_drop_serving_capacity():
    deployment, _ = manifests(replicas=3)
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def test_a_cpu_version_asks_for_no_gpu_and_tolerates_no_gpu_taint():
    deployment, _ = manifests()
    resources = container(deployment)["resources"]
    assert resources == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    assert "tolerations" not in pod_spec(deployment)


def test_gpus_are_a_limit_with_a_toleration_for_gpu_nodes():
    given = {"requests": {"cpu": 2, "memory": "8Gi"}, "limits": {"memory": "8Gi"}}
    deployment, _ = manifests(gpu=2, resources=given)
    assert container(deployment)["resources"] == {
        "requests": {"cpu": "2", "memory": "8Gi"},
        "limits": {"memory": "8Gi", "nvidia.com/gpu": "2"},
    }
    assert pod_spec(deployment)["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert given == {"requests": {"cpu": 2, "memory": "8Gi"}, "limits": {"memory": "8Gi"}}


def test_the_gpu_argument_decides_the_gpu_count():
    deployment, _ = manifests(gpu=0, resources={"limits": {"nvidia.com/gpu": 1, "memory": "4Gi"}})
    assert container(deployment)["resources"] == {"limits": {"memory": "4Gi"}}
    assert "tolerations" not in pod_spec(deployment)


@pytest.mark.parametrize("owner", ["Alice@Example.com", "bob smith", "-x-", "é" * 10, "a" * 80, "a" * 63 + "@"])
def test_any_user_name_becomes_a_valid_owner_label_and_stays_exact_in_the_annotation(owner):
    deployment, service = manifests(owner=owner)
    for meta in (deployment["metadata"], service["metadata"], deployment["spec"]["template"]["metadata"]):
        label = meta["labels"]["himalia.io/owner"]
        assert LABEL_VALUE.fullmatch(label) and 0 < len(label) <= 63
        assert meta["annotations"]["himalia.io/owner"] == owner


def test_owners_that_clean_up_alike_keep_different_labels():
    labels = {manifests(owner=owner)[0]["metadata"]["labels"]["himalia.io/owner"]
              for owner in ("a@b", "a+b", "a-b")}
    assert len(labels) == 3
    assert "a-b" in labels


def test_the_longest_deployment_name_that_fits_makes_a_63_character_name():
    deployment, service = manifests(deployment="d" * 46, version=9)
    assert len(deployment["metadata"]["name"]) == 63
    assert DNS_LABEL.fullmatch(service["metadata"]["name"])


@pytest.mark.parametrize("name, version", [("d" * 47, 9), ("d" * 46, 10), ("d" * 63, 1)])
def test_names_past_63_characters_are_refused_with_the_room_left(name, version):
    with pytest.raises(ValueError, match=r"over the 63 allowed.*at most 4[56] characters"):
        manifests(deployment=name, version=version)


@pytest.mark.parametrize("name", ["Iris", "iris_clf", "1iris", "iris-", "", "iris.v2", "-iris"])
def test_deployment_names_that_are_not_dns_labels_are_refused(name):
    with pytest.raises(ValueError, match="not a DNS label"):
        manifests(deployment=name)


@pytest.mark.parametrize("overrides, message", [
    ({"version": 0}, "version must be a positive integer"),
    ({"version": True}, "version must be a positive integer"),
    ({"namespace": "Models"}, "namespace 'Models' is not a DNS label"),
    ({"port": 80}, "port must be between 1024 and 65535"),
    ({"gpu": -1}, "gpu must be an integer >= 0"),
    ({"replicas": -1}, "replicas must be an integer >= 0"),
    ({"bento_tag": "iris clf:1"}, "bento_tag must be a tag"),
    ({"owner": ""}, "owner must be a non-empty user name"),
    ({"resources": {"limit": {"cpu": "1"}}}, "resources take 'requests' and 'limits'"),
])
def test_bad_arguments_are_refused_naming_the_argument(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        manifests(**overrides)


def test_a_canary_split_sends_each_share_to_its_version_service():
    route = traffic_manifest(deployment="iris", weights={2: 10, 1: 90})
    assert (route["apiVersion"], route["kind"]) == ("gateway.networking.k8s.io/v1", "HTTPRoute")
    assert route["metadata"]["name"] == "himalia-model-iris"
    assert route["metadata"]["namespace"] == "himalia"
    assert route["spec"]["parentRefs"] == [{"name": "himalia"}]
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/models/iris/"}}]
    assert rule["backendRefs"] == [
        {"name": "himalia-model-iris-v1", "port": 80, "weight": 90},
        {"name": "himalia-model-iris-v2", "port": 80, "weight": 10},
    ]
    # The backend names are exactly the Services version_manifests creates.
    for ref, version in zip(rule["backendRefs"], (1, 2)):
        _, service = manifests(version=version)
        assert ref["name"] == service["metadata"]["name"]
        assert ref["port"] == service["spec"]["ports"][0]["port"]


def test_the_route_strips_the_deployment_prefix_so_the_bento_sees_its_own_paths():
    (rule,) = traffic_manifest(deployment="iris", weights={1: 100})["spec"]["rules"]
    assert rule["filters"] == [{"type": "URLRewrite", "urlRewrite": {
        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}]


def test_retired_versions_with_no_traffic_are_left_out():
    (rule,) = traffic_manifest(deployment="iris", weights={1: 0, 2: 100, 3: 0})["spec"]["rules"]
    assert rule["backendRefs"] == [{"name": "himalia-model-iris-v2", "port": 80, "weight": 100}]


def test_the_route_prefix_gateway_and_namespace_are_parameters():
    route = traffic_manifest(deployment="iris", weights={1: 100}, namespace="serving",
                             host_path_prefix="/api/models/", gateway="edge")
    assert route["metadata"]["namespace"] == "serving"
    assert route["spec"]["parentRefs"] == [{"name": "edge"}]
    assert route["spec"]["rules"][0]["matches"][0]["path"]["value"] == "/api/models/iris/"


@pytest.mark.parametrize("weights, message", [
    ({1: 90, 2: 9}, "must sum to 100 percent, got 99"),
    ({1: 90, 2: 20}, "must sum to 100 percent, got 110"),
    ({1: 0}, "must sum to 100 percent, got 0"),
    ({1: 110, 2: -10}, "the weight of version 1 must be a percentage 0..100"),
    ({1: 50.0, 2: 50}, "the weight of version 1 must be a percentage"),
    ({0: 100}, "version must be a positive integer"),
    ({}, "at least one version"),
])
def test_weights_that_are_not_a_percentage_split_are_refused(weights, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        traffic_manifest(deployment="iris", weights=weights)


def test_the_route_refuses_bad_deployment_names_too():
    with pytest.raises(ValueError, match="not a DNS label"):
        traffic_manifest(deployment="Iris", weights={1: 100})


def test_yaml_holds_every_object_in_order_and_keeps_strings_strings():
    objects = [*manifests(), traffic_manifest(deployment="iris", weights={1: 90, 2: 10})]
    text = render_yaml(objects)
    assert text.count("\n---\n") + text.startswith("---\n") == 3
    loaded = list(yaml.safe_load_all(text))
    assert loaded == objects
    # "true", "v2" and "2" stay strings, as the API requires for env values, labels and quantities.
    assert container(loaded[0])["env"][-1] == {"name": "BENTOML_DO_NOT_TRACK", "value": "true"}


# Schema checks through the Kubernetes client's own models (offline: no request is made).

class _Response:
    def __init__(self, obj: dict):
        self.data = json.dumps(obj)


def through_client_models(obj: dict, klass: str) -> dict:
    """``obj`` read into the client's model ``klass`` and written back, as the client would send it."""
    client = pytest.importorskip("kubernetes_asyncio.client")

    async def round_trip():
        async with client.ApiClient() as api:
            return api.sanitize_for_serialization(api.deserialize(_Response(obj), klass))

    return asyncio.run(round_trip())


@pytest.mark.parametrize("overrides", [{}, {"gpu": 1, "service_account": "sa", "env": {"A": "1"}, "replicas": 0}])
def test_the_deployment_and_service_are_valid_client_models_with_no_unknown_fields(overrides):
    deployment, service = manifests(**overrides)
    assert through_client_models(deployment, "V1Deployment") == deployment
    assert through_client_models(service, "V1Service") == service


def test_the_model_check_catches_a_misspelt_field_and_a_missing_required_one():
    deployment, _ = manifests()
    c = container(deployment)
    c["readinesProbe"] = c.pop("readinessProbe")
    assert through_client_models(deployment, "V1Deployment") != deployment
    del deployment["spec"]["selector"]
    with pytest.raises(ValueError, match="selector"):
        through_client_models(deployment, "V1Deployment")


def test_the_route_metadata_is_a_valid_object_meta_and_its_values_fit_gateway_api_limits():
    route = traffic_manifest(deployment="d" * 46, weights={1: 40, 2: 30, 9: 30})
    assert through_client_models(route["metadata"], "V1ObjectMeta") == route["metadata"]
    (rule,) = route["spec"]["rules"]
    # Limits from the HTTPRoute CRD: at most 16 backendRefs, weights 0..1000000, DNS-label names.
    assert 0 < len(rule["backendRefs"]) <= 16
    for ref in rule["backendRefs"]:
        assert DNS_LABEL.fullmatch(ref["name"]) and len(ref["name"]) <= 63
        assert 0 <= ref["weight"] <= 1_000_000
    assert DNS_LABEL.fullmatch(route["metadata"]["name"])
