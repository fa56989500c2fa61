"""Point-in-time training sets: each label row gets, per view, the feature values that were known
at the label's time, computed with DuckDB's ASOF JOIN straight over the views' Parquet files.

The answer is Feast's (``FeatureStore.get_historical_features`` with its DuckDB offline store,
Feast 0.67), row for row:

* A view's source columns are first renamed by its ``field_mapping`` (source name -> view name);
  the join keys, the timestamp field, the created timestamp column and the features are then
  looked up under the renamed names, as Feast looks them up. (A timestamp column named by its
  source name is found as well, where Feast would fail.)
* For a label at time ``T`` the candidates are the source rows with the label's join key(s) and
  an event time ``t`` with ``t <= T`` and, when the view has a TTL, ``t >= T - ttl`` (both ends
  included). The latest event time wins; among rows with the same event time the latest created
  time wins (a missing created time loses), when the view has a created timestamp column. Rows
  with no event time, or a null join key, are never candidates. Rows that tie on both
  timestamps are interchangeable: either may be returned, as in Feast.

Unlike Feast, every label row is returned, in the order given and with the columns and dtypes
given, then one column per ref in the order of the refs; a label without a value gets nulls.

Timestamps are compared as instants in nanoseconds: tz-aware timestamps of any unit and time zone
work, in the labels and in the sources (Feast's DuckDB store rejects nanosecond sources); naive
ones are refused with a :class:`FeatureInputError` saying how to attach a time zone.

How: per view, DuckDB ASOF-joins the labels (keys, time, row number, registered from Arrow
without a copy) to the source's keys, times and each row's place in its file, streaming the
Parquet files within a memory limit (spilling beyond it); the features of the matched rows are
then read from the files by position, a batch at a time, and put in the labels' order. Sorting
only keys and times, not every feature, is what keeps the join cheap.
"""

from __future__ import annotations

import difflib
import glob
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .spec import ViewSpec, parse_ref

__all__ = ["FeatureInputError", "training_set"]

#: DuckDB's memory limit when none is given: this much, or a quarter of the machine's (or the
#: container's) memory when that is less. DuckDB spills its sorts to a temporary folder beyond it.
DEFAULT_MEMORY_LIMIT = 2 * 1024**3

_RID = "__himalia_row"
_TIME = "__himalia_time"
_NAT = np.iinfo(np.int64).min
_BATCH_ROWS = 65_536
_FILE_SHIFT = 40  # a row's place: its file's index << 40 | its row number in the file
_INT64_MIN_SQL = "(-9223372036854775807 - 1)"
_TZ_AWARE = ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ", "TIMESTAMPTZ_NS")
_NAIVE = ("TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S", "TIMESTAMP_US",
          "TIMESTAMP WITHOUT TIME ZONE")
_DUCK_FAMILIES = {
    "number": ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
               "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL"),
    "string": ("VARCHAR",),
    "bytes": ("BLOB",),
    "boolean": ("BOOLEAN",),
}
_SUGGESTED_DTYPE = {"string": "str", "boolean": "bool", "bytes": "bytes"}


class FeatureInputError(ValueError):
    """Input ``training_set`` cannot use (refs, entity_df, a view's source); the message names
    what is wrong and how to fix it."""


@dataclass
class _ViewPlan:
    view: ViewSpec
    alias: str
    features: list[tuple[str, str]] = field(default_factory=list)  # (feature, output column)


def training_set(entity_df: pd.DataFrame, refs: Sequence[str], views: Mapping[str, ViewSpec], *,
                 full_feature_names: bool = False, timestamp_column: str = "event_timestamp",
                 memory_limit: str | None = None, threads: int | None = None) -> pd.DataFrame:
    """``entity_df`` with, for each of ``refs`` (``"view:feature"``), the feature's value at
    each row's ``timestamp_column`` (see the module's docstring for the exact rule).

    ``entity_df`` holds the join keys of the referenced views and tz-aware timestamps; its
    columns, dtypes, index and row order are kept, and the feature columns follow, named
    ``feature`` or, with ``full_feature_names``, ``view__feature``. ``views`` maps view names
    to their specs; a view's ``path`` is a Parquet file, a folder of them or a glob.
    ``memory_limit`` (e.g. ``"1GB"``) bounds DuckDB's memory (its sorts spill to a temporary
    folder beyond it), ``threads`` the threads used. Raises :class:`FeatureInputError` for input
    that cannot be joined.
    """
    if not isinstance(entity_df, pd.DataFrame):
        raise FeatureInputError(
            f"entity_df must be a pandas DataFrame, not {type(entity_df).__name__}")
    plans, names = _plan(entity_df, refs, views, full_feature_names)
    times = _label_times(entity_df, timestamp_column)
    missing = [(k.name, p.view.name) for p in plans for k in p.view.join_keys
               if k.name not in entity_df.columns]
    if missing:
        key, view = missing[0]
        raise FeatureInputError(
            f"entity_df has no column {key!r}, the join key of view {view!r}; add it "
            f"(entity_df's columns: {_names(entity_df.columns)})")
    keys = sorted({k.name for p in plans for k in p.view.join_keys})
    labels = {name: _arrow_column(entity_df[name], name) for name in keys}
    n = len(entity_df)
    labels[_TIME] = pa.array(times)
    labels[_RID] = pa.array(np.arange(n, dtype=np.int64))
    table = pa.table(labels)
    # A label without a time never matches; leaving it out of the join spares every probe a
    # null check (its features stay null all the same).
    timed = times != _NAT
    if not timed.all():
        table = table.filter(pa.array(timed))
    bounds = (int(times[timed].min()), int(times[timed].max())) if timed.any() else None
    threads = threads or os.cpu_count() or 1

    workdir = tempfile.mkdtemp(prefix="himalia-training-set-")
    try:
        with _connect(memory_limit, threads, workdir) as con:
            sources = [_Source.open(con, plan.view) for plan in plans]
            for plan, source in zip(plans, sources):
                source.stored(plan.features)  # a missing feature column fails before the join
            con.register("__himalia_labels", table)
            matches = _fetch(con, _query(plans, sources, table.schema, bounds))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = matches.column(_RID).to_numpy()
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for plan, source in zip(plans, sources):
        found = np.full(n, -1, dtype=np.int64)
        found[rows] = source.positions(matches.column(f"{plan.alias}_row"))
        columns.update(source.gather(found, plan.features, threads))
    features = pa.table([columns[name] for name in names], names=names).to_pandas(
        split_blocks=True, self_destruct=True)
    features.index = entity_df.index
    if not entity_df.columns.is_unique:
        return pd.concat([entity_df, features], axis=1)
    # The labels are copied (the answer must not share memory with the caller's frame), the
    # features are not (nothing else holds them).
    given = entity_df.copy()
    return pd.DataFrame({**{c: given[c] for c in given.columns},
                         **{c: features[c] for c in features.columns}}, copy=False)


def _plan(entity_df: pd.DataFrame, refs: Sequence[str], views: Mapping[str, ViewSpec],
          full_feature_names: bool) -> tuple[list[_ViewPlan], list[str]]:
    """The views to join, each with its features and their output columns; and the output
    columns in the order of ``refs``."""
    if isinstance(refs, str):
        raise FeatureInputError(
            f"refs must be a list of 'view:feature' strings, not the string {refs!r}")
    plans: dict[str, _ViewPlan] = {}
    outputs: dict[str, str] = {}
    all_refs = [f"{name}:{f.name}" for name, v in views.items() for f in v.features]
    for ref in refs:
        try:
            view_name, feature = parse_ref(ref)
        except (ValueError, TypeError, AttributeError):
            raise FeatureInputError(f"feature reference {ref!r} is not of the form "
                                    "'view:feature', e.g. 'customer_stats:ltv'") from None
        view = views.get(view_name)
        if view is None:
            raise FeatureInputError(f"unknown feature view {view_name!r} in {ref!r}"
                                    + _did_you_mean(ref, all_refs, f"(views: {_names(views)})"))
        if not any(f.name == feature for f in view.features):
            raise FeatureInputError(
                f"view {view_name!r} has no feature {feature!r}"
                + _did_you_mean(ref, [f"{view_name}:{f.name}" for f in view.features],
                                f"(its features: {_names(f.name for f in view.features)})"))
        name = f"{view_name}__{feature}" if full_feature_names else feature
        if name in outputs:
            if outputs[name] == ref:
                raise FeatureInputError(f"{ref!r} is asked for twice; give each ref once")
            raise FeatureInputError(
                f"{outputs[name]!r} and {ref!r} would both be named {name!r}; pass "
                "full_feature_names=True to name the columns 'view__feature'")
        if name in entity_df.columns:
            raise FeatureInputError(
                f"{ref!r} would be named {name!r}, which entity_df already has; "
                + ("rename that column of entity_df" if full_feature_names else
                   "pass full_feature_names=True to name it "
                   f"{view_name + '__' + feature!r}, or rename that column of entity_df"))
        outputs[name] = ref
        plan = plans.setdefault(view_name, _ViewPlan(view, f"v{len(plans)}"))
        plan.features.append((feature, name))
    return list(plans.values()), list(outputs)


def _did_you_mean(ref: str, candidates: list[str], otherwise: str) -> str:
    close = difflib.get_close_matches(ref, candidates, n=3, cutoff=0.5)
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return " " + otherwise


def _names(names) -> str:
    return ", ".join(repr(str(n)) for n in names) or "none"


def _label_times(entity_df: pd.DataFrame, column: str) -> np.ndarray:
    """The labels' instants as int64 nanoseconds since the epoch (NaT as int64's minimum)."""
    if column not in entity_df.columns:
        close = difflib.get_close_matches(column, [str(c) for c in entity_df.columns], n=1)
        hint = f"; did you mean {close[0]!r} (pass timestamp_column={close[0]!r})?" if close else (
            f"; add the labels' times as tz-aware timestamps (entity_df's columns: "
            f"{_names(entity_df.columns)})")
        raise FeatureInputError(f"entity_df has no {column!r} column{hint}")
    series = entity_df[column]
    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        values = series.array.asi8
        unit = dtype.unit
    elif isinstance(dtype, pd.ArrowDtype) and _is_tz_timestamp(dtype.pyarrow_dtype):
        values = (series.array.__arrow_array__().cast(pa.int64())
                  .fill_null(_NAT).to_numpy())
        unit = dtype.pyarrow_dtype.unit
    elif pd.api.types.is_datetime64_dtype(dtype) or (
            isinstance(dtype, pd.ArrowDtype) and "timestamp" in str(dtype.pyarrow_dtype)):
        raise FeatureInputError(
            f"entity_df[{column!r}] holds timestamps without a time zone; say which zone they are "
            f"in, e.g. entity_df[{column!r}] = entity_df[{column!r}].dt.tz_localize('UTC')")
    else:
        raise FeatureInputError(
            f"entity_df[{column!r}] holds {dtype}, not timestamps; convert it, e.g. "
            f"entity_df[{column!r}] = pd.to_datetime(entity_df[{column!r}], utc=True)")
    values = np.asarray(values, dtype=np.int64)
    scale = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}[unit]
    if scale != 1:
        missing = values == _NAT
        values = values * scale
        values[missing] = _NAT
    return values


def _is_tz_timestamp(arrow_type) -> bool:
    return pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None


def _arrow_column(series: pd.Series, name: str):
    try:
        array = pa.Array.from_pandas(series)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        raise FeatureInputError(
            f"entity_df[{name!r}] cannot be used as a join key (it mixes types?): {e}") from None
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array


def _arrow_family(arrow_type) -> str | None:
    t = pa.types
    if t.is_integer(arrow_type) or t.is_floating(arrow_type) or t.is_decimal(arrow_type):
        return "number"
    if t.is_string(arrow_type) or t.is_large_string(arrow_type) or (
            hasattr(t, "is_string_view") and t.is_string_view(arrow_type)):
        return "string"
    if t.is_binary(arrow_type) or t.is_large_binary(arrow_type) or \
            t.is_fixed_size_binary(arrow_type):
        return "bytes"
    if t.is_boolean(arrow_type):
        return "boolean"
    return None


def _duck_family(duck_type: str) -> str | None:
    base = duck_type.upper().split("(")[0].strip()
    for family, names in _DUCK_FAMILIES.items():
        if base in names:
            return family
    return None


def _memory_limit() -> str:
    limit = DEFAULT_MEMORY_LIMIT
    try:
        limit = min(limit, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            text = f.read().strip()
        if text.isdigit():
            limit = min(limit, int(text) // 4)
    except OSError:
        pass
    return f"{max(limit, 256 * 1024**2) // 1024**2}MB"


def _connect(memory_limit: str | None, threads: int, workdir: str):
    config = {"memory_limit": memory_limit or _memory_limit(), "temp_directory": workdir,
              "preserve_insertion_order": False, "threads": int(threads)}
    try:
        con = duckdb.connect(config=config)
    except duckdb.Error as e:
        raise FeatureInputError(f"DuckDB refused memory_limit={memory_limit!r} or "
                                f"threads={threads!r}: {e}") from None
    con.execute("SET TimeZone = 'UTC'")
    return con


def _q(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _parquet_files(view: ViewSpec) -> list[str]:
    path = view.path
    if "://" in path:
        raise FeatureInputError(f"view {view.name!r}: its source {path} is not on this machine; "
                                "training sets are read from local Parquet files")
    if Path(path).is_dir():
        files = sorted(str(f) for f in Path(path).rglob("*.parquet") if f.is_file())
    elif any(c in path for c in "*?["):
        files = sorted(f for f in glob.glob(path, recursive=True) if Path(f).is_file())
    else:
        files = [path] if Path(path).is_file() else []
    if not files:
        raise FeatureInputError(f"view {view.name!r}: there is no Parquet file at {path}")
    return files


@dataclass
class _Source:
    """A view's Parquet files: what DuckDB scans for the join (keys, times and each row's
    position), and where each row lives, to read the matched rows' features afterwards."""

    view: ViewSpec
    files: list[str]
    columns: dict[str, str]  # DuckDB type by source column name
    column: Callable[..., str]  # source column by view name (the field mapping applied)
    row_groups: list[tuple[int, int, int]]  # (file, row group, first row), in row order
    file_offsets: np.ndarray  # first row of each file
    rows: int

    @classmethod
    def open(cls, con, view: ViewSpec) -> "_Source":
        files = _parquet_files(view)
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM {cls.scan_of(files)}").fetchall()
        except duckdb.Error as e:
            raise FeatureInputError(f"view {view.name!r}: its source {view.path} cannot be read as "
                                    f"Parquet: {str(e).splitlines()[0]}") from None
        columns = {row[0]: row[1] for row in described}
        row_groups, offsets, total = [], [], 0
        for i, name in enumerate(files):
            offsets.append(total)
            meta = pq.ParquetFile(name).metadata
            for g in range(meta.num_row_groups):
                row_groups.append((i, g, total))
                total += meta.row_group(g).num_rows
        return cls(view, files, columns, _resolver(view, columns), row_groups,
                   np.array(offsets, dtype=np.int64), total)

    @staticmethod
    def scan_of(files: list[str]) -> str:
        return f"read_parquet([{', '.join(_literal(f) for f in files)}])"

    @property
    def scan(self) -> str:
        return self.scan_of(self.files)

    def integer_range(self, column: str) -> tuple[int, int] | None:
        """The smallest and largest value of an integer column, from the files' statistics
        (None when a row group has none)."""
        low = high = None
        for name in self.files:
            meta = pq.ParquetFile(name).metadata
            paths = [meta.schema.column(j).path for j in range(meta.num_columns)]
            if column not in paths:
                return None
            j = paths.index(column)
            for g in range(meta.num_row_groups):
                stats = meta.row_group(g).column(j).statistics
                if stats is None or not stats.has_min_max or not isinstance(stats.min, int):
                    return None
                low = stats.min if low is None else min(low, stats.min)
                high = stats.max if high is None else max(high, stats.max)
        return None if low is None else (low, high)

    def positions(self, place: pa.ChunkedArray) -> np.ndarray:
        """Rows' positions across all the files from their places (file index << 40 | row in
        the file), -1 where nothing matched."""
        place = place.fill_null(-1).to_numpy()
        matched = place >= 0
        found = np.full(len(place), -1, dtype=np.int64)
        found[matched] = self.file_offsets[place[matched] >> _FILE_SHIFT] + \
            (place[matched] & ((1 << _FILE_SHIFT) - 1))
        return found

    def stored(self, features: list[tuple[str, str]]) -> list[str]:
        """The source columns holding ``features`` (view names, output names)."""
        stored = [self.column(feature, "the feature") for feature, _ in features]
        schema = pq.ParquetFile(self.files[0]).schema_arrow
        for src in stored:
            if schema.get_field_index(src) < 0:
                raise FeatureInputError(
                    f"view {self.view.name!r}: the column {src!r} is not stored in {self.files[0]}")
        return stored

    def gather(self, found: np.ndarray, features: list[tuple[str, str]],
               threads: int) -> dict[str, pa.ChunkedArray]:
        """Per output column, the matched rows' values in label order (null where none)."""
        matched = found >= 0
        wanted, back = np.unique(found[matched], return_inverse=True)
        stored = self.stored(features)
        schema = pq.ParquetFile(self.files[0]).schema_arrow
        bounds = np.searchsorted(wanted, [start for _, _, start in self.row_groups] + [self.rows])

        def read(k: int) -> pa.Table | None:
            # A row group is decoded in batches and only its matched rows are kept, so memory
            # holds a batch per thread however large the files' row groups are.
            f, g, start = self.row_groups[k]
            want = wanted[bounds[k]:bounds[k + 1]] - start
            reader = pq.ParquetFile(self.files[f], pre_buffer=False)
            kept, done, offset = [], 0, 0
            for batch in reader.iter_batches(batch_size=_BATCH_ROWS, row_groups=[g],
                                             columns=stored, use_threads=False):
                offset += batch.num_rows
                upto = int(np.searchsorted(want, offset))
                if upto > done:
                    kept.append(batch.take(pa.array(want[done:upto] - (offset - batch.num_rows))))
                    done = upto
                if done == len(want):
                    break
            return pa.Table.from_batches(kept) if kept else None

        busy = [k for k in range(len(self.row_groups)) if bounds[k] < bounds[k + 1]]
        with ThreadPoolExecutor(max(1, min(threads, len(busy)))) as pool:
            parts = [t for t in pool.map(read, busy) if t is not None]
        rows = pa.concat_tables(parts, promote_options="permissive") if parts else \
            schema.empty_table().select(stored)
        index = np.zeros(len(found), dtype=np.int64)
        index[matched] = back
        index = pa.array(index, mask=~matched)
        return {name: rows.column(src).take(index) for src, (_, name) in zip(stored, features)}


def _resolver(view: ViewSpec, columns: dict[str, str]):
    """Source column by view name: every column under its name, renamed by the field mapping."""
    by_name = dict(zip(columns, columns))
    for src, dst in view.field_mapping.items():
        if src not in columns:
            continue
        if dst in columns and dst not in view.field_mapping:
            raise FeatureInputError(
                f"view {view.name!r}: its field mapping renames {src!r} to {dst!r}, but the "
                f"source already has a column {dst!r}")
        by_name.pop(src, None)
    for src, dst in view.field_mapping.items():
        if src in columns:
            by_name[dst] = src

    def column(name: str, what: str, fallback: bool = False) -> str:
        if name in by_name:
            return by_name[name]
        if fallback and name in columns:
            return name
        raise FeatureInputError(
            f"view {view.name!r}: {what} {name!r} is not a column of its source {view.path} "
            f"(its columns, after the field mapping: {_names(by_name)})")

    return column


def _timestamp_expr(view: ViewSpec, column: str, duck_type: str, what: str) -> str:
    kind = duck_type.upper()
    if kind in _NAIVE:
        raise FeatureInputError(
            f"view {view.name!r}: {what} {column!r} of {view.path} holds timestamps without a time "
            f"zone ({duck_type}); write them with one, e.g. df[{column!r}] = "
            f"df[{column!r}].dt.tz_localize('UTC'), and save the file again")
    if kind not in _TZ_AWARE:
        raise FeatureInputError(
            f"view {view.name!r}: {what} {column!r} of {view.path} holds {duck_type}, not "
            "tz-aware timestamps")
    return f"epoch_ns({_q(column)})"


def _query(plans: list[_ViewPlan], sources: list[_Source], labels: pa.Schema,
           bounds: tuple[int, int] | None) -> str:
    """One ASOF JOIN per view, chained: per label, the file and row of each view's match."""
    selects = [f"l.{_RID}"]
    joins = []
    for plan, source in zip(plans, sources):
        view, a, column = plan.view, plan.alias, source.column
        parts, on = [], []
        for i, key in enumerate(view.join_keys):
            src = column(key.name, "the join key")
            label_type = labels.field(key.name).type
            _check_key(view, key.name, label_type, source.columns[src])
            mine, theirs = f"l.{_q(key.name)}", _q(src)
            span = source.integer_range(src) if len(view.join_keys) == 1 and \
                pa.types.is_integer(label_type) and _duck_family(source.columns[src]) == "number" \
                else None
            if span is not None and span[1] - span[0] < 2**31:
                # The join sorts the source by key and time; a key of 4 bytes instead of 8 keeps
                # DuckDB's sort key within 24 bytes even with the (event, created) time, which
                # takes half the CPU of the next size up. Labels outside the range match nothing.
                low, high = span
                theirs = f"({theirs} - {low})::INTEGER"
                mine = (f"CASE WHEN {mine} BETWEEN {low} AND {high} "
                        f"THEN ({mine} - {low})::INTEGER END")
            parts.append(f"{theirs} AS k{i}")
            on.append(f"{mine} = {a}.k{i}")
        ts_src = column(view.timestamp_field, "the timestamp field", fallback=True)
        event = _timestamp_expr(view, ts_src, source.columns[ts_src], "the timestamp field")
        ttl = int(round(view.ttl_seconds * 1e9)) if view.ttl_seconds and view.ttl_seconds > 0 else 0
        # Rows after the last label, or expired before the first, cannot match. The bounds are
        # whole microseconds, rounded outwards: a filter on the column itself lets DuckDB skip
        # row groups by their statistics, and the join checks the exact times.
        if bounds is None:
            where = "false"
        else:
            ts = _q(ts_src)
            where = f"{ts} <= make_timestamp({-(-bounds[1] // 1000)})::TIMESTAMPTZ"
            if ttl:
                where += f" AND {ts} >= make_timestamp({(bounds[0] - ttl) // 1000})::TIMESTAMPTZ"
        if view.created_timestamp_column:
            created_src = column(view.created_timestamp_column, "the created timestamp column",
                                 fallback=True)
            created = _timestamp_expr(view, created_src, source.columns[created_src],
                                      "the created timestamp column")
            # One ASOF key ordering rows by (event, created), event * 2^64 + created + 2^63 (a
            # missing created time counts as the earliest): the newest created row wins a tie on
            # the event time without a separate pass to deduplicate the source.
            parts.append(f"({event}::HUGEINT << 64) + (coalesce({created}, {_INT64_MIN_SQL})"
                         f"::HUGEINT + {2**63}) AS t")
            on.append(f"((l.{_TIME}::HUGEINT << 64) + {2**64 - 1}) >= {a}.t")
            matched = f"({a}.t >> 64)"
        else:
            parts.append(f"{event} AS t")
            on.append(f"l.{_TIME} >= {a}.t")
            matched = f"{a}.t"
        # Where the row is, in one number: the join carries it through its sort.
        parts.append(f"(file_index::BIGINT << {_FILE_SHIFT}) + file_row_number AS place")
        row = f"{a}.place"
        if ttl:
            row = f"CASE WHEN {matched} >= l.{_TIME} - {ttl} THEN {row} END"
        selects.append(f"{row} AS {a}_row")
        joins.append(f"ASOF LEFT JOIN (SELECT {', '.join(parts)} FROM {source.scan} "
                     f"WHERE {where}) {a} ON {' AND '.join(on)}")
    return f"SELECT {', '.join(selects)} FROM __himalia_labels l {' '.join(joins)}"


def _check_key(view: ViewSpec, key: str, label_type, duck_type: str) -> None:
    mine, theirs = _arrow_family(label_type), _duck_family(duck_type)
    if mine is None or theirs is None or mine == theirs:
        return
    want = _SUGGESTED_DTYPE.get(theirs) or ("int64" if "INT" in duck_type.upper() else "float64")
    raise FeatureInputError(
        f"join key {key!r}: entity_df[{key!r}] holds {label_type} values but view {view.name!r} "
        f"keeps {key!r} as {duck_type}, so no row could match; convert it, e.g. "
        f"entity_df[{key!r}] = entity_df[{key!r}].astype({want!r})")


def _fetch(con, sql: str) -> pa.Table:
    try:
        relation = con.sql(sql)
        fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
        return fetch()
    except duckdb.BinderException as e:
        raise FeatureInputError(f"the labels cannot be joined to the views: "
                                f"{str(e).splitlines()[0]}") from None
