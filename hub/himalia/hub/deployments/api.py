"""``/api/v1/deployments``: thin routes over :mod:`.service`.

Who may do what (service.find, the rule of this capability; authz.py for roles): scientists
deploy and change their own deployments, admins all; people the owner shares a deployment with
see it and may call its endpoint; anyone else gets 404, so nobody learns which deployments
others have. The endpoint itself (``/models/<name>/``) is served by the router (router.py).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy import select

from ..services.api.authz import allow
from ..services.api.identity import Identity
from ..storage import Database
from . import control, service
from .models import Deployment, DeploymentKey, DeploymentVersion, Prediction
from .service import DeployError, NewVersion

PARQUET = "application/vnd.apache.parquet"
DEPLOY_KEYS = {"name", "model_uri", "canary_percent", "replicas", "service_code", "lineage",
               "shared_with", "features", "allow_skew"}


@dataclass
class DeploymentsSettings:
    """Where versions keep their files and how the API reaches the deployment manager."""

    root: Path
    manager_socket: Path

    def logs_dir(self, name: str) -> Path:
        """Written by the manager only (the owner's processes write through their output)."""
        return self.root / name / "logs"


def iso(when: datetime | None) -> str | None:
    when = service.aware(when)
    return when.isoformat() if when else None


def version_json(v: DeploymentVersion) -> dict:
    return {
        "version": v.version, "state": v.state, "reason": v.reason, "model_uri": v.model_uri,
        "run_id": v.run_id, "bento_tag": v.bento_tag, "traffic": v.traffic,
        "target_traffic": v.target_traffic, "replicas": v.replicas,
        "service": "custom" if service.is_custom(v) else "generic",
        "features": list(v.features or []),
        "created_by": v.created_by, "created_at": iso(v.created_at),
        "started_at": iso(v.started_at), "ended_at": iso(v.ended_at), "lineage": v.lineage or {},
    }


def deployment_json(deployment: Deployment, versions: list[DeploymentVersion]) -> dict:
    return {
        "id": deployment.id, "name": deployment.name, "owner": deployment.owner,
        "url": f"/models/{deployment.name}/", "shared_with": list(deployment.shared_with or []),
        "created_at": iso(deployment.created_at), "updated_at": iso(deployment.updated_at),
        "health": service.health(versions), "versions": [version_json(v) for v in versions],
    }


def key_json(key: DeploymentKey) -> dict:
    return {"id": key.id, "prefix": f"{service.KEY_PREFIX}{key.prefix}", "label": key.label,
            "created_by": key.created_by, "created_at": iso(key.created_at),
            "revoked_at": iso(key.revoked_at), "last_used_at": iso(key.last_used_at)}


def prediction_json(p: Prediction) -> dict:
    return {"id": p.id, "at": iso(p.at), "version": p.version, "latency_ms": p.latency_ms,
            "status": p.status, "caller": p.caller, "inputs": p.inputs, "outputs": p.outputs}


def _spec(body: Any) -> NewVersion:
    if not isinstance(body, dict):
        raise DeployError("The body is a JSON object: {\"name\", \"model_uri\", \"canary_percent\"?, "
                          "\"replicas\"?, \"service_code\"?, \"lineage\"?, \"shared_with\"?}.")
    unknown = sorted(set(body) - DEPLOY_KEYS)
    if unknown:
        raise DeployError(f"Unknown field(s) {', '.join(unknown)}; the fields are "
                          f"{', '.join(sorted(DEPLOY_KEYS))}.")
    for key in ("name", "model_uri"):
        if not isinstance(body.get(key), str):
            raise DeployError(f"{key}: a string is required.")
    for key, default in (("canary_percent", 0), ("replicas", 1)):
        value = body.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise DeployError(f"{key}: a whole number is required, got {value!r}.")
    code = body.get("service_code") or ""
    lineage = body.get("lineage") or {}
    shared = body.get("shared_with")
    if not isinstance(code, str) or not isinstance(lineage, dict):
        raise DeployError("service_code is a string and lineage an object.")
    if shared is not None and not (isinstance(shared, list) and all(isinstance(u, str) for u in shared)):
        raise DeployError("shared_with is a list of user names.")
    features = body.get("features")
    if features is not None and not (isinstance(features, list) and all(isinstance(r, str) for r in features)):
        raise DeployError("features is a list of feature refs 'view:feature'.")
    if not isinstance(body.get("allow_skew", False), bool):
        raise DeployError("allow_skew is true or false.")
    return NewVersion(name=body["name"], model_uri=body["model_uri"].strip(),
                      canary_percent=body.get("canary_percent", 0),
                      replicas=body.get("replicas", 1), service_code=code, lineage=lineage,
                      shared_with=shared, features=features or None,
                      allow_skew=body.get("allow_skew", False))


def _feature_specs(features_repo, spec: NewVersion, trained: list[str] | None) -> dict:
    """The views behind the refs a version declares, once they match its training run's."""
    if not spec.features:
        return {}
    if features_repo is None:
        raise DeployError("This platform has no feature store to fill features from.", 409)
    from ..features import service as features_service

    views = features_service.specs_for(features_repo, spec.features)
    skew = service.feature_skew(spec.features, trained)
    if skew and not spec.allow_skew:
        raise DeployError(f"The declared features differ from the model's training run: {skew}. "
                          "Declare the same refs, or deploy with allow_skew (--allow-skew) to "
                          "serve it anyway.", 409)
    return {name: v["spec"] for name, v in views.items()}


def make_router(prefix: str, db: Database, settings: DeploymentsSettings,
                features_repo=None) -> APIRouter:
    router = APIRouter(prefix=prefix + "/api/v1", dependencies=[Depends(allow())],
                       tags=["deployments"])

    async def wake() -> None:
        await control.wake(settings.manager_socket)

    def answer(name: str, who: Identity) -> dict:
        with db.session() as session:
            deployment = service.find(session, who, name)
            return deployment_json(deployment, service.versions(session, deployment))

    @router.post("/deployments", status_code=202,
                 summary="Deploy an MLflow model: a new deployment or a new version of yours")
    async def deploy(body: Any = Body(...), who: Identity = Depends(allow("scientist"))) -> dict:
        spec = _spec(body)
        service.check(spec)
        with db.session() as session:
            existing = session.scalar(select(Deployment).where(Deployment.name == spec.name))
            if existing is not None and not service.may_change(who, existing):
                # The same answer service.deploy gives, before MLflow is asked anything.
                service.deploy(session, who, spec)
            owner = existing.owner if existing is not None else who.name
        # The model must exist and its owner must be able to read it (the build reads it as
        # the owner); the manager asks MLflow with the owner's token.
        checked = await control.check_model(settings.manager_socket, owner, spec.model_uri)
        specs = _feature_specs(features_repo, spec, checked.get("features"))
        with db.session() as session:
            deployment, version = service.deploy(session, who, spec)
            if checked.get("run_id"):
                version.run_id = checked["run_id"]
            version.feature_specs = specs
            result = {"deployment": deployment_json(deployment, service.versions(session, deployment)),
                      "version": version_json(version)}
        db.audit(who.name, "deployment.deploy", f"deployment:{spec.name}",
                 version=result["version"]["version"], model_uri=spec.model_uri,
                 canary_percent=spec.canary_percent)
        await wake()
        return result

    @router.get("/deployments", summary="Your deployments and those shared with you (admin: all)")
    def list_deployments(offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=500),
                         who: Identity = Depends(allow())) -> dict:
        with db.session() as session:
            return {"deployments": [deployment_json(d, service.versions(session, d))
                                    for d in service.visible(session, who, offset, limit)]}

    @router.get("/deployments/{name}", summary="A deployment and its versions, newest first")
    def get_deployment(name: str, who: Identity = Depends(allow())) -> dict:
        return answer(name, who)

    @router.patch("/deployments/{name}", summary="Share a deployment: {\"shared_with\": [users]}")
    async def patch_deployment(name: str, body: Any = Body(...),
                               who: Identity = Depends(allow("scientist"))) -> dict:
        users = body.get("shared_with") if isinstance(body, dict) else None
        if not isinstance(users, list) or not all(isinstance(u, str) for u in users) or set(body) - {"shared_with"}:
            raise HTTPException(422, "The body is {\"shared_with\": [user names]}.")
        with db.session() as session:
            service.share(session, who, name, users)
        db.audit(who.name, "deployment.share", f"deployment:{name}", users=sorted(set(users)))
        await wake()
        return answer(name, who)

    @router.post("/deployments/{name}/promote", summary="Give the canary all traffic")
    async def promote(name: str, who: Identity = Depends(allow("scientist"))) -> dict:
        with db.session() as session:
            service.promote(session, who, name)
        db.audit(who.name, "deployment.promote", f"deployment:{name}")
        await wake()
        return answer(name, who)

    @router.post("/deployments/{name}/rollback",
                 summary="Drop the canary or the version being prepared, or bring back the one before")
    async def rollback(name: str, who: Identity = Depends(allow("scientist"))) -> dict:
        with db.session() as session:
            _, done = service.rollback(session, who, name)
        db.audit(who.name, "deployment.rollback", f"deployment:{name}", done=done)
        await wake()
        return {**answer(name, who), "done": done}

    @router.delete("/deployments/{name}", status_code=204,
                   summary="Stop every version, delete the deployment, its keys and its log")
    async def undeploy(name: str, who: Identity = Depends(allow("scientist"))) -> Response:
        with db.session() as session:
            service.remove(session, who, name)
        db.audit(who.name, "deployment.delete", f"deployment:{name}")
        await wake()
        return Response(status_code=204)

    @router.post("/deployments/{name}/keys", status_code=201,
                 summary="A new API key for programs; the key is shown once")
    async def create_key(name: str, body: Any = Body(None),
                         who: Identity = Depends(allow("scientist"))) -> dict:
        label = (body or {}).get("label", "") if isinstance(body, (dict, type(None))) else None
        if not isinstance(label, str):
            raise HTTPException(422, "The body is {\"label\": \"what the key is for\"}.")
        with db.session() as session:
            row, key = service.create_key(session, who, name, label)
            result = {**key_json(row), "key": key}
        db.audit(who.name, "deployment.key.create", f"deployment:{name}", key=result["prefix"])
        await wake()
        return result

    @router.get("/deployments/{name}/keys", summary="A deployment's API keys, by prefix")
    def list_keys(name: str, who: Identity = Depends(allow("scientist"))) -> dict:
        with db.session() as session:
            return {"keys": [key_json(k) for k in service.keys(session, who, name)]}

    @router.delete("/deployments/{name}/keys/{key_id}", status_code=204, summary="Revoke an API key")
    async def revoke_key(name: str, key_id: int, who: Identity = Depends(allow("scientist"))) -> Response:
        with db.session() as session:
            row = service.revoke_key(session, who, name, key_id)
            prefix = key_json(row)["prefix"]
        db.audit(who.name, "deployment.key.revoke", f"deployment:{name}", key=prefix)
        # The router forgets the key before this answers.
        await wake()
        return Response(status_code=204)

    @router.get("/deployments/{name}/predictions",
                summary="The prediction log, newest first (format=parquet for a file)")
    def predictions(name: str, version: int | None = None, since: datetime | None = None,
                    limit: int = Query(100, ge=1, le=100_000), format: str = "json",
                    who: Identity = Depends(allow())) -> Any:
        if format not in ("json", "parquet"):
            raise HTTPException(422, "format is json or parquet.")
        with db.session() as session:
            deployment = service.find(session, who, name)
            rows = [prediction_json(p) for p in service.predictions(
                session, deployment, version=version, since=since, limit=limit)]
        if format == "json":
            return {"predictions": rows}
        import pandas as pd

        columns = ["id", "at", "version", "latency_ms", "status", "caller", "inputs", "outputs"]
        frame = pd.DataFrame(rows, columns=columns)
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        out = io.BytesIO()
        frame.to_parquet(out, index=False)
        return Response(out.getvalue(), media_type=PARQUET,
                        headers={"Content-Disposition": f'attachment; filename="{name}-predictions.parquet"'})

    @router.get("/deployments/{name}/metrics",
                summary="Requests, errors and latency per minute and version")
    def metrics(name: str, minutes: int = Query(60, ge=1, le=7 * 24 * 60),
                who: Identity = Depends(allow())) -> dict:
        with db.session() as session:
            return service.metrics(session, service.find(session, who, name), minutes)

    @router.get("/deployments/{name}/logs", summary="A version's build and serve logs (text)")
    def logs(name: str, version: int | None = None, lines: int = Query(200, ge=1, le=10_000),
             who: Identity = Depends(allow("scientist"))) -> PlainTextResponse:
        with db.session() as session:
            deployment = service.find(session, who, name, change=True)
            vs = service.versions(session, deployment)
        chosen = next((v for v in vs if version is None or v.version == version), None)
        if chosen is None:
            raise HTTPException(404, f"Deployment {name!r} has no version {version}.")
        folder, stem = settings.logs_dir(name), f"v{chosen.version}-"
        parts = []
        for path in [folder / f"{stem}build.log", *sorted(folder.glob(f"{stem}serve-*.log"))]:
            if path.is_file():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"==> {path.name[len(stem):]} <==\n" + "\n".join(text))
        return PlainTextResponse("\n\n".join(parts) or f"Version {chosen.version} has no logs yet.")

    return router
