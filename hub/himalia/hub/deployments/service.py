"""The rules of model deployments, over a database session and the caller's identity.

A deployment has numbered versions. A new version is built, started and health-checked by the
deployment manager (manager.py); only then does it get traffic: all of it (a blue/green swap:
the version that served before is retired) or its canary share, the rest staying with the
version that serves now until the canary is promoted or rolled back. At most one version is
being prepared and at most one is a canary at a time. Every change here is audited; the
manager is woken to act on it.
"""

from __future__ import annotations

import ast
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ..errors import PlatformError
from ..services.api.authz import ADMIN, may_use_shared
from ..services.api.identity import Identity
from .models import (BUILDING, FAILED, LIVE, RETIRED, SERVING, STARTING, Deployment,
                     DeploymentKey, DeploymentVersion, Prediction)

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
NAME_RULE = ("a deployment name is 1 to 63 characters: lowercase letters, digits and '-', "
             "starting with a letter (it is part of the URL /models/<name>/)")
MAX_REPLICAS = 8
KEY_PREFIX = "hmk_"
MAX_SERVICE_CODE = 256 * 1024


class DeployError(PlatformError):
    """A request that cannot be carried out; ``status`` is its HTTP status."""


class NotFound(DeployError):
    def __init__(self, name: str):
        super().__init__(f"Deployment {name!r} does not exist (or is not shared with you).", 404)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def aware(when: datetime | None) -> datetime | None:
    """SQLite gives back naive datetimes; every time here is UTC."""
    if when is not None and when.tzinfo is None:
        return when.replace(tzinfo=timezone.utc)
    return when


# -- checks --------------------------------------------------------------------------------------
def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise DeployError(f"Invalid name {name!r}: {NAME_RULE}.", 422)
    return name


def service_class(code: str) -> str | None:
    """The name of a ``@bentoml.service`` class in the cell body, or None for hooks only.

    The body is only parsed here, never run: it runs inside the version's ``bentoml serve``.
    A syntax error is a 422 naming the line.
    """
    if len(code) > MAX_SERVICE_CODE:
        raise DeployError(f"The service code is {len(code)} bytes; at most {MAX_SERVICE_CODE}.")
    try:
        tree = ast.parse(code or "", filename="%%deploy cell")
    except SyntaxError as e:
        raise DeployError(f"The cell's code does not parse: line {e.lineno}: {e.msg}: "
                          f"{(e.text or '').strip()}") from e
    found = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                if name == "service":
                    found.append(node.name)
    if len(found) > 1:
        raise DeployError(f"The cell defines {len(found)} services ({', '.join(found)}); "
                          "a deployment serves one.")
    return found[0] if found else None


def is_custom(version: DeploymentVersion) -> bool:
    """Whether the version serves a service class of its cell rather than the generic service."""
    return bool(version.service_code) and service_class(version.service_code) is not None


def run_id_of(model_uri: str) -> str | None:
    match = re.match(r"^runs:/([0-9a-f]{32})/", model_uri)
    return match.group(1) if match else None


# -- reading -------------------------------------------------------------------------------------
def may_use(name: str, roles: list[str], owner: str, shared_with) -> bool:
    """Who may see a deployment and call its endpoint (the API and the router both ask): a
    person with a platform role who owns it, is an admin, or was given it by its owner."""
    return may_use_shared(name, roles, owner, users=shared_with or ())


def may_see(who: Identity, deployment: Deployment) -> bool:
    return may_use(who.name, who.roles, deployment.owner, deployment.shared_with)


def may_change(who: Identity, deployment: Deployment) -> bool:
    return who.name == deployment.owner or ADMIN in who.roles


def find(db: Session, who: Identity, name: str, *, change: bool = False) -> Deployment:
    """The deployment ``name`` if ``who`` may see it (``change``: act on it), else 404/403."""
    deployment = db.scalar(select(Deployment).where(Deployment.name == name))
    if deployment is None or not may_see(who, deployment):
        raise NotFound(name)
    if change and not may_change(who, deployment):
        raise DeployError(f"Only its owner '{deployment.owner}' or an admin may change "
                          f"deployment {name!r}.", 403)
    return deployment


def versions(db: Session, deployment: Deployment) -> list[DeploymentVersion]:
    """Newest first."""
    return list(db.scalars(select(DeploymentVersion)
                           .where(DeploymentVersion.deployment_id == deployment.id)
                           .order_by(DeploymentVersion.version.desc())))


def visible(db: Session, who: Identity, offset: int = 0, limit: int = 100) -> list[Deployment]:
    rows = db.scalars(select(Deployment).order_by(Deployment.name))
    return [d for d in rows if may_see(who, d)][offset:offset + limit]


def health(vs: list[DeploymentVersion]) -> str:
    """``serving`` when traffic has somewhere to go, ``pending`` while the first version is
    prepared, ``down`` otherwise; ``degraded`` when the newest version failed."""
    serving = any(v.state == SERVING and v.traffic > 0 for v in vs)
    if not serving:
        return "pending" if any(v.state in (BUILDING, STARTING) for v in vs) else "down"
    return "degraded" if vs and vs[0].state == FAILED else "serving"


# -- changes -------------------------------------------------------------------------------------
@dataclass
class NewVersion:
    name: str
    model_uri: str
    canary_percent: int = 0
    replicas: int = 1
    service_code: str = ""
    lineage: dict | None = None
    shared_with: list[str] | None = None
    #: Feature refs the router fills in by entity key; checked against the training run's.
    features: list[str] | None = None
    allow_skew: bool = False


def feature_skew(declared: list[str], trained: list[str] | None) -> str | None:
    """What differs between the refs a deployment declares and those its model was trained
    with (the run's ``himalia.features`` tag); None when they are the same."""
    if trained is None:
        return ("its training run recorded no feature refs (train with "
                "himalia.sdk.features.training_set inside the run)")
    missing, extra = [r for r in trained if r not in declared], [r for r in declared if r not in trained]
    if not missing and not extra:
        return None
    parts = []
    if missing:
        parts.append(f"trained with but not declared: {', '.join(missing)}")
    if extra:
        parts.append(f"declared but not trained with: {', '.join(extra)}")
    return "; ".join(parts)


def check(spec: NewVersion) -> None:
    """What can be checked of a new version without the database or MLflow."""
    check_name(spec.name)
    if not 0 <= spec.canary_percent <= 99:
        raise DeployError("canary_percent is 0 (swap all traffic once healthy) to 99.")
    if not 1 <= spec.replicas <= MAX_REPLICAS:
        raise DeployError(f"replicas is 1 to {MAX_REPLICAS}.")
    if not spec.model_uri or len(spec.model_uri) > 1024:
        raise DeployError("model_uri names an MLflow model: runs:/<run id>/model, "
                          "models:/<name>/<version> or models:/<model id>.")
    service_class(spec.service_code)


def deploy(db: Session, who: Identity, spec: NewVersion) -> tuple[Deployment, DeploymentVersion]:
    """Make the deployment (a new name) or a new version of it (yours); the manager builds it."""
    check(spec)
    deployment = db.scalar(select(Deployment).where(Deployment.name == spec.name))
    if deployment is None:
        deployment = Deployment(name=spec.name, owner=who.name, shared_with=spec.shared_with or [])
        db.add(deployment)
        db.flush()
    elif not may_change(who, deployment):
        raise DeployError(f"The name {spec.name!r} is taken by {deployment.owner}'s deployment; "
                          "choose another.", 409)
    existing = versions(db, deployment)
    busy = [v for v in existing if v.state in (BUILDING, STARTING)]
    if busy:
        raise DeployError(f"Version {busy[0].version} of {spec.name!r} is still being prepared "
                          f"({busy[0].state}); wait for it or roll it back.", 409)
    serving = [v for v in existing if v.state == SERVING]
    if spec.canary_percent:
        if not serving:
            raise DeployError(f"A canary needs a version that serves already; {spec.name!r} has "
                              "none: deploy without canary_percent first.", 409)
        if len(serving) > 1:
            raise DeployError(f"{spec.name!r} has a canary already (version "
                              f"{serving[0].version}): promote it or roll it back first.", 409)
    if spec.shared_with is not None:
        deployment.shared_with = sorted(set(spec.shared_with))
    version = DeploymentVersion(
        deployment_id=deployment.id,
        version=(existing[0].version + 1) if existing else 1,
        model_uri=spec.model_uri, run_id=run_id_of(spec.model_uri), state=BUILDING,
        traffic=0, target_traffic=spec.canary_percent or 100, replicas=spec.replicas,
        service_code=spec.service_code or "", lineage=spec.lineage or {}, created_by=who.name,
        features=list(spec.features or []),
    )
    db.add(version)
    deployment.updated_at = utcnow()
    db.flush()
    return deployment, version


def share(db: Session, who: Identity, name: str, users: list[str]) -> Deployment:
    deployment = find(db, who, name, change=True)
    deployment.shared_with = sorted(set(users))
    deployment.updated_at = utcnow()
    return deployment


def _retire(version: DeploymentVersion, reason: str | None = None) -> None:
    version.state = RETIRED
    version.traffic = 0
    version.ended_at = utcnow()
    if reason:
        version.reason = reason


def promote(db: Session, who: Identity, name: str) -> Deployment:
    """The canary gets all traffic; the version it shared with is retired."""
    deployment = find(db, who, name, change=True)
    serving = [v for v in versions(db, deployment) if v.state == SERVING]
    if len(serving) < 2:
        raise DeployError(f"{name!r} has no canary to promote.", 409)
    canary, *older = serving
    canary.traffic = canary.target_traffic = 100
    for v in older:
        _retire(v, f"replaced by version {canary.version}")
    deployment.updated_at = utcnow()
    return deployment


def rollback(db: Session, who: Identity, name: str) -> tuple[Deployment, str]:
    """Undo the newest change: a version being prepared is dropped; a canary is retired and
    the stable version gets all traffic again; otherwise the version that served before the
    current one is started again and swapped in once healthy. Returns what was done."""
    deployment = find(db, who, name, change=True)
    vs = versions(db, deployment)
    busy = [v for v in vs if v.state in (BUILDING, STARTING)]
    if busy:
        for v in busy:
            _retire(v, "rolled back before it served")
        done = f"version {busy[0].version} dropped before it served"
    else:
        serving = [v for v in vs if v.state == SERVING]
        if len(serving) > 1:
            canary, stable = serving[0], serving[1]
            _retire(canary, "canary rolled back")
            for v in serving[1:]:
                v.traffic = 0
            stable.traffic = stable.target_traffic = 100
            done = f"canary version {canary.version} rolled back; version {stable.version} serves all"
        else:
            current = serving[0].version if serving else None
            earlier = [v for v in vs if v.state == RETIRED and v.started_at is not None
                       and v.bento_tag and (current is None or v.version < current)]
            if not earlier:
                raise DeployError(f"{name!r} has no earlier version that served to roll back to.", 409)
            back = earlier[0]
            back.state, back.reason, back.ended_at = STARTING, None, None
            back.target_traffic, back.traffic = 100, 0
            done = f"version {back.version} is being started again"
    deployment.updated_at = utcnow()
    return deployment, done


def remove(db: Session, who: Identity, name: str) -> None:
    deployment = find(db, who, name, change=True)
    db.execute(delete(Prediction).where(Prediction.deployment_id == deployment.id))
    db.execute(delete(DeploymentKey).where(DeploymentKey.deployment_id == deployment.id))
    db.execute(delete(DeploymentVersion).where(DeploymentVersion.deployment_id == deployment.id))
    db.delete(deployment)


# -- API keys ------------------------------------------------------------------------------------
def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(db: Session, who: Identity, name: str, label: str) -> tuple[DeploymentKey, str]:
    """A new key; the whole key is returned once and only its SHA-256 is kept."""
    deployment = find(db, who, name, change=True)
    if len(label) > 100:
        raise DeployError("A key's label is at most 100 characters.")
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    row = DeploymentKey(deployment_id=deployment.id, prefix=prefix, digest=key_digest(key),
                        label=label, created_by=who.name)
    db.add(row)
    db.flush()
    return row, key


def keys(db: Session, who: Identity, name: str) -> list[DeploymentKey]:
    deployment = find(db, who, name, change=True)
    return list(db.scalars(select(DeploymentKey).where(DeploymentKey.deployment_id == deployment.id)
                           .order_by(DeploymentKey.id)))


def revoke_key(db: Session, who: Identity, name: str, key_id: int) -> DeploymentKey:
    deployment = find(db, who, name, change=True)
    row = db.get(DeploymentKey, key_id)
    if row is None or row.deployment_id != deployment.id:
        raise DeployError(f"Deployment {name!r} has no key {key_id}.", 404)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


# -- the prediction log --------------------------------------------------------------------------
def predictions(db: Session, deployment: Deployment, *, version: int | None = None,
                since: datetime | None = None, limit: int = 100) -> list[Prediction]:
    query = select(Prediction).where(Prediction.deployment_id == deployment.id)
    if version is not None:
        query = query.where(Prediction.version == version)
    if since is not None:
        query = query.where(Prediction.at >= since)
    return list(db.scalars(query.order_by(Prediction.id.desc()).limit(limit)))


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return round(sorted_values[index], 3)


def metrics(db: Session, deployment: Deployment, minutes: int = 60) -> dict:
    """Requests, errors and latency per minute and version over the last ``minutes``."""
    since = utcnow() - timedelta(minutes=minutes)
    rows = db.execute(select(Prediction.at, Prediction.version, Prediction.latency_ms,
                             Prediction.status)
                      .where(Prediction.deployment_id == deployment.id, Prediction.at >= since))
    buckets: dict[tuple[datetime, int], list] = {}
    totals: dict[int, list] = {}
    for at, version, latency, status in rows:
        minute = aware(at).replace(second=0, microsecond=0)
        for group in (buckets.setdefault((minute, version), []), totals.setdefault(version, [])):
            group.append((latency, status))

    def summary(items: list) -> dict:
        latencies = sorted(latency for latency, _ in items)
        return {"count": len(items), "errors": sum(1 for _, s in items if s >= 500),
                "p50_ms": _percentile(latencies, 0.5), "p95_ms": _percentile(latencies, 0.95)}

    return {
        "minutes": minutes,
        "buckets": [{"at": minute.isoformat(), "version": version, **summary(items)}
                    for (minute, version), items in sorted(buckets.items())],
        "totals": {str(version): summary(items) for version, items in sorted(totals.items())},
    }


def prediction_count(db: Session, deployment: Deployment) -> int:
    return db.scalar(select(func.count()).select_from(Prediction)
                     .where(Prediction.deployment_id == deployment.id)) or 0


# -- what the manager does -----------------------------------------------------------------------
def live_versions(db: Session) -> list[tuple[Deployment, DeploymentVersion]]:
    """Every version that is being prepared or serves, with its deployment."""
    rows = db.execute(select(Deployment, DeploymentVersion)
                      .join(DeploymentVersion, DeploymentVersion.deployment_id == Deployment.id)
                      .where(DeploymentVersion.state.in_(LIVE))
                      .order_by(Deployment.id, DeploymentVersion.version))
    return [(d, v) for d, v in rows]


def mark_failed(db: Session, version_id: int, reason: str) -> None:
    version = db.get(DeploymentVersion, version_id)
    if version is not None and version.state in (BUILDING, STARTING):
        version.state, version.reason, version.ended_at = FAILED, reason, utcnow()
        version.traffic = 0


def mark_built(db: Session, version_id: int, bento_tag: str) -> bool:
    """False when the version was rolled back or removed while it was built."""
    version = db.get(DeploymentVersion, version_id)
    if version is None or version.state != BUILDING:
        return False
    version.bento_tag, version.state = bento_tag, STARTING
    return True


def swap_in(db: Session, version_id: int) -> bool:
    """A healthy version gets its traffic: all of it (the others serving are retired) or its
    canary share (the newest other serving version keeps the rest). False when it was rolled
    back or removed meanwhile."""
    version = db.get(DeploymentVersion, version_id)
    if version is None or version.state != STARTING:
        return False
    others = [v for v in db.scalars(select(DeploymentVersion).where(
        DeploymentVersion.deployment_id == version.deployment_id,
        DeploymentVersion.state == SERVING, DeploymentVersion.id != version.id)
        .order_by(DeploymentVersion.version.desc()))]
    version.state, version.started_at, version.reason = SERVING, utcnow(), None
    if version.target_traffic >= 100 or not others:
        version.traffic = 100
        for v in others:
            _retire(v, f"replaced by version {version.version}")
    else:
        version.traffic = version.target_traffic
        stable, *rest = others
        stable.traffic = 100 - version.target_traffic
        for v in rest:
            _retire(v, f"replaced by version {version.version}")
    return True


def active_keys(db: Session) -> dict[str, tuple[int, int]]:
    """``{sha256 of key: (deployment id, key id)}`` of every key not revoked."""
    rows = db.execute(select(DeploymentKey.digest, DeploymentKey.deployment_id, DeploymentKey.id)
                      .where(DeploymentKey.revoked_at.is_(None)))
    return {digest: (deployment_id, key_id) for digest, deployment_id, key_id in rows}
