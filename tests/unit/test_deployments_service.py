"""The rules of model deployments over a real database (SQLite, and PostgreSQL when it runs
here): who may do what, the version state machine, traffic after swaps, canaries, promotion
and rollback, API keys kept as hashes, and metrics from the prediction log."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert

from himalia.hub.deployments import service
from himalia.hub.deployments.models import (FAILED, RETIRED, SERVING, STARTING, DeploymentKey,
                                            DeploymentVersion, Prediction)
from himalia.hub.deployments.service import DeployError, NewVersion
from himalia.hub.services.api.identity import Identity

ALICE = Identity(name="alice", kind="user", roles=["scientist"], scopes=[], groups=[])
BOB = Identity(name="bob", kind="user", roles=["scientist"], scopes=[], groups=[])
ROOT = Identity(name="root", kind="user", roles=["admin"], scopes=[], groups=[])
URI = "runs:/0123456789abcdef0123456789abcdef/model"


def deploy(db, who=ALICE, name="churn", **fields) -> int:
    with db.session() as s:
        _, v = service.deploy(s, who, NewVersion(name=name, model_uri=fields.pop("model_uri", URI), **fields))
        return v.id


def serve(db, version_id: int) -> None:
    """What the manager does for a healthy version."""
    with db.session() as s:
        assert service.mark_built(s, version_id, f"churn:v{version_id}")
        assert service.swap_in(s, version_id)


def split(db, name="churn") -> dict:
    with db.session() as s:
        d = service.find(s, ROOT, name)
        return {v.version: (v.state, v.traffic) for v in service.versions(s, d)}


def test_a_version_serves_only_after_it_was_built_and_swapped_in(api_db):
    v1 = deploy(api_db)
    assert split(api_db) == {1: ("building", 0)}
    with api_db.session() as s:
        assert service.health(service.versions(s, service.find(s, ALICE, "churn"))) == "pending"
        assert service.mark_built(s, v1, "churn:v1")
    assert split(api_db) == {1: (STARTING, 0)}
    with api_db.session() as s:
        assert service.swap_in(s, v1)
        assert not service.swap_in(s, v1)  # only once
        version = s.get(DeploymentVersion, v1)
        assert version.run_id == "0123456789abcdef0123456789abcdef" and version.bento_tag == "churn:v1"
    assert split(api_db) == {1: (SERVING, 100)}


def test_blue_green_swap_retires_the_old_version(api_db):
    serve(api_db, deploy(api_db))
    v2 = deploy(api_db)
    # While the new one is prepared, the old one keeps all traffic; no third may start.
    assert split(api_db) == {1: (SERVING, 100), 2: ("building", 0)}
    with pytest.raises(DeployError) as e:
        deploy(api_db)
    assert e.value.status == 409 and "still being prepared" in str(e.value)
    serve(api_db, v2)
    assert split(api_db) == {1: (RETIRED, 0), 2: (SERVING, 100)}


def test_a_failed_version_never_gets_traffic(api_db):
    serve(api_db, deploy(api_db))
    v2 = deploy(api_db)
    with api_db.session() as s:
        service.mark_failed(s, v2, "smoke request got 500")
        assert not service.swap_in(s, v2)
        d = service.find(s, ALICE, "churn")
        assert service.health(service.versions(s, d)) == "degraded"
    assert split(api_db) == {1: (SERVING, 100), 2: (FAILED, 0)}


def test_canary_then_promote_or_roll_back(api_db):
    with pytest.raises(DeployError) as e:
        deploy(api_db, canary_percent=10)
    assert e.value.status == 409 and "serves already" in str(e.value)
    serve(api_db, deploy(api_db))
    serve(api_db, deploy(api_db, canary_percent=10))
    assert split(api_db) == {1: (SERVING, 90), 2: (SERVING, 10)}
    with pytest.raises(DeployError):
        deploy(api_db, canary_percent=20)  # one canary at a time
    with api_db.session() as s:
        service.promote(s, ALICE, "churn")
    assert split(api_db) == {1: (RETIRED, 0), 2: (SERVING, 100)}
    with api_db.session() as s, pytest.raises(DeployError):
        service.promote(s, ALICE, "churn")  # nothing to promote now

    serve(api_db, deploy(api_db, canary_percent=25))
    with api_db.session() as s:
        _, done = service.rollback(s, ALICE, "churn")
    assert "canary version 3 rolled back" in done
    assert split(api_db) == {1: (RETIRED, 0), 2: (SERVING, 100), 3: (RETIRED, 0)}


def test_rollback_brings_back_the_version_before(api_db):
    serve(api_db, deploy(api_db))
    serve(api_db, deploy(api_db))
    with api_db.session() as s:
        _, done = service.rollback(s, ALICE, "churn")
    assert done == "version 1 is being started again"
    # Version 2 serves until version 1 is healthy again; then the swap retires version 2.
    assert split(api_db) == {1: (STARTING, 0), 2: (SERVING, 100)}
    with api_db.session() as s:
        assert service.swap_in(s, s.scalar(
            service.select(DeploymentVersion).where(DeploymentVersion.version == 1)).id)
    assert split(api_db) == {1: (SERVING, 100), 2: (RETIRED, 0)}
    # A version being prepared is dropped by a rollback.
    deploy(api_db)
    with api_db.session() as s:
        _, done = service.rollback(s, ALICE, "churn")
    assert "dropped before it served" in done
    assert split(api_db)[3] == (RETIRED, 0)


def test_rollback_without_an_earlier_version_is_refused(api_db):
    serve(api_db, deploy(api_db))
    with api_db.session() as s, pytest.raises(DeployError) as e:
        service.rollback(s, ALICE, "churn")
    assert e.value.status == 409


def test_others_neither_see_nor_change_it_until_shared(api_db):
    serve(api_db, deploy(api_db))
    with api_db.session() as s:
        with pytest.raises(DeployError) as e:
            service.find(s, BOB, "churn")
        assert e.value.status == 404
        with pytest.raises(DeployError) as e:
            service.deploy(s, BOB, NewVersion(name="churn", model_uri=URI))
        assert e.value.status == 409 and "taken by alice" in str(e.value)
        assert service.visible(s, BOB) == []
        service.share(s, ALICE, "churn", ["bob", "bob"])
    with api_db.session() as s:
        assert service.find(s, BOB, "churn").shared_with == ["bob"]
        assert [d.name for d in service.visible(s, BOB)] == ["churn"]
        with pytest.raises(DeployError) as e:
            service.promote(s, BOB, "churn")
        assert e.value.status == 403
        # Admins may act on anyone's deployment.
        service.share(s, ROOT, "churn", [])
        with pytest.raises(DeployError):
            service.find(s, BOB, "churn")


@pytest.mark.parametrize("fields, words", [
    ({"name": "Churn"}, "lowercase"),
    ({"name": "a" * 64}, "1 to 63"),
    ({"name": "9lives"}, "starting with a letter"),
    ({"canary_percent": 100}, "canary_percent"),
    ({"canary_percent": -1}, "canary_percent"),
    ({"replicas": 0}, "replicas"),
    ({"replicas": 9}, "replicas"),
    ({"model_uri": ""}, "model_uri"),
    ({"service_code": "def f(:\n    pass"}, "line 1"),
    ({"service_code": "import bentoml\n@bentoml.service\nclass A: pass\n@bentoml.service\nclass B: pass"},
     "defines 2 services"),
])
def test_bad_specs_are_refused_with_what_to_fix(fields, words):
    spec = NewVersion(**{"name": "churn", "model_uri": URI, **fields})
    with pytest.raises(DeployError) as e:
        service.check(spec)
    assert e.value.status == 422 and words in str(e.value)


def test_the_cell_may_bring_its_own_service_class():
    assert service.service_class("def preprocess(f):\n    return f\n") is None
    code = "import bentoml\n\n@bentoml.service(workers=1)\nclass Scorer:\n    pass\n"
    assert service.service_class(code) == "Scorer"


def test_api_keys_are_kept_as_hashes_and_revocable(api_db):
    deploy(api_db)
    with api_db.session() as s:
        row, key = service.create_key(s, ALICE, "churn", "nightly scoring")
        assert key.startswith(f"hmk_{row.prefix}_") and len(key) > 40
        assert row.digest == service.key_digest(key) and key not in (row.digest, row.prefix)
        assert service.active_keys(s) == {row.digest: (row.deployment_id, row.id)}
        with pytest.raises(DeployError) as e:
            service.create_key(s, BOB, "churn", "x")
        assert e.value.status == 404
    with api_db.session() as s:
        service.revoke_key(s, ALICE, "churn", row.id)
        assert service.active_keys(s) == {}
        assert s.get(DeploymentKey, row.id).revoked_at is not None
        with pytest.raises(DeployError) as e:
            service.revoke_key(s, ALICE, "churn", row.id + 100)
        assert e.value.status == 404


def test_metrics_per_minute_and_version_from_the_log(api_db):
    serve(api_db, deploy(api_db))
    now = datetime.now(timezone.utc).replace(second=30, microsecond=0)
    rows = [(1, now - timedelta(minutes=1), 10.0, 200), (1, now - timedelta(minutes=1), 30.0, 200),
            (1, now, 20.0, 500), (2, now, 5.0, 200), (1, now - timedelta(hours=3), 1.0, 200)]
    with api_db.session() as s:
        deployment = service.find(s, ALICE, "churn")
        s.execute(insert(Prediction), [
            {"deployment_id": deployment.id, "version": v, "at": at, "latency_ms": ms, "status": st,
             "caller": "user:alice", "inputs": "{}", "outputs": "{}"} for v, at, ms, st in rows])
    with api_db.session() as s:
        deployment = service.find(s, ALICE, "churn")
        m = service.metrics(s, deployment, minutes=60)
        assert m["totals"] == {"1": {"count": 3, "errors": 1, "p50_ms": 20.0, "p95_ms": 30.0},
                               "2": {"count": 1, "errors": 0, "p50_ms": 5.0, "p95_ms": 5.0}}
        assert [(b["version"], b["count"]) for b in m["buckets"]] == [(1, 2), (1, 1), (2, 1)]
        assert len(service.predictions(s, deployment, limit=10)) == 5
        assert [p.version for p in service.predictions(s, deployment, version=2)] == [2]
        service.remove(s, ALICE, "churn")
    with api_db.session() as s:
        assert s.query(Prediction).count() == 0 and service.visible(s, ROOT) == []


def test_one_rule_for_who_may_use_a_deployment():
    """The API (service.find) and the router (router.Router.caller) both ask this."""
    assert service.may_use("alice", ["scientist"], "alice", [])
    assert service.may_use("root", ["admin"], "alice", [])
    assert service.may_use("bob", ["viewer"], "alice", ["bob"])
    assert not service.may_use("bob", ["scientist"], "alice", ["carol"])
    # Without a platform role, not even one's own or a shared deployment.
    assert not service.may_use("alice", [], "alice", [])
    assert not service.may_use("bob", [], "alice", ["bob"])
