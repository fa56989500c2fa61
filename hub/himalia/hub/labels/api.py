"""``/api/v1/labelsets``: thin routes over :mod:`.service`, and the standalone labeling page.

Who may do what: scientists create label sets and own them; a set's owner (or an admin) adds
items, shares it, adjudicates and sets its queue order. Everyone it is shared with (users, or
members of groups; scientists and people with the ``labeler`` role) gets their own queue, labels,
undoes and skips. Anyone else gets 404 for it: a set not shared with you is not revealed.
Labelers reach these routes and the page at ``/label/``, and nothing else of the platform.
"""

from __future__ import annotations

import html
import importlib.util
import json
import threading
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx
from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from ..services.api.authz import allow
from ..services.api.identity import Identity, read_signed_cookie, xsrf_token
from ..storage import Database
from . import service
from .models import LabelSet
from .service import LabelError, LabelSettings

LABELING = ("scientist", "labeler")
#: The labeling page runs its own script (the widget's), loads images and calls the API.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'")
PAGE_DIR = Path(__file__).parent
#: The page's files (public: they are the project's own code, no data): name -> (folder, type).
PAGE_ASSETS = {"labeler.js": ("widgets", "text/javascript"), "labeler.css": ("widgets", "text/css"),
               "page.js": ("page", "text/javascript")}


def _widget_dir() -> Path:
    """The widget's folder, found without importing it (and ipywidgets) into the API."""
    spec = importlib.util.find_spec("himalia.widgets")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The labeling page needs himalia.widgets (the kernel side of himalia).")
    return Path(list(spec.submodule_search_locations)[0])


class GroupMembers:
    """Members of hub groups, asked from the hub (the API may read groups)."""

    def __init__(self, hub_api_url: str, api_token: str):
        self.url = hub_api_url.rstrip("/")
        self.headers = {"Authorization": f"token {api_token}"}

    def __call__(self, groups: list[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        with httpx.Client(headers=self.headers, timeout=10) as http:
            for group in groups:
                r = http.get(f"{self.url}/groups/{group}")
                if r.status_code == 404:
                    raise LabelError(f"No hub group '{group}': create it on the hub's admin page "
                                     "or share with users.", 404)
                r.raise_for_status()
                found[group] = list(r.json().get("users") or [])
        return found


def make_router(prefix: str, db: Database, settings: LabelSettings, members: GroupMembers,
                cookie_secret: bytes, cookie_name: str) -> APIRouter:
    router = APIRouter(prefix=prefix, dependencies=[Depends(allow(*LABELING))], tags=["labels"])
    locks: dict[int, threading.Lock] = defaultdict(threading.Lock)

    @contextmanager
    def labelset(who: Identity, ref: str, write: bool = False) -> Iterator[tuple[Any, LabelSet]]:
        """A session and the set (404 unless shared with ``who``); writes hold the set's lock."""
        if not write:
            with db.session() as session:
                yield session, service.find(session, who, ref)
            return
        with db.session() as session:
            set_id = service.find(session, who, ref).id
        with locks[set_id], db.session() as session:
            yield session, service.find(session, who, str(set_id), lock=True)

    def answer(session, ls: LabelSet, who: Identity, status: int = 200) -> JSONResponse:
        return JSONResponse(service.labelset_json(session, ls, who.name), status_code=status)

    base = "/api/v1/labelsets"

    @router.post(base, status_code=201, summary="Create a label set (scientists)")
    def create(body: Any = Body(...), who: Identity = Depends(allow("scientist"))) -> JSONResponse:
        body = _object(body, "{name, classes: [...], k?, task?: single|multi, instructions?, share?}")
        share = body.get("share") if isinstance(body.get("share"), dict) else {}
        groups = members(service._names(share.get("groups"), "share.groups")) if share else {}
        with db.session() as session:
            ls = service.create(session, who, body, groups)
            result = answer(session, ls, who, 201)
        db.audit(who.name, "labels.create", f"labelset:{ls.id}", name=ls.name, k=ls.k)
        return result

    @router.get(base, summary="Label sets you own or that are shared with you")
    def list_sets(who: Identity = Depends(allow(*LABELING))) -> dict:
        with db.session() as session:
            return {"labelsets": [service.labelset_json(session, ls, who.name)
                                  for ls in service.visible(session, who)]}

    @router.get(base + "/{ref}", summary="A label set with its progress (ref: id, or your set's name)")
    def get(ref: str, who: Identity = Depends(allow(*LABELING))) -> JSONResponse:
        with labelset(who, ref) as (session, ls):
            return answer(session, ls, who)

    @router.patch(base + "/{ref}", summary="Change instructions, k or add classes (owner)")
    def patch(ref: str, body: Any = Body(...), who: Identity = Depends(allow(*LABELING))) -> JSONResponse:
        body = _object(body, "{instructions?, k?, classes?}")
        with labelset(who, ref, write=True) as (session, ls):
            service.require_owner(who, ls, "change it")
            service.update_set(ls, body, members(ls.shared_groups) if "k" in body else {})
            result = answer(session, ls, who)
        db.audit(who.name, "labels.update", f"labelset:{ls.id}", fields=sorted(body))
        return result

    @router.delete(base + "/{ref}", status_code=204, summary="Delete a label set and its labels (owner)")
    def remove(ref: str, who: Identity = Depends(allow(*LABELING))) -> Response:
        with labelset(who, ref, write=True) as (session, ls):
            service.require_owner(who, ls, "delete it")
            set_id = ls.id
            session.delete(ls)
        db.audit(who.name, "labels.delete", f"labelset:{set_id}")
        return Response(status_code=204)

    @router.post(base + "/{ref}/share", summary="Who labels the set: users and hub groups (owner)")
    def share(ref: str, body: Any = Body(...), who: Identity = Depends(allow(*LABELING))) -> JSONResponse:
        body = _object(body, "{users: [...], groups: [...]}")
        groups = members(service._names(body.get("groups"), "groups"))
        with labelset(who, ref, write=True) as (session, ls):
            service.require_owner(who, ls, "share it")
            service.share(ls, body, groups)
            result = answer(session, ls, who)
        db.audit(who.name, "labels.share", f"labelset:{ls.id}", users=ls.shared_users,
                 groups=ls.shared_groups)
        return result

    @router.post(base + "/{ref}/items", status_code=201, summary="Add items (all or none)")
    def add(ref: str, body: Any = Body(...), who: Identity = Depends(allow(*LABELING))) -> dict:
        with labelset(who, ref, write=True) as (session, ls):
            service.require_owner(who, ls, "add items")
            parsed = service.parse_items(settings, ls, body)
            added = service.add_items(session, ls, parsed)
            total = ls.items_count
        db.audit(who.name, "labels.items", f"labelset:{ls.id}", added=added)
        return {"added": added, "items": total}

    @router.get(base + "/{ref}/items", summary="Items in the order added")
    def items(ref: str, offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000),
              who: Identity = Depends(allow(*LABELING))) -> dict:
        with labelset(who, ref) as (session, ls):
            service.require_owner(who, ls, "list its items")
            return {"items": [service.item_json(ls, i) for i in service.list_items(session, ls, offset, limit)],
                    "total": ls.items_count}

    @router.get(base + "/{ref}/items/{key}/image", summary="An image item's bytes")
    def image(ref: str, key: str, who: Identity = Depends(allow(*LABELING))) -> Response:
        with labelset(who, ref) as (session, ls):
            item = service.get_item(session, ls, key)
            if item.image is None:
                raise LabelError(f"Item '{key}' is not an image.", 404)
            return Response(item.image, media_type=item.media_type,
                            headers={"Cache-Control": "private, max-age=3600"})

    @router.get(base + "/{ref}/next", summary="Your next items to label (204: none left for you)")
    def next_items(ref: str, n: int = Query(1, ge=1, le=50), inline: bool = False,
                   who: Identity = Depends(allow(*LABELING))):
        with labelset(who, ref, write=True) as (session, ls):
            found = service.next_items(session, ls, who.name, n)
            shown = [service.item_json(ls, i, inline) for i in found]
        if not shown:
            return Response(status_code=204)
        return {"item": shown[0], "items": shown}

    @router.post(base + "/{ref}/annotations", status_code=201, summary="Label an item")
    def annotate(ref: str, body: Any = Body(...), who: Identity = Depends(allow(*LABELING))) -> JSONResponse:
        body = _object(body, "{item_id, label, comment?, seconds?, client_id?}")
        with labelset(who, ref, write=True) as (session, ls):
            a, item, created = service.annotate(session, ls, who.name, body)
            result = service.annotation_json(ls, a, item.key)
        return JSONResponse(result, status_code=201 if created else 200)

    @router.get(base + "/{ref}/annotations", summary="Labels given (owner: everyone's; others: yours)")
    def annotations(ref: str, include_undone: bool = False,
                    who: Identity = Depends(allow(*LABELING))) -> dict:
        with labelset(who, ref) as (session, ls):
            return {"annotations": service.annotations(session, ls, who, include_undone)}

    @router.delete(base + "/{ref}/annotations/{key}", summary="Undo your label of an item")
    def undo(ref: str, key: str, who: Identity = Depends(allow(*LABELING))) -> dict:
        with labelset(who, ref, write=True) as (session, ls):
            item = service.undo(session, ls, who.name, key)
            return {"item": service.item_json(ls, item)}

    @router.post(base + "/{ref}/skip", summary="Skip an item (never handed to you again)")
    def skip(ref: str, body: Any = Body(...), who: Identity = Depends(allow(*LABELING))) -> dict:
        body = _object(body, "{item_id}")
        with labelset(who, ref, write=True) as (session, ls):
            service.skip(session, ls, who.name, str(body.get("item_id") or ""))
        return {}

    @router.get(base + "/{ref}/agreement", summary="Agreement: Cohen's kappa (2 people) or Fleiss' (more)")
    def agreement(ref: str, who: Identity = Depends(allow(*LABELING))) -> dict:
        with labelset(who, ref) as (session, ls):
            service.require_owner(who, ls, "see agreement")
            return service.agreement(session, ls)

    @router.get(base + "/{ref}/conflicts", summary="Items whose labels disagree")
    def conflicts(ref: str, who: Identity = Depends(allow(*LABELING))) -> dict:
        with labelset(who, ref) as (session, ls):
            service.require_owner(who, ls, "see conflicts")
            return {"conflicts": service.conflicts(session, ls)}

    @router.post(base + "/{ref}/items/{key}/adjudicate", summary="Decide an item's label (owner)")
    def adjudicate(ref: str, key: str, body: Any = Body(...),
                   who: Identity = Depends(allow(*LABELING))) -> dict:
        body = _object(body, "{label}")
        with labelset(who, ref, write=True) as (session, ls):
            service.require_owner(who, ls, "adjudicate")
            item = service.adjudicate(session, ls, who, key, body)
            label = item.adjudicated
        db.audit(who.name, "labels.adjudicate", f"labelset:{ls.id}", item=key, label=label)
        return {"item_id": key, "label": label[0] if ls.task == "single" else label}

    @router.put(base + "/{ref}/priorities", summary="Order the queue by scores (active learning)")
    def priorities(ref: str, body: Any = Body(...), who: Identity = Depends(allow(*LABELING))) -> dict:
        body = _object(body, "{priorities: {item id: score}, strategy?, model?}")
        with labelset(who, ref, write=True) as (session, ls):
            service.require_owner(who, ls, "order its queue")
            return {"updated": service.set_priorities(session, ls, body)}

    @router.post(base + "/{ref}/snapshots", status_code=201, summary="Freeze the labels as a new version")
    def snapshot(ref: str, who: Identity = Depends(allow(*LABELING))) -> JSONResponse:
        with labelset(who, ref, write=True) as (session, ls):
            service.require_owner(who, ls, "snapshot it")
            snap, created = service.take_snapshot(session, ls, who)
            result = service.snapshot_json(ls, snap)
        if created:
            db.audit(who.name, "labels.snapshot", f"labelset:{ls.id}", version=snap.version,
                     sha256=snap.sha256)
        return JSONResponse(result, status_code=201 if created else 200)

    @router.get(base + "/{ref}/snapshots", summary="Snapshots of the set")
    def snapshots(ref: str, who: Identity = Depends(allow(*LABELING))) -> dict:
        with labelset(who, ref) as (session, ls):
            service.require_owner(who, ls, "read its snapshots")
            return {"snapshots": [service.snapshot_json(ls, s) for s in service.snapshots(session, ls)]}

    @router.get(base + "/{ref}/snapshots/{version}", summary="One snapshot with its rows")
    def snapshot_rows(ref: str, version: int, who: Identity = Depends(allow(*LABELING))) -> dict:
        with labelset(who, ref) as (session, ls):
            service.require_owner(who, ls, "read its snapshots")
            return service.snapshot_json(ls, service.get_snapshot(session, ls, version), rows=True)

    # -- the standalone labeling page -------------------------------------------------------
    def page(template: str, title: str, config: dict, request: Request) -> HTMLResponse:
        token = read_signed_cookie(cookie_secret, cookie_name, request.cookies.get(cookie_name))
        config = {**config, "api": f"{prefix}{base}/", "xsrf": xsrf_token(cookie_secret, token) if token else ""}
        text = (PAGE_DIR / template).read_text()
        hub_root = prefix.rsplit("/services/", 1)[0] + "/"
        text = (text.replace("{{title}}", html.escape(title))
                .replace("{{prefix}}", html.escape(prefix)).replace("{{hub}}", html.escape(hub_root))
                .replace("{{config}}", html.escape(json.dumps(config), quote=False)))
        return HTMLResponse(text, headers={"Cache-Control": "no-store"})

    @router.get("/label/", include_in_schema=False)
    def label_index(request: Request, who: Identity = Depends(allow(*LABELING))) -> HTMLResponse:
        with db.session() as session:
            sets = [service.labelset_json(session, ls, who.name) for ls in service.visible(session, who)]
        return page("page.html", "Labeling", {"labelsets": sets, "user": who.name,
                                               "base": f"{prefix}/label/"}, request)

    @router.get("/label/{ref}", include_in_schema=False)
    def label_page(ref: str, request: Request, who: Identity = Depends(allow(*LABELING))) -> HTMLResponse:
        with labelset(who, ref) as (session, ls):
            data = service.labelset_json(session, ls, who.name)
        return page("page.html", ls.name, {"labelset": data, "user": who.name}, request)

    return router


def asset_router(prefix: str) -> APIRouter:
    """The labeling page's script and styles (authz.PUBLIC_ROUTES: they hold no data, and a
    module script is fetched like an API call, which would need the XSRF token)."""
    router = APIRouter(prefix=prefix)

    def asset(name: str, folder: str, media_type: str):
        async def serve() -> FileResponse:
            path = (_widget_dir() if folder == "widgets" else PAGE_DIR) / name
            return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})

        serve.__name__ = "label_asset_" + name.replace(".", "_")
        return serve

    for name, (folder, media_type) in PAGE_ASSETS.items():
        router.add_api_route(f"/static/label/{name}", asset(name, folder, media_type),
                             methods=["GET"], include_in_schema=False)
    return router


def _object(body: Any, fields: str) -> dict:
    if not isinstance(body, dict):
        raise LabelError(f"The body is a JSON object: {fields}.")
    return body
