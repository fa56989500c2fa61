"""Synthetic feature data for the feature-store benchmark and tests: one ``customer_stats`` view.

``generate(dir)`` writes, once per size and seed (a later call with the same arguments reuses
the files):

* ``features.parquet``: ``customer_id`` int64, ``event_timestamp`` and ``created``
  (``timestamp[ns, UTC]``, pandas' default), ``f0``..``f9`` float64. Each customer's rows are
  spread over 90 days (whole seconds); about 1% of rows repeat an earlier row's customer and event
  timestamp with a later ``created`` and other values (a correction), so ties on the event
  timestamp are decided by ``created``. No two rows share both timestamps.
* ``features_us.parquet``: the same rows with microsecond timestamps (no value has finer
  digits, so nothing is lost), for readers that cannot take nanoseconds.
* ``labels.parquet``: ``customer_id``, ``event_timestamp`` (``timestamp[ns, UTC]``) and an int64
  ``label``. Label times run from 5 days before the first feature row to 40 days after the last,
  and 1% of labels name customers that have no rows, so some labels have no feature value at or
  before their time and some have only values older than the view's 30-day TTL.

``view_spec(path)`` is the view over such a file; ``feast_store(views, repo)`` applies views to a
throwaway Feast repository (DuckDB offline store), for comparing answers with Feast's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "magics"))
from himalia.features.spec import EntitySpec, FeatureSpec, ViewSpec  # noqa: E402

START = np.datetime64("2025-01-01T00:00:00", "s").astype(np.int64)
DAY = 86_400
SPAN_DAYS = 90
TTL_DAYS = 30
FEATURES = [f"f{i}" for i in range(10)]
CHUNK = 1_000_000


def view_spec(path: str | Path, created: bool = True) -> ViewSpec:
    """The ``customer_stats`` view over a ``features*.parquet`` file that :func:`generate` wrote."""
    return ViewSpec(
        name="customer_stats",
        path=str(path),
        timestamp_field="event_timestamp",
        created_timestamp_column="created" if created else "",
        join_keys=(EntitySpec("customer_id", "INT64"),),
        features=tuple(FeatureSpec(name, "DOUBLE") for name in FEATURES),
        ttl_seconds=TTL_DAYS * DAY,
    )


def generate(dir: str | Path, customers: int = 100_000, feature_rows: int = 10_000_000,
             labels: int = 1_000_000, seed: int = 0) -> dict[str, Path]:
    """Write the data set into ``dir``; returns the paths by name (``features``, ``features_us``,
    ``labels``)."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    paths = {"features": dir / "features.parquet", "features_us": dir / "features_us.parquet",
             "labels": dir / "labels.parquet"}
    stamp = dir / "generated.json"
    wanted = {"customers": customers, "feature_rows": feature_rows, "labels": labels, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted and all(
            p.exists() for p in paths.values()):
        return paths
    rng = np.random.default_rng(seed)
    _write_features(paths["features"], paths["features_us"], rng, customers, feature_rows)
    _write_labels(paths["labels"], rng, customers, labels)
    stamp.write_text(json.dumps(wanted))
    return paths


def _timestamps(micros: np.ndarray, unit: str) -> pa.Array:
    scale = {"ns": 1000, "us": 1}[unit]
    return pa.array(micros * scale, pa.timestamp(unit, "UTC"))


def _write_features(path: Path, path_us: Path, rng: np.random.Generator, customers: int,
                    rows: int) -> None:
    # ``created`` carries the row's number in its microseconds, so no two rows tie on both
    # timestamps and every reader must pick the same row.
    writers = {}
    try:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            corrections = n // 100
            fresh = n - corrections
            customer = rng.integers(0, customers, fresh, dtype=np.int64)
            event = START + rng.integers(0, SPAN_DAYS * DAY, fresh, dtype=np.int64)
            created = event + rng.integers(0, 3600, fresh)
            pick = rng.integers(0, fresh, corrections)
            customer = np.concatenate([customer, customer[pick]])
            event = np.concatenate([event, event[pick]])
            created = np.concatenate([created, created[pick] + 3600])
            created = created * 1_000_000 + np.arange(start, start + n)
            values = rng.standard_normal((len(FEATURES), n))
            for unit, target in (("ns", path), ("us", path_us)):
                table = pa.table({"customer_id": customer,
                                  "event_timestamp": _timestamps(event * 1_000_000, unit),
                                  "created": _timestamps(created, unit),
                                  **{name: values[i] for i, name in enumerate(FEATURES)}})
                if unit not in writers:
                    writers[unit] = pq.ParquetWriter(target, table.schema)
                writers[unit].write_table(table)
    finally:
        for writer in writers.values():
            writer.close()


def _write_labels(path: Path, rng: np.random.Generator, customers: int, rows: int) -> None:
    unknown = rows // 100
    customer = np.concatenate([rng.integers(0, customers, rows - unknown, dtype=np.int64),
                               customers + rng.integers(0, customers, unknown, dtype=np.int64)])
    rng.shuffle(customer)
    event = START + rng.integers(-5 * DAY, (SPAN_DAYS + 40) * DAY, rows, dtype=np.int64)
    pq.write_table(pa.table({"customer_id": customer,
                             "event_timestamp": _timestamps(event * 1_000_000, "ns"),
                             "label": rng.integers(0, 2, rows, dtype=np.int64)}), path)


def feast_store(views: list[ViewSpec], repo: str | Path):
    """A throwaway Feast repository in ``repo`` (file registry, SQLite online store, DuckDB
    offline store) with ``views`` applied, each over a ``FileSource`` of its ``path``."""
    from datetime import timedelta

    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from feast.repo_config import RepoConfig
    from feast.types import from_value_type

    repo = Path(repo)
    repo.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(project="bench", registry=str(repo / "registry.db"), provider="local",
                        offline_store=DuckDBOfflineStoreConfig(),
                        online_store=SqliteOnlineStoreConfig(path=str(repo / "online.db")),
                        entity_key_serialization_version=3, repo_path=str(repo))
    store = FeatureStore(config=config)
    entities: dict[str, Entity] = {}
    objects = []
    for view in views:
        for key in view.join_keys:
            if key.name not in entities:
                entities[key.name] = Entity(name=key.name, join_keys=[key.name],
                                            value_type=ValueType[key.dtype])
        source = FileSource(name=f"{view.name}_source", path=view.path,
                            timestamp_field=view.timestamp_field,
                            created_timestamp_column=view.created_timestamp_column,
                            field_mapping=dict(view.field_mapping))
        schema = [Field(name=key.name, dtype=from_value_type(ValueType[key.dtype]))
                  for key in view.join_keys]
        schema += [Field(name=f.name, dtype=from_value_type(ValueType[f.dtype]))
                   for f in view.features]
        objects.append(FeatureView(name=view.name, source=source,
                                   entities=[entities[k.name] for k in view.join_keys],
                                   ttl=timedelta(seconds=view.ttl_seconds), schema=schema))
    store.apply([*entities.values(), *objects])
    return store
