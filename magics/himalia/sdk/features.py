"""The feature store from Python: define Feast objects, browse the catalog, build point-in-time
training sets, load and read online values.

::

    from himalia.sdk import features
    features.apply([customer, customer_stats])          # plain Feast objects
    train = features.training_set(labels, ["customer_stats:ltv", "customer_stats:age"])
    features.materialize()                              # your views' latest values, online
    features.online(["customer_stats:ltv"], {"customer_id": [1, 2]})

Definitions go to the platform API (``/api/v1/features``), which keeps them in Feast's registry.
Data is read where it is, by this process: training sets and materialization read the views'
Parquet files with DuckDB (``himalia.features``); online values come straight from the online
store when this process can reach it, through the API otherwise.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .client import Client, HimaliaError
from .jobs import Jobs, current_run

from himalia.features.spec import ViewSpec, parse_ref

#: Rows per request when loading the online store.
UPLOAD_ROWS = 50_000
#: How long the definitions behind a set of refs are reused by :meth:`Features.online`.
SPECS_TTL = 10.0
ARROW_STREAM = "application/vnd.apache.arrow.stream"


class FeatureDefinitionError(HimaliaError):
    """A definition that cannot be applied as given; the message says what to change."""

    def __init__(self, message: str):
        super().__init__(message, 422)


def _encode(obj) -> dict:
    from feast import Entity, FeatureView

    if isinstance(obj, Entity):
        kind = "entity"
    elif isinstance(obj, FeatureView) and type(obj).__name__ in ("FeatureView", "BatchFeatureView"):
        kind = "feature_view"
    else:
        what = type(obj).__name__
        raise FeatureDefinitionError(
            f"{what} cannot be applied: give feast.Entity and feast.FeatureView objects "
            "(over a feast.FileSource)." + (" On-demand and stream views run code, which the "
                                             "platform does not accept." if "Demand" in what or
                                            "Stream" in what else ""))
    return {"kind": kind, "proto": base64.b64encode(obj.to_proto().SerializeToString()).decode()}


def _prepare_view(fv, entities: Mapping[str, Any]) -> ViewSpec:
    """Make a view's source path absolute, check its file against the view, fill in the
    schema Feast would infer, and return the view as the engine reads it."""
    import pyarrow as pa
    from feast import Field
    from feast.infra.offline_stores.file_source import FileSource
    from feast.type_map import pa_to_feast_value_type
    from feast.types import from_value_type

    from himalia.features.sources import SourceError, arrow_schema
    from himalia.features.spec import EntitySpec, FeatureSpec

    source = fv.batch_source
    if not isinstance(source, FileSource):
        raise FeatureDefinitionError(f"Feature view {fv.name!r}: its source must be a "
                                     "feast.FileSource over a Parquet file.")
    path = Path(os.path.expanduser(source.path))
    source.file_options.uri = str(path.resolve())
    try:
        schema = arrow_schema(source.path)
    except SourceError as e:
        raise FeatureDefinitionError(f"Feature view {fv.name!r}: {e}.") from None
    columns = {field.name: field.type for field in schema}
    mapping = dict(source.field_mapping or {})
    source_of = {view: src for src, view in mapping.items()}

    def column(name: str, what: str) -> Any:
        src = source_of.get(name, name)
        if src not in columns:
            raise FeatureDefinitionError(
                f"Feature view {fv.name!r}: {what} {name!r} is not a column of {source.path} "
                f"(its columns: {', '.join(columns)}).")
        return columns[src]

    for name, what in ((source.timestamp_field, "the timestamp field"),
                       (source.created_timestamp_column, "the created timestamp column")):
        if not name:
            continue
        kind = columns.get(source_of.get(name, name))
        if kind is None:
            raise FeatureDefinitionError(
                f"Feature view {fv.name!r}: {what} {name!r} is not a column of {source.path} "
                f"(its columns: {', '.join(columns)}).")
        if not pa.types.is_timestamp(kind):
            raise FeatureDefinitionError(f"Feature view {fv.name!r}: {what} {name!r} holds {kind}, "
                                         "not timestamps.")
        if kind.tz is None:
            raise FeatureDefinitionError(
                f"Feature view {fv.name!r}: the column {name!r} of {source.path} holds timestamps "
                f"without a time zone; write them with one, e.g. "
                f"df[{name!r}] = df[{name!r}].dt.tz_localize('UTC'), then save the file again.")

    def feast_type(arrow_type):
        return from_value_type(pa_to_feast_value_type(str(arrow_type)))

    join_keys = []
    for entity_name in fv.entities:
        entity = entities.get(entity_name)
        if entity is None:
            raise FeatureDefinitionError(f"Feature view {fv.name!r} uses the entity "
                                         f"{entity_name!r}: apply it too, or check the name.")
        for key in [entity.join_key]:
            join_keys.append((key, column(key, "the join key")))
    declared = {c.name for c in fv.entity_columns}
    for key, arrow_type in join_keys:
        if key not in declared:
            fv.entity_columns.append(Field(name=key, dtype=feast_type(arrow_type)))
    if not fv.features:
        skip = {k for k, _ in join_keys} | {source.timestamp_field, source.created_timestamp_column}
        for src, arrow_type in columns.items():
            name = mapping.get(src, src)
            if name not in skip and src not in skip:
                fv.features.append(Field(name=name, dtype=feast_type(arrow_type)))
        fv.projection.features = list(fv.features)
    for f in fv.features:
        column(f.name, "the feature")
    return ViewSpec(
        name=fv.name, path=source.path, timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column or "",
        field_mapping=mapping,
        join_keys=tuple(EntitySpec(c.name, c.dtype.to_value_type().name) for c in fv.entity_columns),
        features=tuple(FeatureSpec(f.name, f.dtype.to_value_type().name) for f in fv.features),
        ttl_seconds=fv.ttl.total_seconds() if fv.ttl else 0,
    )


class Features:
    """``/api/v1/features`` through a :class:`Client`, and the feature engine on this machine."""

    def __init__(self, client: Client | None = None):
        self.client = client or Client.from_env()
        self._store = None
        self._store_info: dict | None = None
        self._direct = True
        self._specs: dict[tuple, tuple[float, dict]] = {}

    # -- catalog -----------------------------------------------------------------------------
    def catalog(self, q: str = "") -> dict:
        """Views and entities (with ``q``, those matching every word), as the API gives them."""
        return self.client.request("GET", "features", params={"q": q} if q else None)

    def search(self, text: str = ""):
        """The catalog as a DataFrame: one row per view matching ``text`` (every word, in its
        name, description, owner, entities, tags or feature names), best match first."""
        import pandas as pd

        views = self.catalog(text)["views"]
        rows = [{
            "view": v["name"], "owner": v["owner"], "entities": ", ".join(v["entities"]),
            "features": ", ".join(f["name"] for f in v["features"]),
            "description": v["description"], "rows": v["rows"],
            "latest_event": v["freshness"]["latest_event"],
            "materialized_through": v["freshness"]["materialized_through"],
        } for v in views]
        return pd.DataFrame(rows, columns=["view", "owner", "entities", "features", "description",
                                           "rows", "latest_event", "materialized_through"])

    def describe(self, view: str) -> dict:
        """A view with its statistics, freshness, materializations and versions."""
        return self.client.request("GET", f"features/views/{view}")

    def delete(self, view: str) -> None:
        self.client.request("DELETE", f"features/views/{view}")

    # -- definitions ---------------------------------------------------------------------------
    def _objects(self, objects: Iterable, with_statistics: bool) -> tuple[list[dict], dict]:
        from feast import Entity, FeatureView

        objects = list(objects)
        if not objects:
            raise FeatureDefinitionError("Nothing to apply: give Entity and FeatureView objects.")
        known = {}
        if any(isinstance(o, FeatureView) for o in objects):
            missing = {e for o in objects if isinstance(o, FeatureView) for e in o.entities} - \
                {o.name for o in objects if isinstance(o, Entity)}
            if missing:
                known = {e["name"]: e for e in self.catalog()["entities"]}
        entities: dict[str, Any] = {}
        for name, e in known.items():
            entities[name] = Entity(name=name, join_keys=e["join_keys"])
        entities.update({o.name: o for o in objects if isinstance(o, Entity)})
        encoded, statistics = [], {}
        for obj in objects:
            if isinstance(obj, FeatureView):
                spec = _prepare_view(obj, entities)
                if with_statistics:
                    from himalia.features.sources import statistics as stats

                    statistics[obj.name] = stats(spec)
            encoded.append(_encode(obj))
        return encoded, statistics

    def plan(self, objects: Iterable) -> dict:
        """What :meth:`apply` would change: ``{"changes": [{kind, name, action, changes}], ...}``."""
        encoded, _ = self._objects(objects, with_statistics=False)
        return self.client.request("POST", "features/plan", json={"objects": encoded})

    def apply(self, objects: Iterable) -> dict:
        """Apply Feast ``Entity`` and ``FeatureView`` objects together (nothing is applied when
        one is refused). Sources are Parquet files of yours; their statistics go to the catalog."""
        encoded, statistics = self._objects(objects, with_statistics=True)
        self._specs.clear()
        return self.client.request("POST", "features/apply",
                                   json={"objects": encoded, "statistics": statistics}, timeout=120)

    # -- reading -------------------------------------------------------------------------------
    def specs(self, refs: Sequence[str]) -> dict:
        """``{"views": {name: {"spec", "hash"}}, "registry_version"}`` for ``refs``."""
        refs = _refs(refs)
        key = tuple(refs)
        cached = self._specs.get(key)
        if cached and time.monotonic() - cached[0] < SPECS_TTL:
            return cached[1]
        answer = self.client.request("POST", "features/specs", json={"refs": refs})
        self._specs[key] = (time.monotonic(), answer)
        return answer

    def training_set(self, entity_df, refs: Sequence[str], *, full_feature_names: bool = False):
        """A point-in-time-correct DataFrame: ``entity_df`` (join keys, ``event_timestamp``,
        labels; unchanged, same order, every row) with the value of each ref as of each row's
        time (null when there was none within the view's TTL). With an active MLflow run the
        refs and the views' versions are logged to it."""
        from himalia.features.pointintime import training_set

        refs = _refs(refs)
        answer = self.client.request("POST", "features/specs", json={"refs": refs})
        views = {name: ViewSpec.from_json(v["spec"]) for name, v in answer["views"].items()}
        frame = training_set(entity_df, refs, views, full_feature_names=full_feature_names)
        _log_to_run(refs, {name: v["hash"] for name, v in answer["views"].items()},
                    answer.get("registry_version", ""))
        return frame

    def _reader(self):
        if self._store is None:
            from himalia.features.online import OnlineStore

            info = self.client.request("GET", "features/online-store")
            self._store = OnlineStore.from_config(info["store"], info["project"],
                                                  info["entity_key_serialization_version"])
        return self._store

    def online(self, refs: Sequence[str], entities: Mapping[str, Sequence]):
        """The online values of ``refs`` for the keys in ``entities`` (``{"customer_id": [1, 2]}``):
        one row per key, in the order given; keys without values get nulls."""
        refs = _refs(refs)
        if not isinstance(entities, Mapping) or not entities:
            raise ValueError("entities: a mapping of join key -> values, e.g. {'customer_id': [1, 2]}")
        entities = {k: list(v) for k, v in entities.items()}
        if self._direct:
            views = {name: ViewSpec.from_json(v["spec"]) for name, v in self.specs(refs)["views"].items()}
            try:
                return self._reader().read(views, refs, entities)
            except (OSError, ConnectionError):
                # The store is not reachable from here (the platform's own SQLite file, or a
                # network the kernel is not on): read through the API from now on.
                self._direct = False
            except Exception as e:
                if type(e).__module__.split(".")[0] not in ("sqlite3", "redis"):
                    raise
                self._direct = False
        import pandas as pd

        answer = self.client.request("POST", "features/online", json={"refs": refs, "entities": entities})
        return pd.DataFrame(answer["data"], columns=answer["columns"])

    # -- materialization -----------------------------------------------------------------------
    def materialize(self, end: datetime | str | None = None, views: Sequence[str] | None = None,
                    *, progress: bool = True) -> list[dict]:
        """Load the latest value per entity of your views (or ``views``), for event times since
        the last materialization up to ``end`` (default: now), into the online store."""
        import pyarrow as pa

        from himalia.features.sources import latest_rows, statistics

        end_iso = _iso(end)
        names = list(views) if views else [
            v["name"] for v in self.catalog()["views"] if v["owner"] == self._me()]
        done = []
        job_run = current_run()
        for name in names:
            started = self.client.request("POST", "features/materializations", json={
                "view": name, "end": end_iso, "job_run_id": str(job_run) if job_run else None})
            mid, spec = started["id"], ViewSpec.from_json(started["spec"])
            try:
                table = latest_rows(spec, datetime.fromisoformat(started["start"]),
                                    datetime.fromisoformat(started["end"]))
                bar = _progress(table.num_rows, f"{name} -> online", progress)
                for offset in range(0, max(table.num_rows, 1), UPLOAD_ROWS):
                    chunk = table.slice(offset, UPLOAD_ROWS)
                    if chunk.num_rows == 0:
                        break
                    sink = io.BytesIO()
                    with pa.ipc.new_stream(sink, chunk.schema) as writer:
                        writer.write_table(chunk)
                    self.client.request("PUT", f"features/materializations/{mid}/rows",
                                        content=sink.getvalue(), timeout=300,
                                        headers={"Content-Type": ARROW_STREAM})
                    bar.update(chunk.num_rows)
                bar.close()
                stats = statistics(spec)
            except BaseException as e:
                self.client.request("POST", f"features/materializations/{mid}/finish",
                                    json={"ok": False, "message": f"{type(e).__name__}: {e}"})
                raise
            done.append(self.client.request("POST", f"features/materializations/{mid}/finish",
                                            json={"ok": True, "statistics": stats}))
        return done

    def materialize_job(self, *, schedule: str | None = None, timezone: str = "UTC",
                        views: Sequence[str] | None = None, job: str = "materialize-features") -> dict:
        """Materialization as a platform job (as you, whether or not your server runs): now,
        or on a cron ``schedule``. Returns ``{"job"}`` (and ``"run"`` when it runs now)."""
        jobs = Jobs(self.client)
        notebook = materialize_notebook(list(views or []))
        fields: dict[str, Any] = {}
        if schedule is not None:
            fields.update(schedule=schedule, timezone=timezone)
        try:
            made = jobs.create(job, notebook=notebook, **fields)
        except HimaliaError as e:
            if e.status != 409:
                raise
            made = jobs.update(job, notebook=notebook, **fields)
        if schedule is not None:
            return {"job": made}
        return {"job": made, "run": jobs.run(made["id"])}

    def _me(self) -> str:
        return self.client.whoami()["name"]


def materialize_notebook(views: list[str]) -> dict:
    """The notebook a materialization job runs (the same for the same views)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell(f"views = {views!r}", id="parameters")
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "# Feature materialization\n\nLoads the latest value per entity of `views` (all of "
            "the owner's views when empty) into the online store. Made by "
            "`himalia.sdk.features.materialize_job`.", id="about"),
        parameters,
        nbformat.v4.new_code_cell(
            "from himalia.sdk import features\n"
            "done = features.materialize(views=views or None, progress=False)\n"
            "from himalia.sdk import record\n"
            "record('rows', sum(m['rows'] for m in done))\n"
            "done", id="materialize"),
    ]
    nb.metadata["kernelspec"] = {"name": "himalia", "display_name": "Python 3 (himalia)",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return json.loads(nbformat.writes(nb))


def parse_keys(specs: Sequence[str]) -> dict[str, list]:
    """``["customer_id=1,2,3", "region=eu"]`` -> ``{"customer_id": [1, 2, 3], "region": ["eu"]}``
    (the ``--key`` of ``%features get`` and ``himalia features get``): whole numbers are
    numbers, anything else a string; ValueError naming a malformed one."""
    keys: dict[str, list] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not name or not values:
            raise ValueError(f"--key {spec!r}: write JOIN_KEY=VALUE[,VALUE...]")
        keys[name] = [_key_value(v) for v in values.split(",")]
    return keys


def _key_value(text: str):
    try:
        return int(text)
    except ValueError:
        return text


def _refs(refs: Sequence[str]) -> list[str]:
    if isinstance(refs, str):
        refs = [refs]
    refs = list(refs)
    if not refs:
        raise ValueError("Give at least one feature reference 'view:feature'.")
    for ref in refs:
        parse_ref(ref)
    return refs


def _iso(end: datetime | str | None) -> str | None:
    if end is None:
        return None
    if isinstance(end, str):
        end = datetime.fromisoformat(end)
    if end.tzinfo is None:
        raise ValueError(f"end={end.isoformat()} has no time zone: give one, e.g. "
                         f"datetime(..., tzinfo=timezone.utc)")
    return end.astimezone(timezone.utc).isoformat()


def _progress(total: int, what: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=what, unit="rows", disable=not enabled or total == 0)


def _log_to_run(refs: list[str], hashes: dict, registry_version: str) -> None:
    """Record the refs and view versions on the active MLflow run, when there is one."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return
    run = mlflow.active_run()
    if run is None:
        return
    mlflow.set_tags({
        "himalia.features": json.dumps(refs),
        "himalia.feature_views": json.dumps(hashes, sort_keys=True),
        "himalia.feature_registry_version": registry_version,
    })


_default: Features | None = None


def _features() -> Features:
    global _default
    if _default is None:
        _default = Features()
    return _default


def catalog(q: str = "") -> dict:
    return _features().catalog(q)


def search(text: str = ""):
    return _features().search(text)


def describe(view: str) -> dict:
    return _features().describe(view)


def plan(objects: Iterable) -> dict:
    return _features().plan(objects)


def apply(objects: Iterable) -> dict:
    return _features().apply(objects)


def training_set(entity_df, refs: Sequence[str], *, full_feature_names: bool = False):
    return _features().training_set(entity_df, refs, full_feature_names=full_feature_names)


def online(refs: Sequence[str], entities: Mapping[str, Sequence]):
    return _features().online(refs, entities)


def materialize(end: datetime | str | None = None, views: Sequence[str] | None = None, *,
                progress: bool = True) -> list[dict]:
    return _features().materialize(end, views, progress=progress)


def materialize_job(**kwargs) -> dict:
    return _features().materialize_job(**kwargs)


for _f in (catalog, search, describe, plan, apply, training_set, online, materialize, materialize_job):
    _f.__doc__ = getattr(Features, _f.__name__).__doc__
del _f
