"""Reading a view's Parquet source with DuckDB: its schema, the latest values per entity for the
online store, and the statistics the catalog shows."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

from .spec import ViewSpec

#: Histogram bins in the catalog.
BINS = 20


class SourceError(ValueError):
    """A source that cannot be read as the view says; the message says what to fix."""


def parquet_glob(path: str) -> str:
    """A file, or every Parquet file under a folder."""
    return str(Path(path) / "**" / "*.parquet") if Path(path).is_dir() else path


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def connect(memory_limit: str = "1GB", threads: int | None = None):
    import duckdb

    con = duckdb.connect(config={"memory_limit": memory_limit})
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def arrow_schema(path: str):
    """The Arrow schema of a Parquet file or folder; SourceError when it cannot be read."""
    import pyarrow.dataset as ds

    try:
        return ds.dataset(path, format="parquet").schema
    except FileNotFoundError:
        raise SourceError(f"{path} does not exist") from None
    except PermissionError:
        raise SourceError(f"{path} cannot be read by this account") from None
    except Exception as e:
        raise SourceError(f"{path} is not Parquet: {e}") from None


def _select(spec: ViewSpec) -> str:
    """The source's columns under the view's names (Feast's field mapping), as SQL."""
    mapping = spec.field_mapping
    names = [k.name for k in spec.join_keys] + [f.name for f in spec.features]
    source_of = {view: src for src, view in mapping.items()}
    parts = [f"{_quote(source_of.get(n, n))} AS {_quote(n)}" for n in names]
    # Feast names the timestamp columns after the mapping too.
    ts, created = spec.timestamp_field, spec.created_timestamp_column
    parts.append(f"{_quote(source_of.get(ts, ts))} AS __ts")
    if created:
        parts.append(f"{_quote(source_of.get(created, created))} AS __created")
    return ", ".join(parts)


def latest_rows(spec: ViewSpec, start: datetime, end: datetime, *, memory_limit: str = "1GB"):
    """Per entity, the newest row with ``start < event time <= end`` (ties: newest created
    time), as an Arrow table with the view's column names and its timestamp field."""
    keys = ", ".join(_quote(k.name) for k in spec.join_keys)
    order = "__ts DESC" + (", __created DESC" if spec.created_timestamp_column else "")
    features = ", ".join(_quote(f.name) for f in spec.features)
    extra = f", __created AS {_quote(spec.created_timestamp_column)}" if spec.created_timestamp_column else ""
    sql = f"""
        SELECT {keys}, {features}, __ts AS {_quote(spec.timestamp_field)}{extra}
        FROM (SELECT {_select(spec)} FROM read_parquet({_literal(parquet_glob(spec.path))}))
        WHERE __ts > ? AND __ts <= ?
        QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1
    """
    con = connect(memory_limit)
    try:
        result = con.sql(sql, params=[start, end])
        return result.to_arrow_table() if hasattr(result, "to_arrow_table") else result.arrow()
    finally:
        con.close()


def statistics(spec: ViewSpec, *, memory_limit: str = "1GB") -> dict:
    """Rows, distinct entities, the newest event time and, per feature, count, nulls, distinct
    values, mean, std, min, max and a histogram of ``BINS`` equal bins (numbers only)."""
    con = connect(memory_limit)
    try:
        con.execute(f"CREATE TEMP VIEW src AS SELECT {_select(spec)} "
                    f"FROM read_parquet({_literal(parquet_glob(spec.path))})")
        schema = {row[0]: row[1] for row in con.execute("DESCRIBE src").fetchall()}
        numeric = [f.name for f in spec.features if _is_number(schema.get(f.name, ""))]
        keys = ", ".join(_quote(k.name) for k in spec.join_keys)
        parts = ["count(*)", f"count(DISTINCT ({keys}))", "max(__ts)"]
        for f in spec.features:
            q = _quote(f.name)
            parts += [f"count({q})", f"approx_count_distinct({q})"]
            if f.name in numeric:
                parts += [f"avg({q}::DOUBLE)", f"stddev_samp({q}::DOUBLE)", f"min({q}::DOUBLE)",
                          f"max({q}::DOUBLE)"]
        row = con.execute(f"SELECT {', '.join(parts)} FROM src").fetchone()
        rows, entities, latest = row[0], row[1], row[2]
        out: dict[str, Any] = {"rows": int(rows), "entities": int(entities),
                               "latest_event": latest.isoformat() if latest else None,
                               "features": {}}
        i = 3
        for f in spec.features:
            count, distinct = row[i], row[i + 1]
            i += 2
            stats: dict[str, Any] = {"count": int(count), "nulls": int(rows - count),
                                     "distinct": int(distinct)}
            if f.name in numeric:
                mean, std, low, high = row[i:i + 4]
                i += 4
                stats.update(mean=_num(mean), std=_num(std), min=_num(low), max=_num(high))
                stats["histogram"] = _histogram(con, f.name, low, high)
            out["features"][f.name] = stats
        return out
    finally:
        con.close()


def _is_number(duck_type: str) -> bool:
    t = duck_type.upper()
    return any(t.startswith(p) for p in ("DOUBLE", "FLOAT", "REAL", "DECIMAL", "BIGINT", "INTEGER",
                                          "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER"))


def _num(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _histogram(con, name: str, low, high) -> dict:
    if low is None or high is None or not math.isfinite(low) or not math.isfinite(high):
        return {"edges": [], "counts": []}
    if high == low:
        count = con.execute(f"SELECT count({_quote(name)}) FROM src").fetchone()[0]
        return {"edges": [float(low), float(high)], "counts": [int(count)]}
    width = (high - low) / BINS
    q = _quote(name)
    rows = con.execute(
        f"SELECT least(floor(({q}::DOUBLE - ?) / ?)::BIGINT, {BINS - 1}) AS b, count(*) "
        f"FROM src WHERE {q} IS NOT NULL AND isfinite({q}::DOUBLE) GROUP BY b", [low, width]).fetchall()
    counts = [0] * BINS
    for b, n in rows:
        counts[int(b)] = int(n)
    return {"edges": [float(low + width * k) for k in range(BINS + 1)], "counts": counts}
