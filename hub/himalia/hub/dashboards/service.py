"""The rules of dashboards: publishing, versions, sharing, who may see one, freshness.

Plain functions over a Session and an :class:`Identity`; the API (``api.py``) and the Voilà
service (``render.py``) both call them, so "who may see a dashboard" is decided here only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

import nbformat
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from .. import owners
from ..errors import PlatformError
from ..jobs.models import SUCCEEDED, Job, JobRun
from ..services.api.authz import ADMIN, LABELER
from ..unixusers import AccountError
from .models import Dashboard, DashboardVersion

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
VIEWER = "viewer"
#: Paths of the dashboards service that no dashboard may be named.
RESERVED = frozenset({"api", "voila", "data", "oauth_callback", "logout", "static", "login"})
#: A published notebook's largest size (its outputs included).
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
#: Where the dashboards service serves a dashboard and the gallery, under the hub's URL.
SERVICE_PREFIX = "/services/dashboards/"


class DashboardError(PlatformError):
    """A dashboard request that cannot be carried out (400 unless said otherwise)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message, status)


@dataclass(frozen=True)
class DashboardSettings:
    """Where people's files are (a notebook published by path must be inside them) and the
    platform's public URL (for the links in answers)."""

    public_url: str = ""
    system_users: bool = False
    user_prefix: str = "jupyter-"
    users_root: str = ""

    def to_json(self) -> dict:
        return {"public_url": self.public_url, "system_users": self.system_users,
                "user_prefix": self.user_prefix, "users_root": self.users_root}


def now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


# -- who may see what ------------------------------------------------------------------------
def may_view(d: Dashboard, name: str, roles: Iterable[str], groups: Iterable[str]) -> bool:
    """The owner, admins, the people and groups it is shared with, and (when shared with
    viewers) everyone holding the viewer role. Labelers see no dashboards."""
    roles = set(roles) - {LABELER}
    if not roles:
        return False
    return (name == d.owner or ADMIN in roles or name in set(d.shared_users or ())
            or bool(set(groups) & set(d.shared_groups or ()))
            or (bool(d.shared_viewers) and VIEWER in roles))


def may_manage(d: Dashboard, name: str, roles: Iterable[str]) -> bool:
    return name == d.owner or ADMIN in set(roles)


def find(session: Session, name: str, viewer: str, roles: Iterable[str], groups: Iterable[str]
         ) -> Dashboard:
    """The dashboard ``name`` when the caller may see it; 404 otherwise (its existence is not
    revealed to people it is not shared with)."""
    d = session.scalar(select(Dashboard).where(Dashboard.name == name))
    if d is None or not may_view(d, viewer, roles, groups):
        raise DashboardError(f"No dashboard {name!r} is shared with you.", 404)
    return d


def find_managed(session: Session, name: str, who_name: str, roles: Iterable[str],
                 groups: Iterable[str]) -> Dashboard:
    d = find(session, name, who_name, roles, groups)
    if not may_manage(d, who_name, roles):
        raise DashboardError(f"Only its owner '{d.owner}' or an admin may change dashboard {name!r}.", 403)
    return d


def visible(session: Session, name: str, roles: Iterable[str], groups: Iterable[str], *,
            mine: bool = False, offset: int = 0, limit: int = 100) -> list[Dashboard]:
    roles = set(roles)
    query = select(Dashboard).order_by(Dashboard.updated_at.desc(), Dashboard.id.desc())
    if mine:
        query = query.where(Dashboard.owner == name)
    elif ADMIN not in roles:
        # Shared lists are JSON: narrow by what SQL can see, then decide with may_view.
        clauses = [Dashboard.owner == name, Dashboard.shared_users.is_not(None)]
        if VIEWER in roles:
            clauses.append(Dashboard.shared_viewers.is_(True))
        query = query.where(or_(*clauses))
    found = [d for d in session.scalars(query) if may_view(d, name, roles, groups)]
    return found[offset:offset + limit]


# -- input -----------------------------------------------------------------------------------
def _names(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise DashboardError(f"{what}: a list of names, e.g. [\"ann\"].")
    return sorted(set(value))


def parse_share(value: Any) -> tuple[list[str], list[str], bool]:
    if value is None:
        return [], [], False
    if not isinstance(value, dict):
        raise DashboardError('share: an object {"users": [...], "groups": [...], "viewers": true|false}.')
    unknown = set(value) - {"users", "groups", "viewers"}
    if unknown:
        raise DashboardError(f"share: unknown field(s) {sorted(unknown)}; use users, groups, viewers.")
    viewers = value.get("viewers", False)
    if not isinstance(viewers, bool):
        raise DashboardError("share.viewers: true or false.")
    return _names(value.get("users"), "share.users"), _names(value.get("groups"), "share.groups"), viewers


def _text(value: Any, what: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DashboardError(f"{what}: a string.")
    if len(value) > limit:
        raise DashboardError(f"{what}: at most {limit} characters.")
    return value


def check_name(name: Any) -> str:
    if isinstance(name, str) and name in RESERVED:
        raise DashboardError(f"name: {name!r} is reserved by the dashboards service; choose another.")
    if not isinstance(name, str) or not NAME.match(name):
        raise DashboardError("name: 1-63 lowercase letters, digits and '-', starting with a letter "
                             "or digit (it is the dashboard's address), e.g. \"churn-report\".")
    return name


def read_notebook(settings: DashboardSettings, owner: str, body: dict) -> dict:
    """The notebook to publish, checked with nbformat: sent as JSON, or read from ``path``
    inside the owner's own files."""
    notebook, path = body.get("notebook"), body.get("path")
    if (notebook is None) == (path is None):
        raise DashboardError('Send the notebook as "notebook" (nbformat v4 JSON) or its "path" '
                             "inside your files, not both.")
    if path is not None:
        if not isinstance(path, str) or not path:
            raise DashboardError("path: the notebook's path inside your files, e.g. \"reports/churn.ipynb\".")
        try:
            root = owners.files_root(owner, system_users=settings.system_users,
                                     user_prefix=settings.user_prefix, users_root=settings.users_root)
        except AccountError:
            raise DashboardError(f"{owner} has no Unix account yet: start your server once.", 409) from None
        full = PurePosixPath(os.path.normpath(str(root / path)))
        if full != root and root not in full.parents:
            raise DashboardError(f"path: {path} is outside your files ({root}).", 403)
        try:
            if Path(full).stat().st_size > MAX_NOTEBOOK_BYTES:
                raise DashboardError(f"{path}: larger than {MAX_NOTEBOOK_BYTES >> 20} MiB.", 413)
            notebook = json.loads(Path(full).read_text())
        except FileNotFoundError:
            raise DashboardError(f"path: {path} does not exist in your files.", 404) from None
        except PermissionError:
            raise DashboardError(f"path: the platform cannot read {path}; send the notebook's "
                                 "JSON as \"notebook\" (the SDK and %publish do).", 403) from None
        except (OSError, ValueError) as e:
            raise DashboardError(f"path: {path} is not a notebook's JSON ({e}).") from None
    if not isinstance(notebook, dict):
        raise DashboardError("notebook: the notebook's nbformat v4 JSON object.")
    try:
        nb = nbformat.from_dict(notebook)
        if nb.get("nbformat") != 4:
            raise DashboardError(f"notebook: nbformat {nb.get('nbformat')} is not supported; save "
                                 "it with JupyterLab (nbformat 4).")
        nbformat.validate(nb)
    except nbformat.ValidationError as e:
        raise DashboardError(f"notebook: not a valid nbformat v4 notebook ({e.message}).") from None
    return nb


def notebook_text(nb: dict) -> str:
    text = nbformat.writes(nbformat.from_dict(nb))
    if len(text.encode()) > MAX_NOTEBOOK_BYTES:
        raise DashboardError(f"notebook: larger than {MAX_NOTEBOOK_BYTES >> 20} MiB; clear large "
                             "outputs before publishing.", 413)
    return text


def resolve_job(session: Session, owner: str, roles: Iterable[str], ref: Any) -> Job | None:
    """The job a dashboard shows the outputs of: the owner's own (by id or name), or a
    published one."""
    if ref is None:
        return None
    if isinstance(ref, bool) or not isinstance(ref, (int, str)) or ref == "":
        raise DashboardError("job_id: a job's id or name.")
    if isinstance(ref, int) or ref.isdigit():
        job = session.get(Job, int(ref))
    else:
        job = session.scalar(select(Job).where(Job.owner == owner, Job.name == ref))
    if job is None or not (job.owner == owner or ADMIN in set(roles) or job.published):
        raise DashboardError(f"job_id: you have no job {ref!r}.", 404)
    return job


# -- changes ---------------------------------------------------------------------------------
def publish(session: Session, settings: DashboardSettings, who_name: str, roles: list[str],
            groups: list[str], body: Any) -> tuple[Dashboard, bool]:
    """Create a dashboard, or publish a new version of one of the caller's: (dashboard, new)."""
    if not isinstance(body, dict):
        raise DashboardError('Send {"name", "notebook" | "path", "title"?, "description"?, '
                             '"job_id"?, "share"?}.')
    unknown = set(body) - {"name", "notebook", "path", "title", "description", "job_id", "share"}
    if unknown:
        raise DashboardError(f"Unknown field(s) {sorted(unknown)}; a dashboard has name, notebook "
                             "or path, title, description, job_id, share.")
    name = check_name(body.get("name"))
    existing = session.scalar(select(Dashboard).where(Dashboard.name == name).with_for_update())
    if existing is not None and not may_manage(existing, who_name, roles):
        raise DashboardError(f"The name {name!r} is taken by another person's dashboard; choose "
                             "another.", 409)
    owner = existing.owner if existing is not None else who_name
    nb = read_notebook(settings, owner, body)
    text = notebook_text(nb)
    title = _text(body.get("title"), "title", 200)
    description = _text(body.get("description"), "description", 5000)
    job = resolve_job(session, owner, roles, body["job_id"]) if "job_id" in body else None
    if "share" in body:
        users, share_groups, viewers = parse_share(body.get("share"))
    stamp = now()
    if existing is None:
        d = Dashboard(name=name, owner=owner, title=title or _first_heading(nb) or name,
                      description=description, job_id=job.id if job else None,
                      shared_users=users if "share" in body else [],
                      shared_groups=share_groups if "share" in body else [],
                      shared_viewers=viewers if "share" in body else False,
                      version=1, views=0, created_at=stamp, updated_at=stamp)
        session.add(d)
        session.flush()
    else:
        d = existing
        d.version += 1
        d.updated_at = stamp
        if "title" in body:
            d.title = title or d.title
        if "description" in body:
            d.description = description
        if "job_id" in body:
            d.job_id = job.id if job else None
        if "share" in body:
            d.shared_users, d.shared_groups, d.shared_viewers = users, share_groups, viewers
    session.add(DashboardVersion(dashboard_id=d.id, version=d.version, notebook=text,
                                 sha256=hashlib.sha256(text.encode()).hexdigest(), created_at=stamp))
    session.flush()
    return d, existing is None


def update_dashboard(session: Session, d: Dashboard, roles: list[str], body: Any) -> Dashboard:
    if not isinstance(body, dict):
        raise DashboardError('Send {"title"?, "description"?, "job_id"?, "share"?}.')
    unknown = set(body) - {"title", "description", "job_id", "share"}
    if unknown:
        raise DashboardError(f"Unknown field(s) {sorted(unknown)}; change title, description, "
                             "job_id or share (publish a new notebook with POST).")
    if "title" in body:
        d.title = _text(body["title"], "title", 200) or d.name
    if "description" in body:
        d.description = _text(body["description"], "description", 5000)
    if "job_id" in body:
        job = resolve_job(session, d.owner, roles, body["job_id"])
        d.job_id = job.id if job else None
    if "share" in body:
        d.shared_users, d.shared_groups, d.shared_viewers = parse_share(body["share"])
    d.updated_at = now()
    return d


def _first_heading(nb: dict) -> str:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            source = cell.get("source", "")
            for line in ("".join(source) if isinstance(source, list) else str(source)).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()[:200]
    return ""


def unpublish(session: Session, d: Dashboard) -> None:
    """Remove a dashboard and its versions (explicitly: SQLite may not enforce the cascade)."""
    session.execute(delete(DashboardVersion).where(DashboardVersion.dashboard_id == d.id))
    session.delete(d)


def record_view(session: Session, dashboard_id: int) -> None:
    session.execute(update(Dashboard).where(Dashboard.id == dashboard_id)
                    .values(views=Dashboard.views + 1, last_viewed_at=now()))


# -- reading ---------------------------------------------------------------------------------
def current_version(session: Session, d: Dashboard) -> DashboardVersion:
    return session.scalar(select(DashboardVersion).where(
        DashboardVersion.dashboard_id == d.id, DashboardVersion.version == d.version))


def versions(session: Session, d: Dashboard) -> list[DashboardVersion]:
    return list(session.scalars(select(DashboardVersion).where(DashboardVersion.dashboard_id == d.id)
                                .order_by(DashboardVersion.version.desc())))


def freshness(session: Session, job_id: int | None) -> tuple[int, datetime] | None:
    """The linked job's newest succeeded run: (run id, when it finished)."""
    if job_id is None:
        return None
    row = session.execute(select(JobRun.id, JobRun.finished_at).where(
        JobRun.job_id == job_id, JobRun.state == SUCCEEDED).order_by(JobRun.id.desc()).limit(1)).first()
    return (row[0], _aware(row[1])) if row else None


def dashboard_json(session: Session, d: Dashboard, public_url: str) -> dict:
    job = session.get(Job, d.job_id) if d.job_id is not None else None
    fresh = freshness(session, d.job_id)
    base = public_url.rstrip("/") + SERVICE_PREFIX + d.name + "/"
    return {
        "id": d.id, "name": d.name, "title": d.title, "description": d.description,
        "owner": d.owner, "job_id": d.job_id, "job_name": job.name if job else None,
        "share": {"users": list(d.shared_users or []), "groups": list(d.shared_groups or []),
                  "viewers": bool(d.shared_viewers)},
        "version": d.version, "views": d.views, "url": base,
        "thumbnail_url": base + "thumbnail.png" if d.thumbnail else None,
        "freshness": {"run_id": fresh[0], "finished_at": fresh[1].isoformat() if fresh[1] else None}
        if fresh else None,
        "created": _aware(d.created_at).isoformat(), "updated": _aware(d.updated_at).isoformat(),
    }
