"""The feature store's rules: definitions, ownership, the catalog, online values.

Definitions arrive as Feast protobuf messages (never pickles), are checked whole (kinds, sources,
owners, references) and are then applied together or not at all. Feast's registry keeps them;
the owner is the view's and entity's Feast ``owner`` field, set here, never by the caller.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import owners
from ..errors import PlatformError
from ..services.api.authz import is_owner_or_admin
from ..services.api.identity import Identity
from ..unixusers import AccountError
from .models import FAILED, RUNNING, SUCCEEDED, FeatureStats, Materialization
from .repo import FeatureRepo, FeatureSettings

from himalia.features.spec import EntitySpec, FeatureSpec, ViewSpec, parse_ref

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
KINDS = ("entity", "feature_view")
#: Object kinds Feast has that carry code (pickled functions) or read streams: refused.
REFUSED = {
    "on_demand_feature_view": "on-demand feature views run pickled Python functions",
    "stream_feature_view": "stream feature views run pickled Python functions",
    "feature_service": "feature services are not supported yet; list the feature references",
}
#: How long a materialization may stay "running" before the catalog calls it abandoned.
STALE_RUN = timedelta(hours=6)


class FeatureError(PlatformError):
    """A request about features that cannot be carried out; 422 unless said otherwise."""


def _proto_bytes(item: dict, index: int) -> bytes:
    try:
        return base64.b64decode(item["proto"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise FeatureError(f"objects[{index}]: 'proto' must be the base64 of a Feast protobuf "
                           "message (the SDK's features.apply sends it).") from None


def decode(objects: Any) -> list:
    """Feast objects from ``[{"kind", "proto"}]``; only entities and batch feature views over
    Parquet files, checked before Feast parses anything that could name code to load."""
    from feast import Entity, FeatureView
    from feast.protos.feast.core.DataSource_pb2 import DataSource as DataSourceProto
    from feast.protos.feast.core.Entity_pb2 import Entity as EntityProto
    from feast.protos.feast.core.FeatureView_pb2 import FeatureView as FeatureViewProto
    from google.protobuf.message import DecodeError

    if not isinstance(objects, list) or not objects:
        raise FeatureError("'objects' is a non-empty list of {kind, proto}.")
    decoded = []
    for index, item in enumerate(objects):
        if not isinstance(item, dict):
            raise FeatureError(f"objects[{index}] is an object {{kind, proto}}.")
        kind = item.get("kind")
        if kind in REFUSED:
            raise FeatureError(f"objects[{index}]: {REFUSED[kind]}.")
        if kind not in KINDS:
            raise FeatureError(f"objects[{index}]: kind {kind!r} is not one of {', '.join(KINDS)}.")
        raw = _proto_bytes(item, index)
        try:
            if kind == "entity":
                proto = EntityProto.FromString(raw)
                decoded.append(Entity.from_proto(proto))
                continue
            proto = FeatureViewProto.FromString(raw)
        except DecodeError:
            raise FeatureError(f"objects[{index}] is not a Feast {kind} message.") from None
        spec = proto.spec
        name = spec.name or f"objects[{index}]"
        if spec.HasField("feature_transformation") or spec.source_views:
            raise FeatureError(f"Feature view {name!r}: transformations and derived views run "
                               "code, which the platform does not accept; compute the columns "
                               "in the Parquet file instead.")
        if spec.HasField("stream_source"):
            raise FeatureError(f"Feature view {name!r}: stream sources are not supported.")
        if spec.batch_source.type != DataSourceProto.SourceType.BATCH_FILE:
            raise FeatureError(f"Feature view {name!r}: its source must be a FileSource over a "
                               "Parquet file (feast.FileSource(path=..., timestamp_field=...)).")
        if spec.batch_source.data_source_class_type not in ("", "feast.infra.offline_stores.file_source.FileSource"):
            raise FeatureError(f"Feature view {name!r}: its source must be a feast.FileSource.")
        try:
            decoded.append(FeatureView.from_proto(proto))
        except Exception as e:  # a malformed message: say what Feast said
            raise FeatureError(f"Feature view {name!r} cannot be read: {e}") from None
    return decoded


def files_root(settings: FeatureSettings, owner: str) -> PurePosixPath:
    """Where ``owner``'s own files are: their Unix account's home, or their folder under the
    state directory."""
    try:
        return owners.files_root(owner, system_users=settings.system_users,
                                 user_prefix=settings.user_prefix, users_root=settings.users_root)
    except (KeyError, AccountError):
        raise FeatureError(f"{owner} has no Unix account yet: start your server once, then "
                           "apply again.", 409) from None


def check_source_path(settings: FeatureSettings, owner: str, view: str, path: str) -> str:
    """A view's source must be a Parquet file (or folder) among its owner's own files."""
    if not path or not path.startswith("/"):
        raise FeatureError(f"Feature view {view!r}: the source path {path!r} must be absolute "
                           "(the SDK makes it so).")
    normal = PurePosixPath(os.path.normpath(path))
    root = files_root(settings, owner)
    if normal != root and root not in normal.parents:
        raise FeatureError(f"Feature view {view!r}: the source {path} is outside your files "
                           f"({root}); put the Parquet file there.", 403)
    if "://" in path:
        raise FeatureError(f"Feature view {view!r}: the source must be a local Parquet file.")
    return str(normal)


def _owner_of(obj) -> str:
    return getattr(obj, "owner", "") or ""


@dataclass
class Change:
    kind: str
    name: str
    action: str  # add | update | unchanged
    changes: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"kind": self.kind, "name": self.name, "action": self.action, "changes": self.changes}


def _comparable(obj):
    """An object's Feast spec without what the registry sets (owner, project, timestamps)."""
    spec = obj.to_proto().spec
    spec.ClearField("owner")
    spec.ClearField("project")
    if spec.DESCRIPTOR.fields_by_name.get("batch_source") is not None:
        for name in ("meta", "project", "owner"):
            spec.batch_source.ClearField(name)
    return spec


def _diff(current, new, kind: str) -> Change:
    if current is None:
        return Change(kind, new.name, "add")
    before, after = _comparable(current), _comparable(new)
    changes = []
    for fd in before.DESCRIPTOR.fields:
        old, now = getattr(before, fd.name), getattr(after, fd.name)
        if old != now:
            changes.append({"field": fd.name, "before": _show(old), "after": _show(now)})
    return Change(kind, new.name, "update" if changes else "unchanged", changes)


def _show(value) -> str:
    from google.protobuf import text_format
    from google.protobuf.message import Message

    if isinstance(value, Message):
        text = text_format.MessageToString(value, as_one_line=True)
    elif hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
        items = list(value.items()) if hasattr(value, "items") else list(value)
        text = ", ".join(text_format.MessageToString(i, as_one_line=True) if isinstance(i, Message)
                         else str(i) for i in items)
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= 400 else text[:397] + "..."


@dataclass
class Plan:
    changes: list[Change]
    objects: list

    def to_json(self) -> dict:
        return {"changes": [c.to_json() for c in self.changes],
                "summary": {a: sum(c.action == a for c in self.changes)
                            for a in ("add", "update", "unchanged")}}


def _registry_entities(repo: FeatureRepo) -> dict:
    return {e.name: e for e in repo.registry.list_entities(repo.project, allow_cache=False)}


def _registry_views(repo: FeatureRepo) -> dict:
    return {v.name: v for v in repo.registry.list_feature_views(repo.project, allow_cache=False)}


def plan(repo: FeatureRepo, who: Identity, objects: list) -> Plan:
    """Check ``objects`` whole and say what applying them would change."""
    from feast import Entity, FeatureView

    entities = _registry_entities(repo)
    views = _registry_views(repo)
    names = set()
    new_entities = {o.name: o for o in objects if isinstance(o, Entity)}
    changes = []
    for obj in objects:
        kind = "entity" if isinstance(obj, Entity) else "feature_view"
        if not NAME.match(obj.name or ""):
            raise FeatureError(f"{kind.replace('_', ' ').capitalize()} name {obj.name!r}: use letters, "
                               "digits and underscores, starting with a letter.")
        if (kind, obj.name) in names:
            raise FeatureError(f"{obj.name!r} is given twice.")
        names.add((kind, obj.name))
        current = (entities if kind == "entity" else views).get(obj.name)
        owner = _owner_of(current) if current is not None else who.name
        if isinstance(obj, FeatureView):
            if not is_owner_or_admin(who, owner):
                raise FeatureError(f"The feature view {obj.name!r} belongs to {owner}; only they "
                                   "(or an admin) may change it. Choose another name for yours.", 403)
            _check_view(repo, who, obj, owner, entities, new_entities)
        obj.owner = owner
        change = _diff(current, obj, kind)
        if current is not None and not is_owner_or_admin(who, owner) and change.action != "unchanged":
            what = "entity" if kind == "entity" else "feature view"
            raise FeatureError(f"The {what} {obj.name!r} belongs to {owner}; only they (or an admin) "
                               f"may change it. Choose another name for yours.", 403)
        changes.append(change)
    return Plan(changes, objects)


def _check_view(repo: FeatureRepo, who: Identity, fv, owner: str, entities: dict,
                new_entities: dict) -> None:
    for name in fv.entities:
        if name not in entities and name not in new_entities:
            close = difflib.get_close_matches(name, [*entities, *new_entities], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else "; apply the Entity with the view"
            raise FeatureError(f"Feature view {fv.name!r} uses the entity {name!r}, which is not "
                               f"defined{hint}.")
    if not fv.features:
        raise FeatureError(f"Feature view {fv.name!r} has no features: give its schema "
                           "(schema=[Field(name=..., dtype=...)]) or let the SDK read it from the file.")
    keys = {c.name for c in fv.entity_columns}
    seen = set()
    for f in fv.features:
        if f.name in seen or f.name in keys:
            raise FeatureError(f"Feature view {fv.name!r}: the column {f.name!r} appears twice.")
        seen.add(f.name)
    source = fv.batch_source
    source.file_options.uri = check_source_path(repo.settings, owner, fv.name, source.path)
    if not source.timestamp_field:
        raise FeatureError(f"Feature view {fv.name!r}: its source needs timestamp_field "
                           "(the column with each row's event time).")


def apply(repo: FeatureRepo, who: Identity, objects: list) -> Plan:
    """Apply ``objects`` together: either all of them are in the registry afterwards, or none
    changed (what was applied is put back when a later one fails)."""
    from feast import Entity

    with repo.write_lock:
        result = plan(repo, who, objects)
        entities = _registry_entities(repo)
        views = _registry_views(repo)
        done: list[tuple[str, str, Any]] = []
        try:
            for obj, change in zip(objects, result.changes):
                if change.action == "unchanged":
                    continue
                if isinstance(obj, Entity):
                    done.append(("entity", obj.name, entities.get(obj.name)))
                    repo.registry.apply_entity(obj, repo.project, commit=True)
                else:
                    done.append(("feature_view", obj.name, views.get(obj.name)))
                    repo.registry.apply_data_source(obj.batch_source, repo.project, commit=True)
                    repo.registry.apply_feature_view(obj, repo.project, commit=True)
            changed_views = [o for o, c in zip(objects, result.changes)
                             if c.action != "unchanged" and not isinstance(o, Entity)]
            if changed_views:
                _update_online_tables(repo, changed_views)
        except Exception as e:
            _undo(repo, done)
            if isinstance(e, PlatformError):
                raise
            raise FeatureError(f"Nothing was applied: {e}", 422) from e
        return result


def _update_online_tables(repo: FeatureRepo, views: list) -> None:
    entities = list(_registry_entities(repo).values())
    repo.provider().update_infra(project=repo.project, tables_to_delete=[], tables_to_keep=views,
                                 entities_to_delete=[], entities_to_keep=entities, partial=True)


def _undo(repo: FeatureRepo, done: list) -> None:
    for kind, name, previous in reversed(done):
        try:
            if kind == "entity":
                if previous is None:
                    repo.registry.delete_entity(name, repo.project, commit=True)
                else:
                    repo.registry.apply_entity(previous, repo.project, commit=True)
            elif previous is None:
                repo.registry.delete_feature_view(name, repo.project, commit=True)
            else:
                repo.registry.apply_feature_view(previous, repo.project, commit=True)
        except Exception:  # best effort; the first error is what the caller hears about
            pass


def delete_view(repo: FeatureRepo, who: Identity, name: str) -> None:
    with repo.write_lock:
        fv = get_view(repo, name)
        owner = _owner_of(fv)
        if not is_owner_or_admin(who, owner):
            raise FeatureError(f"The feature view {name!r} belongs to {owner}; only they (or an "
                               "admin) may delete it.", 403)
        repo.registry.delete_feature_view(name, repo.project, commit=True)
        repo.provider().update_infra(project=repo.project, tables_to_delete=[fv], tables_to_keep=[],
                                     entities_to_delete=[], entities_to_keep=[], partial=True)


# ---------------------------------------------------------------------------------- reading


def get_view(repo: FeatureRepo, name: str):
    views = _registry_views(repo)
    if name not in views:
        close = difflib.get_close_matches(name, list(views), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else \
            (f"; the views are {', '.join(sorted(views))}" if views else "; none is defined yet")
        raise FeatureError(f"No feature view {name!r}{hint}", 404)
    return views[name]


def value_type(dtype) -> str:
    return dtype.to_value_type().name


def view_spec(fv) -> ViewSpec:
    source = fv.batch_source
    return ViewSpec(
        name=fv.name,
        path=source.path,
        timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column or "",
        field_mapping=dict(source.field_mapping or {}),
        join_keys=tuple(EntitySpec(c.name, value_type(c.dtype)) for c in fv.entity_columns),
        features=tuple(FeatureSpec(f.name, value_type(f.dtype)) for f in fv.features),
        ttl_seconds=fv.ttl.total_seconds() if fv.ttl else 0,
        owner=_owner_of(fv),
    )


def definition_hash(fv) -> str:
    """A short hash of a view's definition (what a training run records and a deploy checks)."""
    spec = _comparable(fv)
    return hashlib.sha256(spec.SerializeToString(deterministic=True)).hexdigest()[:16]


def specs_for(repo: FeatureRepo, refs: list[str]) -> dict:
    """The views that ``refs`` read, as ViewSpec JSON, with each view's definition hash; an
    unknown view or feature names close matches."""
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
        raise FeatureError("'refs' is a non-empty list of 'view:feature' strings.")
    views = _registry_views(repo)
    known = [f"{v.name}:{f.name}" for v in views.values() for f in v.features]
    out: dict[str, Any] = {}
    for ref in refs:
        try:
            view, feature = parse_ref(ref)
        except ValueError as e:
            raise FeatureError(str(e)) from None
        fv = views.get(view)
        if fv is None or feature not in {f.name for f in fv.features}:
            close = difflib.get_close_matches(ref, known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            what = f"view {view!r}" if fv is None else f"feature {feature!r} in view {view!r}"
            raise FeatureError(f"Unknown feature reference {ref!r}: there is no {what}{hint}", 404)
        if view not in out:
            out[view] = {"spec": view_spec(fv).to_json(), "hash": definition_hash(fv)}
    return out


def registry_version(repo: FeatureRepo) -> str:
    """When the registry last changed (Feast's own timestamp)."""
    try:
        updated = repo.registry.get_project_metadata(repo.project, "last_updated_timestamp")
    except Exception:
        updated = None
    return str(updated or "")


def _freshness(view: str, stats: FeatureStats | None, fv, session: Session) -> dict:
    intervals = getattr(fv, "materialization_intervals", []) or []
    through = max((end for _, end in intervals), default=None)
    last = session.scalar(select(Materialization).where(Materialization.view == view)
                          .order_by(Materialization.id.desc()).limit(1))
    return {
        "latest_event": iso(stats.latest_event) if stats else None,
        "materialized_through": iso(_aware(through)),
        "last_materialization": materialization_json(last) if last else None,
    }


def iso(when: datetime | None) -> str | None:
    when = _aware(when)
    return when.isoformat() if when else None


def _aware(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def materialization_json(m: Materialization) -> dict:
    state = m.state
    if state == RUNNING and datetime.now(timezone.utc) - _aware(m.started_at) > STALE_RUN:
        state = FAILED
    return {"id": m.id, "view": m.view, "owner": m.owner, "start": iso(m.start),
            "end": iso(m.end), "rows": m.rows, "state": state, "message": m.message,
            "job_run_id": m.job_run_id, "started_at": iso(m.started_at),
            "ended_at": iso(m.ended_at)}


def view_json(fv, stats: FeatureStats | None, session: Session, *, full: bool = False) -> dict:
    spec = view_spec(fv)
    out = {
        "name": fv.name, "owner": spec.owner, "description": fv.description or "",
        "tags": dict(fv.tags or {}), "entities": list(fv.entities),
        "join_keys": [{"name": k.name, "dtype": k.dtype} for k in spec.join_keys],
        "features": [{"name": f.name, "dtype": value_type(f.dtype), "description": f.description or ""}
                     for f in fv.features],
        "ttl_seconds": spec.ttl_seconds, "online": bool(fv.online),
        "source": {"path": spec.path, "timestamp_field": spec.timestamp_field,
                   "created_timestamp_column": spec.created_timestamp_column,
                   "field_mapping": spec.field_mapping},
        "created_at": iso(fv.created_timestamp), "updated_at": iso(fv.last_updated_timestamp),
        "rows": stats.rows if stats else None, "entity_count": stats.entities if stats else None,
        "freshness": _freshness(fv.name, stats, fv, session),
        "hash": definition_hash(fv),
    }
    if full:
        out["statistics"] = stats.stats if stats else {}
        out["statistics_at"] = iso(stats.computed_at) if stats else None
        out["spec"] = spec.to_json()
    return out


def entity_json(e) -> dict:
    return {"name": e.name, "join_keys": [e.join_key], "value_type": e.value_type.name,
            "description": e.description or "", "owner": _owner_of(e), "tags": dict(e.tags or {})}


def _stats_by_view(session: Session) -> dict[str, FeatureStats]:
    return {s.view: s for s in session.scalars(select(FeatureStats))}


def _matches(fv, words: list[str]) -> int:
    """How well a view matches the search words (0: not at all)."""
    fields = [fv.name, fv.description or "", _owner_of(fv), " ".join(fv.entities),
              " ".join(f"{k} {v}" for k, v in (fv.tags or {}).items()),
              " ".join(f"{f.name} {f.description or ''}" for f in fv.features)]
    text = [f.lower() for f in fields]
    score = 0
    for word in words:
        hits = [i for i, t in enumerate(text) if word in t]
        if not hits:
            return 0
        score += 3 if 0 in hits else 1
    return score


def catalog(repo: FeatureRepo, session: Session, q: str = "") -> dict:
    views = list(_registry_views(repo).values())
    words = [w for w in q.lower().split() if w]
    if words:
        scored = [(s, v) for v in views if (s := _matches(v, words))]
        views = [v for _, v in sorted(scored, key=lambda sv: (-sv[0], sv[1].name))]
    else:
        views.sort(key=lambda v: v.name)
    stats = _stats_by_view(session)
    entities = sorted(_registry_entities(repo).values(), key=lambda e: e.name)
    if words:
        entities = [e for e in entities
                    if all(w in f"{e.name} {e.join_key} {e.description or ''}".lower() for w in words)]
    return {"views": [view_json(v, stats.get(v.name), session) for v in views],
            "entities": [entity_json(e) for e in entities],
            "registry_version": registry_version(repo)}


def describe(repo: FeatureRepo, session: Session, name: str) -> dict:
    fv = get_view(repo, name)
    stats = session.scalar(select(FeatureStats).where(FeatureStats.view == name))
    out = view_json(fv, stats, session, full=True)
    out["materializations"] = [
        materialization_json(m) for m in session.scalars(
            select(Materialization).where(Materialization.view == name)
            .order_by(Materialization.id.desc()).limit(20))]
    out["versions"] = _versions(repo, name)
    return out


def _versions(repo: FeatureRepo, name: str) -> list[dict]:
    try:
        versions = repo.registry.list_feature_view_versions(name, repo.project)
    except Exception:
        return []
    return [{"version": v.get("version"), "created_at": iso(v.get("created_timestamp"))}
            for v in versions]


# ------------------------------------------------------------------------------- statistics


STAT_KEYS = {"count", "nulls", "mean", "std", "min", "max", "histogram", "distinct"}


def save_stats(session: Session, view: str, body: Any) -> FeatureStats:
    """Statistics the owner's kernel computed from the view's data (it reads the files)."""
    if not isinstance(body, dict):
        raise FeatureError("statistics: an object {rows, entities, latest_event, features}.")
    features = body.get("features") or {}
    if not isinstance(features, dict):
        raise FeatureError("statistics.features: an object feature -> {count, nulls, ...}.")
    clean = {}
    for name, values in features.items():
        if not isinstance(values, dict):
            raise FeatureError(f"statistics.features.{name}: an object.")
        clean[str(name)] = {k: v for k, v in values.items() if k in STAT_KEYS}
    latest = body.get("latest_event")
    try:
        latest = datetime.fromisoformat(latest) if latest else None
    except (TypeError, ValueError):
        raise FeatureError("statistics.latest_event: an ISO 8601 time.") from None
    row = session.scalar(select(FeatureStats).where(FeatureStats.view == view))
    if row is None:
        row = FeatureStats(view=view)
        session.add(row)
    row.rows = int(body.get("rows") or 0)
    row.entities = int(body.get("entities") or 0)
    row.latest_event = latest
    row.stats = clean
    row.computed_at = datetime.now(timezone.utc)
    return row


# --------------------------------------------------------------------------- online values


def require_view_owner(who: Identity, fv) -> None:
    owner = _owner_of(fv)
    if not is_owner_or_admin(who, owner):
        raise FeatureError(f"Only the owner of {fv.name!r} ({owner}) materializes it: its data "
                           "is read from their files.", 403)


_online_write = threading.Lock()


def _datetime(value):
    import pandas as pd

    return None if value is None else pd.Timestamp(value).to_pydatetime()


def write_online(repo: FeatureRepo, fv, table) -> int:
    """Write the latest values in ``table`` (an Arrow table: join keys, event timestamp,
    created timestamp when the view has one, features) with Feast's own writer."""
    import pyarrow as pa
    from feast.utils import _convert_arrow_to_proto
    from feast.value_type import ValueType

    spec = view_spec(fv)
    needed = [k.name for k in spec.join_keys] + [f.name for f in spec.features] + [spec.timestamp_field]
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise FeatureError(f"The rows for {fv.name!r} lack column(s) {', '.join(missing)}.")
    ts = table.column(spec.timestamp_field)
    if not pa.types.is_timestamp(ts.type):
        raise FeatureError(f"{spec.timestamp_field}: a timestamp column is needed.")
    join_keys = {k.name: ValueType[k.dtype] for k in spec.join_keys}
    # Feast converts the first record batch of a table only: hand it every batch.
    # Times as plain datetimes, which Feast's SQLite store writes as ISO text (and reads back).
    rows = [(key, values, _datetime(ts), _datetime(created))
            for batch in table.combine_chunks().to_batches()
            for key, values, ts, created in _convert_arrow_to_proto(batch, fv, join_keys)]
    with _online_write:
        repo.provider().online_write_batch(repo.store.config, fv, rows, progress=None)
    return len(rows)


def start_materialization(session: Session, who: Identity, fv, start: datetime, end: datetime,
                          job_run_id: str | None) -> Materialization:
    m = Materialization(view=fv.name, owner=who.name, start=start, end=end, rows=0,
                        state=RUNNING, message="", job_run_id=job_run_id)
    session.add(m)
    session.flush()
    return m


def finish_materialization(repo: FeatureRepo, session: Session, m: Materialization, ok: bool,
                           message: str = "") -> None:
    m.state = SUCCEEDED if ok else FAILED
    m.message = message[:2000]
    m.ended_at = datetime.now(timezone.utc)
    if ok:
        fv = get_view(repo, m.view)
        with repo.write_lock:
            repo.registry.apply_materialization(fv, repo.project, _aware(m.start), _aware(m.end),
                                                commit=True)


def next_interval(fv, end: datetime) -> datetime:
    """Where an incremental materialization of ``fv`` up to ``end`` starts: after the last one,
    else ``end - ttl`` (or the beginning of time without a TTL)."""
    intervals = getattr(fv, "materialization_intervals", []) or []
    if intervals:
        return _aware(max(e for _, e in intervals))
    if fv.ttl and fv.ttl.total_seconds() > 0:
        return end - fv.ttl
    return datetime(1970, 1, 1, tzinfo=timezone.utc)


def owned_views(repo: FeatureRepo, who: Identity, names: list[str] | None) -> list:
    views = _registry_views(repo)
    if names:
        return [get_view(repo, n) for n in names]
    return [v for v in views.values() if _owner_of(v) == who.name]


def clear_stats(session: Session, view: str) -> None:
    row = session.scalar(select(FeatureStats).where(FeatureStats.view == view))
    if row is not None:
        session.delete(row)
