"""``/api/v1/dashboards``: thin routes over :mod:`.service`.

Scientists publish notebooks as dashboards and own them (publishing an existing name of theirs
makes a new version); the owner or an admin changes, shares and unpublishes one. Anyone a
dashboard is shared with (users, members of groups, or every viewer) lists and reads it; anyone
else gets 404 for it. The dashboards themselves are rendered by the Voilà service
(``render.py``) at ``/services/dashboards/<name>/``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import JSONResponse, Response

from ..services.api.authz import allow
from ..services.api.identity import Identity
from ..storage import Database
from . import service
from .service import DashboardSettings


def make_router(prefix: str, db: Database, settings: DashboardSettings) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["dashboards"])
    base = "/api/v1/dashboards"

    def answer(session, d, status: int = 200) -> JSONResponse:
        return JSONResponse(service.dashboard_json(session, d, settings.public_url), status_code=status)

    @router.post(base, status_code=201, summary="Publish a notebook as a dashboard (201), or a new "
                 "version of one of yours (200)")
    def publish(body: Any = Body(...), who: Identity = Depends(allow("scientist"))) -> JSONResponse:
        with db.session() as session:
            d, new = service.publish(session, settings, who.name, who.roles, who.groups, body)
            result = answer(session, d, 201 if new else 200)
            name, version = d.name, d.version
        db.audit(who.name, "dashboards.publish", f"dashboard:{name}", version=version)
        return result

    @router.get(base, summary="The dashboards you may open")
    def list_dashboards(offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=500),
                        mine: bool = False, who: Identity = Depends(allow())) -> dict:
        with db.session() as session:
            found = service.visible(session, who.name, who.roles, who.groups, mine=mine,
                                    offset=offset, limit=limit)
            return {"dashboards": [service.dashboard_json(session, d, settings.public_url) for d in found],
                    "offset": offset, "limit": limit}

    @router.get(base + "/{name}", summary="One dashboard")
    def get_dashboard(name: str, who: Identity = Depends(allow())) -> JSONResponse:
        with db.session() as session:
            return answer(session, service.find(session, name, who.name, who.roles, who.groups))

    @router.patch(base + "/{name}", summary="Change title, description, linked job or sharing (owner)")
    def update(name: str, body: Any = Body(...), who: Identity = Depends(allow("scientist"))) -> JSONResponse:
        with db.session() as session:
            d = service.find_managed(session, name, who.name, who.roles, who.groups)
            service.update_dashboard(session, d, who.roles, body)
            result = answer(session, d)
        db.audit(who.name, "dashboards.update", f"dashboard:{name}",
                 fields=sorted(body) if isinstance(body, dict) else [])
        return result

    @router.delete(base + "/{name}", status_code=204, summary="Unpublish a dashboard (owner)")
    def unpublish(name: str, who: Identity = Depends(allow("scientist"))) -> Response:
        with db.session() as session:
            service.unpublish(session, service.find_managed(session, name, who.name, who.roles, who.groups))
        db.audit(who.name, "dashboards.unpublish", f"dashboard:{name}")
        return Response(status_code=204)

    @router.get(base + "/{name}/versions", summary="A dashboard's published versions")
    def list_versions(name: str, who: Identity = Depends(allow())) -> dict:
        with db.session() as session:
            d = service.find(session, name, who.name, who.roles, who.groups)
            return {"versions": [{"version": v.version, "sha256": v.sha256,
                                  "created": service._aware(v.created_at).isoformat()}
                                 for v in service.versions(session, d)]}

    @router.get(base + "/{name}/notebook", summary="A version's notebook (owner)")
    def notebook(name: str, version: int | None = None,
                 who: Identity = Depends(allow("scientist"))) -> Response:
        with db.session() as session:
            d = service.find_managed(session, name, who.name, who.roles, who.groups)
            found = next((v for v in service.versions(session, d)
                          if v.version == (version or d.version)), None)
            if found is None:
                raise service.DashboardError(f"Dashboard {name!r} has no version {version}.", 404)
            return Response(found.notebook, media_type="application/x-ipynb+json")

    return router
