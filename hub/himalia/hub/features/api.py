"""``/api/v1/features``: thin routes over :mod:`.service`.

Who may do what: the catalog, training-set specs and online values are for scientists (and
admins); viewers have no feature store. Scientists define views and entities and own them:
one scientist cannot change or delete another's (service.plan). A view's online values are
loaded by its owner, whose kernel reads the view's files and sends the rows here as Arrow.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from ..services.api.authz import allow, is_owner_or_admin
from ..services.api.identity import Identity
from ..storage import Database
from . import service
from .models import RUNNING, Materialization
from .repo import ENTITY_KEY_SERIALIZATION_VERSION, FeatureRepo, FeatureSettings
from .service import FeatureError

ARROW_STREAM = "application/vnd.apache.arrow.stream"
#: The largest Arrow body of one materialization request.
MAX_ROWS_BODY = 128 * 1024 * 1024


def _body_dict(body: Any, fields: str) -> dict:
    if not isinstance(body, dict):
        raise FeatureError(f"The body is a JSON object: {fields}.")
    return body


def _time(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise FeatureError(f"{name}: an ISO 8601 time, e.g. 2026-01-31T00:00:00+00:00.") from None
    if when.tzinfo is None:
        raise FeatureError(f"{name}: give a time zone, e.g. {when.isoformat()}+00:00.")
    return when


def make_router(prefix: str, db: Database, settings: FeatureSettings) -> APIRouter:
    router = APIRouter(prefix=prefix + "/api/v1/features", dependencies=[Depends(allow("scientist"))],
                       tags=["features"])
    repo = FeatureRepo(settings)
    router.features_repo = repo  # type: ignore[attr-defined]  (the app warms and closes it)

    @router.get("", summary="The feature catalog: views and entities (q: search words)")
    def catalog(q: str = "", who: Identity = Depends(allow("scientist"))) -> dict:
        with db.session() as session:
            return service.catalog(repo, session, q)

    @router.get("/views/{name}", summary="A feature view with statistics, freshness and history")
    def describe(name: str, who: Identity = Depends(allow("scientist"))) -> dict:
        with db.session() as session:
            return service.describe(repo, session, name)

    @router.delete("/views/{name}", status_code=204, summary="Delete one of your feature views")
    def delete(name: str, who: Identity = Depends(allow("scientist"))) -> Response:
        service.delete_view(repo, who, name)
        with db.session() as session:
            service.clear_stats(session, name)
        db.audit(who.name, "features.delete", f"feature_view:{name}")
        return Response(status_code=204)

    @router.post("/plan", summary="What applying these Feast definitions would change")
    def plan(body: Any = Body(...), who: Identity = Depends(allow("scientist"))) -> dict:
        body = _body_dict(body, "{objects: [{kind, proto}]}")
        objects = service.decode(body.get("objects"))
        return service.plan(repo, who, objects).to_json()

    @router.post("/apply", summary="Apply Feast definitions (entities, feature views) together")
    def apply(body: Any = Body(...), who: Identity = Depends(allow("scientist"))) -> dict:
        body = _body_dict(body, "{objects: [{kind, proto}], statistics?: {view: {...}}}")
        objects = service.decode(body.get("objects"))
        statistics = body.get("statistics") or {}
        if not isinstance(statistics, dict):
            raise FeatureError("statistics: an object view -> statistics.")
        result = service.apply(repo, who, objects)
        names = {o.name for o in objects}
        with db.session() as session:
            for view, stats in statistics.items():
                if view in names:
                    service.save_stats(session, view, stats)
        changed = [c.to_json() for c in result.changes if c.action != "unchanged"]
        if changed:
            db.audit(who.name, "features.apply", ",".join(c["name"] for c in changed)[:500],
                     changes=[{"kind": c["kind"], "name": c["name"], "action": c["action"]}
                              for c in changed])
        return {**result.to_json(), "registry_version": service.registry_version(repo)}

    @router.post("/specs", summary="What the feature engine needs to read these feature refs")
    def specs(body: Any = Body(...), who: Identity = Depends(allow("scientist"))) -> dict:
        body = _body_dict(body, "{refs: ['view:feature', ...]}")
        return {"views": service.specs_for(repo, body.get("refs")),
                "registry_version": service.registry_version(repo)}

    @router.get("/online-store", summary="Where online values are, for readers that can reach it")
    def online_store(who: Identity = Depends(allow("scientist"))) -> dict:
        return {"store": settings.online, "project": settings.project,
                "entity_key_serialization_version": ENTITY_KEY_SERIALIZATION_VERSION}

    @router.post("/online", summary="Online values of feature refs for entity keys")
    def online(body: Any = Body(...), who: Identity = Depends(allow("scientist"))) -> dict:
        body = _body_dict(body, "{refs: ['view:feature'], entities: {key: [values]}}")
        refs, entities = body.get("refs"), body.get("entities")
        if not isinstance(entities, dict) or not entities or \
                not all(isinstance(v, list) for v in entities.values()):
            raise FeatureError("entities: an object join key -> list of values, e.g. "
                               "{\"customer_id\": [1, 2]}.")
        frame = read_online(repo, refs, entities)
        return frame_json(frame)

    @router.put("/views/{name}/statistics", summary="Statistics of a view's data (its owner)")
    def put_statistics(name: str, body: Any = Body(...), who: Identity = Depends(allow("scientist"))) -> dict:
        fv = service.get_view(repo, name)
        service.require_view_owner(who, fv)
        with db.session() as session:
            row = service.save_stats(session, name, body)
            return {"view": name, "rows": row.rows}

    @router.post("/materializations", status_code=201,
                 summary="Start loading a view's latest values into the online store")
    def start(body: Any = Body(...), who: Identity = Depends(allow("scientist"))) -> dict:
        body = _body_dict(body, "{view, end?, start?, job_run_id?}")
        fv = service.get_view(repo, str(body.get("view", "")))
        service.require_view_owner(who, fv)
        end = _time(body.get("end"), "end") or datetime.now(timezone.utc)
        begin = _time(body.get("start"), "start") or service.next_interval(fv, end)
        if begin > end:
            begin = end
        job_run_id = body.get("job_run_id")
        with db.session() as session:
            m = service.start_materialization(session, who, fv, begin, end,
                                              str(job_run_id) if job_run_id else None)
            answer = service.materialization_json(m)
        answer["spec"] = service.view_spec(fv).to_json()
        return answer

    def running(session, who: Identity, mid: int) -> Materialization:
        m = session.get(Materialization, mid)
        if m is None or not is_owner_or_admin(who, m.owner):
            raise FeatureError(f"No materialization {mid} of yours.", 404)
        if m.state != RUNNING:
            raise FeatureError(f"Materialization {mid} has ended ({m.state}).", 409)
        return m

    @router.put("/materializations/{mid}/rows",
                summary="Latest values for the online store, as an Arrow IPC stream")
    async def rows(mid: int, request: Request, who: Identity = Depends(allow("scientist"))) -> dict:
        if request.headers.get("content-type", "").split(";")[0].strip() != ARROW_STREAM:
            raise FeatureError(f"Send the rows as {ARROW_STREAM} (an Arrow IPC stream).", 415)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_ROWS_BODY:
                raise FeatureError(f"At most {MAX_ROWS_BODY // 2**20} MiB of rows per request; "
                                   "send them in several.", 413)
            chunks.append(chunk)

        def write() -> int:
            import pyarrow as pa

            with db.session() as session:
                m = running(session, who, mid)
                view = m.view
            try:
                table = pa.ipc.open_stream(b"".join(chunks)).read_all()
            except (pa.ArrowInvalid, OSError):
                raise FeatureError("The body is not an Arrow IPC stream.", 400) from None
            count = service.write_online(repo, service.get_view(repo, view), table)
            with db.session() as session:
                m = session.get(Materialization, mid)
                m.rows += count
            return count

        return {"written": await run_in_threadpool(write)}

    @router.post("/materializations/{mid}/finish", summary="End a materialization")
    def finish(mid: int, body: Any = Body(...), who: Identity = Depends(allow("scientist"))) -> dict:
        body = _body_dict(body, "{ok, message?, statistics?}")
        with db.session() as session:
            m = running(session, who, mid)
            service.finish_materialization(repo, session, m, bool(body.get("ok")),
                                           str(body.get("message") or ""))
            if body.get("statistics"):
                service.save_stats(session, m.view, body["statistics"])
            answer = service.materialization_json(m)
        db.audit(who.name, "features.materialize", f"feature_view:{answer['view']}",
                 rows=answer["rows"], state=answer["state"], end=answer["end"])
        return answer

    @router.get("/materializations", summary="Recent materializations (view: of one view)")
    def materializations(view: str = "", limit: int = Query(50, ge=1, le=500),
                         who: Identity = Depends(allow("scientist"))) -> dict:
        with db.session() as session:
            query = select(Materialization).order_by(Materialization.id.desc()).limit(limit)
            if view:
                query = query.where(Materialization.view == view)
            return {"materializations": [service.materialization_json(m) for m in session.scalars(query)]}

    return router


def read_online(repo: FeatureRepo, refs: Any, entities: dict):
    from himalia.features.spec import ViewSpec

    views = {name: ViewSpec.from_json(v["spec"]) for name, v in service.specs_for(repo, refs).items()}
    try:
        return repo.reader().read(views, refs, entities)
    except KeyError as e:  # an unknown ref (the reader suggests close ones)
        raise FeatureError(str(e).strip("'\""), 404) from None
    except LookupError as e:  # a view with no online table yet
        raise FeatureError(str(e), 409) from None
    except ValueError as e:  # entity columns missing, of unequal length or of the wrong type
        raise FeatureError(str(e)) from None


def frame_json(frame) -> dict:
    """A DataFrame as ``{columns, data}`` with JSON values (NaN and NaT as null)."""
    import json

    return json.loads(frame.to_json(orient="split", index=False, date_format="iso"))


async def warm(repo: FeatureRepo) -> None:
    """Import Feast and open the registry in a thread, so the first request does not wait."""
    try:
        await asyncio.to_thread(lambda: repo.registry)
    except Exception:  # the first request reports it
        pass
