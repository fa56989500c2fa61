"""Online reads: the newest feature values of a batch of entities, straight from the online
store Feast materialized into (SQLite or Redis).

``OnlineStore.read`` answers what Feast's ``FeatureStore.get_online_features(features=refs,
entity_rows=...).to_df()`` answers for the same keys, values and dtypes alike, without importing
Feast: entity keys are serialized here (``entity_key_bytes``), each view costs one SQL query or
one pipelined round trip of ``HMGET``s, and the scalar ``feast.types.Value`` protobufs are decoded
by hand (``decode_value``), the doubles and floats of a column in one numpy call.

What the rows are, as Feast 0.67 has them:

* SQLite: table ``<project>_<view>`` with one row per (``entity_key``, ``feature_name``) holding
  the serialized ``Value`` in ``value`` (and its ``event_ts``).
* Redis: one hash per entity key at ``entity_key_bytes + project``; a feature's field is the
  murmur3 (32-bit, little-endian) hash of ``"<view>:<feature>"``, and ``_ts:<view>`` holds the
  view's event time.

Expiry: Feast 0.67's ``get_online_features`` hands back whatever value is stored, however old
(a view's ``ttl`` only bounds what ``materialize`` loads), so neither the view's ``ttl_seconds``
nor the stored event times are consulted here either.

Columns: the key columns in the order of ``entities``, then one column per ref, named by its
feature name, in the order of ``refs``. (Feast orders the features of one view as a set does, so
compare frames column by column, not by position.) An empty batch gives an empty frame where
Feast raises.

Not covered: Feast's versioned online tables (``enable_online_feature_view_versioning``), views
without an entity, and Redis clusters or sentinels.
"""

from __future__ import annotations

import difflib
import struct
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .spec import ViewSpec, parse_ref

__all__ = [
    "ENTITY_KEY_SERIALIZATION_VERSIONS", "EntityRowsError", "OnlineStore", "RedisOnlineStore",
    "SqliteOnlineStore", "UnknownFeatureError", "decode_value", "entity_key_bytes",
    "parse_redis_connection_string",
]

ENTITY_KEY_SERIALIZATION_VERSIONS = (2, 3)
"""The entity key serializations this reader writes keys in (Feast 0.67 defaults to 3 and
warns that anything below it is deprecated)."""

_NULL_TIMESTAMP = -(2**63)  # Feast's stand-in for a missing UNIX_TIMESTAMP value
_INT64_WRAP = 2**64
_INT64_SIGN = 2**63
# Wire tags (field number << 3 | wire type) of the scalar members of Feast's ``Value`` oneof.
_BYTES, _STRING, _INT32, _INT64 = 0x0A, 0x12, 0x18, 0x20
_DOUBLE, _FLOAT, _BOOL, _UNIX_TIMESTAMP = 0x29, 0x35, 0x38, 0x40
_NULL_VAL = b"\x98\x01"  # field 19 (null_val), varint
_DOUBLE_RECORD = np.dtype([("tag", "u1"), ("value", "<f8")])
_FLOAT_RECORD = np.dtype([("tag", "u1"), ("value", "<f4")])
_DOUBLE_NAN = bytes([_DOUBLE]) + struct.pack("<d", float("nan"))
_FLOAT_NAN = bytes([_FLOAT]) + struct.pack("<f", float("nan"))
# Feature types whose stored form ``decode_value`` turns into what Feast's
# ``feast_value_type_to_python_type`` gives; the rest go through Feast itself.
_DECODED_TYPES = frozenset(
    {"DOUBLE", "FLOAT", "INT64", "INT32", "BOOL", "STRING", "BYTES", "UNIX_TIMESTAMP"})
_unpack_double = struct.Struct("<d").unpack_from
_unpack_float = struct.Struct("<f").unpack_from
_pack_header = struct.Struct("<II").pack
_SQLITE_MMAP_BYTES = 1 << 30


class UnknownFeatureError(KeyError):
    """A ref names a view or a feature the views do not have; the message suggests the closest."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class EntityRowsError(ValueError):
    """The entity columns do not fit the views: a join key is missing, the columns differ in
    length, or a key value is not of the key's type."""


def entity_key_bytes(join_keys: Sequence[str], dtypes: Sequence[str],
                     columns: Sequence[Sequence], version: int = 3) -> list[bytes]:
    """Each row of the key ``columns`` serialized as Feast's ``serialize_entity_key`` does.

    ``join_keys[i]`` names ``columns[i]`` and ``dtypes[i]`` is its Feast value type (``INT64``,
    ``INT32``, ``STRING`` or ``BYTES``). Version 3 writes the number of keys, then each key name
    (sorted) as type, length, UTF-8; then each value as type, length, little-endian bytes.
    Version 2 leaves out the count and the name lengths.
    """
    if version not in ENTITY_KEY_SERIALIZATION_VERSIONS:
        raise ValueError(f"entity key serialization version {version} is not supported; "
                         f"use one of {ENTITY_KEY_SERIALIZATION_VERSIONS}")
    order = sorted(range(len(join_keys)), key=lambda i: join_keys[i])
    head = [struct.pack("<I", len(join_keys))] if version >= 3 else []
    for i in order:
        name = join_keys[i].encode("utf-8")
        head.append(_pack_header(2, len(name)) + name if version >= 3
                    else struct.pack("<I", 2) + name)
    prefix = b"".join(head)
    parts = [_value_parts(join_keys[i], dtypes[i], columns[i]) for i in order]
    if len(parts) == 1:
        return [prefix + part for part in parts[0]]
    return [prefix + b"".join(row) for row in zip(*parts)]


def _value_parts(name: str, dtype: str, values: Sequence) -> list[bytes]:
    """The serialized form (type, length, bytes) of each value of one key column."""
    if dtype in ("INT64", "INT32"):
        ints = _integers(name, values)
        if dtype == "INT64":
            raw = ints.astype("<i8", copy=False).tobytes()
            header = _pack_header(4, 8)
            return [header + raw[i:i + 8] for i in range(0, len(raw), 8)]
        if len(ints) and (ints.min() < -(2**31) or ints.max() >= 2**31):
            raise EntityRowsError(f"entity column {name!r} holds values outside INT32's range")
        raw = ints.astype("<i4").tobytes()
        header = _pack_header(3, 4)
        return [header + raw[i:i + 4] for i in range(0, len(raw), 4)]
    if dtype == "STRING":
        try:
            encoded = [value.encode("utf-8") for value in values]
        except AttributeError:
            raise EntityRowsError(f"entity column {name!r} is a STRING key but holds "
                                  f"non-string values") from None
        return [_pack_header(2, len(value)) + value for value in encoded]
    if dtype == "BYTES":
        if not all(isinstance(value, bytes) for value in values):
            raise EntityRowsError(f"entity column {name!r} is a BYTES key but holds "
                                  f"values other than bytes")
        return [_pack_header(1, len(value)) + value for value in values]
    raise EntityRowsError(f"join key {name!r} has type {dtype}; online reads support "
                          f"INT64, INT32, STRING and BYTES keys")


def _integers(name: str, values: Sequence) -> np.ndarray:
    array = np.asarray(values)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype.kind in "iu" and array.ndim == 1:
        if array.dtype.kind == "u" and len(array) and array.max() >= 2**63:
            raise EntityRowsError(f"entity column {name!r} holds values outside INT64's range")
        return array.astype(np.int64, copy=False)
    if array.dtype.kind == "O" and array.ndim == 1 and all(
            isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            for value in values):
        try:
            return np.array([int(value) for value in values], dtype=np.int64)
        except OverflowError:
            raise EntityRowsError(f"entity column {name!r} holds values outside INT64's "
                                  f"range") from None
    raise EntityRowsError(f"entity column {name!r} is an integer key but holds "
                          f"{array.dtype} values")


def _varint(blob: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = blob[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def decode_value(blob: bytes | None) -> Any:
    """One serialized ``feast.types.Value`` as Feast's ``feast_value_type_to_python_type``
    returns it: ``None`` for a missing or empty value, ``float``, ``int``, ``bool``, ``str``,
    ``bytes``, or a UTC ``datetime`` for a unix timestamp. Other kinds of value (lists, maps, ...)
    are handed to Feast's own converter."""
    if not blob:
        return None
    tag = blob[0]
    size = len(blob)
    if tag == _DOUBLE and size == 9:
        return _unpack_double(blob, 1)[0]
    if tag == _FLOAT and size == 5:
        return _unpack_float(blob, 1)[0]
    if tag in (_INT64, _INT32, _UNIX_TIMESTAMP, _BOOL):
        value, end = _varint(blob, 1)
        if end == size:
            if tag == _BOOL:
                return value != 0
            if value >= _INT64_SIGN:
                value -= _INT64_WRAP
            if tag != _UNIX_TIMESTAMP:
                return value
            if value == _NULL_TIMESTAMP:
                return None
            return datetime.fromtimestamp(value, tz=timezone.utc)
    elif tag in (_STRING, _BYTES):
        length, start = _varint(blob, 1)
        if start + length == size:
            raw = blob[start:]
            return raw.decode("utf-8") if tag == _STRING else bytes(raw)
    elif blob == _NULL_VAL:
        return None
    return _decode_with_feast(blob, None)


def _decode_with_feast(blob: bytes | None, dtype: str | None) -> Any:
    """Feast's own decoding, for the kinds of value ``decode_value`` leaves to it (imports
    Feast, once)."""
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import feast_value_type_to_python_type
    from feast.value_type import ValueType

    value = Value.FromString(blob or b"")
    kind = ValueType[dtype] if dtype and dtype in ValueType.__members__ else None
    return feast_value_type_to_python_type(value, kind)


def _column(blobs: Sequence[Any], dtype: str) -> Any:
    """The values of one feature for every requested row, as Feast's ``to_df`` types them:
    pandas infers the dtype from the same Python values Feast hands it, except that doubles
    and floats become a float64 array directly (NaN where missing, all ``None`` when every
    value is missing, as pandas makes of Feast's list)."""
    n = len(blobs)
    if dtype in ("DOUBLE", "FLOAT") and n:
        missing = blobs.count(None) + blobs.count(b"")
        if missing == n:
            return [None] * n
        if dtype == "DOUBLE":
            record, filler, width, tag = _DOUBLE_RECORD, _DOUBLE_NAN, 9, _DOUBLE
        else:
            record, filler, width, tag = _FLOAT_RECORD, _FLOAT_NAN, 5, _FLOAT
        joined = b"".join([blob or filler for blob in blobs]) if missing else b"".join(blobs)
        if len(joined) == width * n:
            records = np.frombuffer(joined, dtype=record)
            if (records["tag"] == tag).all():
                return records["value"].astype(np.float64)
    if dtype in _DECODED_TYPES:
        return [decode_value(blob) for blob in blobs]
    return [_decode_with_feast(blob, dtype) for blob in blobs]


class _ViewRead:
    """What reading some features of one view needs, worked out once and kept per store."""

    def __init__(self, store: "OnlineStore", view: ViewSpec, features: tuple[str, ...]):
        self.view = view
        self.features = features
        self.dtypes = tuple(view.feature(name).dtype for name in features)
        self.join_keys = tuple(key.name for key in view.join_keys)
        self.key_dtypes = tuple(key.dtype for key in view.join_keys)
        if not self.join_keys:
            raise ValueError(f"feature view {view.name!r} has no join keys; online reads need "
                             f"views keyed by an entity")
        self.prepared: Any = store._prepare(self)


class OnlineStore:
    """Reads the online store of one Feast project. Build one with :meth:`from_config` and keep
    it: connections and per-view statements are reused across reads."""

    types: ClassVar[dict[str, type["OnlineStore"]]] = {}
    """Store classes by the ``type`` of Feast's ``online_store`` setting."""

    def __init__(self, project: str, entity_key_serialization_version: int = 3):
        if entity_key_serialization_version not in ENTITY_KEY_SERIALIZATION_VERSIONS:
            raise ValueError(
                f"entity key serialization version {entity_key_serialization_version} is not "
                f"supported; use one of {ENTITY_KEY_SERIALIZATION_VERSIONS}")
        self.project = project
        self.entity_key_serialization_version = entity_key_serialization_version
        self._reads: dict[tuple[str, tuple[str, ...]], _ViewRead] = {}

    def __init_subclass__(cls, type_name: str = "", **kwargs):
        super().__init_subclass__(**kwargs)
        if type_name:
            OnlineStore.types[type_name] = cls

    @classmethod
    def from_config(cls, config: Mapping[str, Any], project: str,
                    entity_key_serialization_version: int = 3) -> "OnlineStore":
        """The reader for Feast's ``online_store`` setting ``config`` (``{"type": "sqlite",
        "path": ...}`` or ``{"type": "redis", "connection_string": "host:port,db=3"}``) of
        ``project``, whose keys were written with ``entity_key_serialization_version``."""
        options = dict(config)
        kind = options.pop("type", "sqlite")
        if kind not in cls.types:
            raise ValueError(f"online store type {kind!r} is not supported; "
                             f"choose one of {sorted(cls.types)}")
        return cls.types[kind](project, entity_key_serialization_version, **options)

    def read(self, views: Mapping[str, ViewSpec], refs: Sequence[str],
             entities: Mapping[str, Sequence]) -> pd.DataFrame:
        """The stored values of ``refs`` (``"view:feature"``) for each row of ``entities`` (join
        key -> equal-length column), one row per entity row in the given order, duplicates and
        keys that are not stored (null there) included."""
        plan = self._plan(views, refs)
        key_names = [name for name in entities
                     if any(name in read.join_keys for read in plan)]
        rows = self._row_count(plan, entities, key_names)
        columns: dict[str, Any] = {
            name: self._key_column(plan, name, entities[name]) for name in key_names}
        serialized: dict[tuple, list[bytes]] = {}  # views with the same join keys share them
        for read in plan:
            if not rows:
                by_feature: Sequence[Sequence] = [()] * len(read.features)
            else:
                signature = (read.join_keys, read.key_dtypes)
                if signature not in serialized:
                    serialized[signature] = entity_key_bytes(
                        read.join_keys, read.key_dtypes,
                        [columns[name] for name in read.join_keys],
                        self.entity_key_serialization_version)
                by_feature = self._fetch(read, serialized[signature])
            for name, dtype, blobs in zip(read.features, read.dtypes, by_feature):
                columns[name] = _column(blobs, dtype)
        order = [*key_names, *(parse_ref(ref)[1] for ref in refs)]
        return pd.DataFrame({name: columns[name] for name in order})

    def close(self) -> None:
        """Let go of the store's connections."""

    def __enter__(self) -> "OnlineStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _fetch(self, read: _ViewRead, keys: list[bytes]) -> Sequence[Sequence[bytes | None]]:
        """For each of ``read.features``, its stored value for each key in ``keys`` (``None``
        where there is none)."""
        raise NotImplementedError

    def _prepare(self, read: _ViewRead) -> Any:
        """What reading ``read`` will need (statements, field names), worked out once."""

    def _plan(self, views: Mapping[str, ViewSpec], refs: Sequence[str]) -> list[_ViewRead]:
        if not refs:
            raise ValueError("no features requested: pass refs such as ['view:feature']")
        wanted: dict[str, list[str]] = {}
        seen: dict[str, str] = {}
        for ref in refs:
            view_name, feature = parse_ref(ref)
            view = views.get(view_name)
            if view is None:
                raise UnknownFeatureError(
                    f"feature view {view_name!r} (in {ref!r}) is not defined"
                    + _suggestion(view_name, list(views)))
            if all(spec.name != feature for spec in view.features):
                raise UnknownFeatureError(
                    f"feature view {view_name!r} has no feature {feature!r}"
                    + _suggestion(feature, [spec.name for spec in view.features],
                                  prefix=f"{view_name}:"))
            if feature in seen:
                raise ValueError(f"{seen[feature]!r} and {ref!r} would both be column {feature!r}; "
                                 f"request one feature of each name")
            seen[feature] = ref
            wanted.setdefault(view_name, []).append(feature)
        plan = []
        for view_name, features in wanted.items():
            view = views[view_name]
            cache_key = (view_name, tuple(features))
            read = self._reads.get(cache_key)
            if read is None or read.view is not view:
                read = self._reads[cache_key] = _ViewRead(self, view, tuple(features))
            clash = seen.keys() & set(read.join_keys)
            if clash:
                raise ValueError(f"feature {sorted(clash)[0]!r} has the name of a join key")
            plan.append(read)
        return plan

    @staticmethod
    def _row_count(plan: list[_ViewRead], entities: Mapping[str, Sequence],
                   key_names: list[str]) -> int:
        for read in plan:
            for name in read.join_keys:
                if name not in entities:
                    raise EntityRowsError(
                        f"entity column {name!r} (a join key of view {read.view.name!r}) is "
                        f"missing; the entity columns given are {sorted(entities)}")
        lengths = {name: len(entities[name]) for name in key_names}
        rows = lengths[key_names[0]] if key_names else 0
        for name, length in lengths.items():
            if length != rows:
                raise EntityRowsError(
                    f"entity column {name!r} has {length} values but {key_names[0]!r} has "
                    f"{rows}; entity columns must have equal lengths")
        return rows

    @staticmethod
    def _key_column(plan: list[_ViewRead], name: str, values: Sequence) -> Any:
        dtype = next(read.key_dtypes[read.join_keys.index(name)]
                     for read in plan if name in read.join_keys)
        if dtype in ("INT64", "INT32"):
            return _integers(name, values)
        if dtype == "STRING":
            return [str(value) for value in values]
        return list(values)


def _suggestion(name: str, choices: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    if close:
        return f"; did you mean {prefix + close[0]!r}?"
    return f"; choose from {sorted(choices)}" if choices else ""


class SqliteOnlineStore(OnlineStore, type_name="sqlite"):
    """Feast's SQLite online store, opened read-only: one ``SELECT`` per view and read, which
    joins the keys (numbered by their position) with the view's table."""

    def __init__(self, project: str, entity_key_serialization_version: int = 3, *,
                 path: str = "data/online.db", keys_per_query: int = 10_000, **_ignored: Any):
        """``path``: the SQLite file (absolute, or relative to the working directory);
        ``keys_per_query``: larger batches take several queries (SQLite caps the number of
        bound parameters at 32766). Feast's other settings are ignored."""
        super().__init__(project, entity_key_serialization_version)
        self.keys_per_query = keys_per_query
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise FileNotFoundError(f"the SQLite online store {str(self.path)!r} does not "
                                    f"exist; materialize the feature views into it first")
        import sqlite3

        self._error = sqlite3.Error
        self._conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True,
                                     check_same_thread=False, cached_statements=256)
        # Pages read through a memory map rather than a read() each: random key lookups
        # touch a few pages per key.
        self._conn.execute(f"PRAGMA mmap_size={_SQLITE_MMAP_BYTES}").fetchall()
        self._lock = threading.Lock()

    def _prepare(self, read: _ViewRead) -> "_SqliteQuery":
        return _SqliteQuery(f"{self.project}_{read.view.name}", read.features,
                            len(read.view.features))

    def _fetch(self, read: _ViewRead, keys: list[bytes]) -> list[list]:
        query: _SqliteQuery = read.prepared
        count = len(read.features)
        cells: dict = {}
        for start in range(0, len(keys), self.keys_per_query):
            chunk = keys[start:start + self.keys_per_query]
            try:
                with self._lock:
                    rows = self._conn.execute(query.statement(len(chunk)),
                                              (*chunk, *query.params)).fetchall()
            except self._error as e:
                if "no such table" in str(e):
                    raise LookupError(
                        f"feature view {read.view.name!r} has no table in the online store "
                        f"{str(self.path)!r}; apply and materialize it first") from None
                raise
            if start:
                offset = start * count
                cells.update((cell + offset, value) for cell, value in rows if cell is not None)
            else:
                cells.update(rows)
        total = len(keys) * count
        return [list(map(cells.get, range(j, total, count))) for j in range(count)]

    def close(self) -> None:
        self._conn.close()


class _SqliteQuery:
    """The ``SELECT`` that reads some features of one view's table for a number of keys: the
    keys, numbered by position, joined with the table; each row answers with its cell number
    ``key * features + feature`` and the stored value, so Python only files cells by number."""

    def __init__(self, table: str, features: tuple[str, ...], view_width: int):
        self.table = '"' + table.replace('"', '""') + '"'
        self.count = len(features)
        self.cell = "CASE t.feature_name " + " ".join(
            f"WHEN ? THEN {j}" for j in range(self.count)) + " END"
        # A few of a wide view's features: look up (key, feature) pairs in the primary key
        # rather than going through every feature row of each key.
        self.narrow = 2 * self.count < view_width
        self.params = features * (2 if self.narrow else 1)
        self._statements: dict[int, str] = {}

    def statement(self, keys: int) -> str:
        """The SQL for ``keys`` keys (bound first, then ``params``)."""
        text = self._statements.get(keys)
        if text is None:
            numbered = ",".join(f"({i},?)" for i in range(keys))
            where = (f" WHERE t.feature_name IN ({','.join('?' * self.count)})"
                     if self.narrow else "")
            text = self._statements[keys] = (
                f"WITH k(i, entity_key) AS (VALUES {numbered}) "
                f"SELECT k.i * {self.count} + {self.cell}, t.value "
                f"FROM k JOIN {self.table} t ON t.entity_key = k.entity_key{where}")
        return text


class RedisOnlineStore(OnlineStore, type_name="redis"):
    """Feast's Redis online store: one pipelined round trip of ``HMGET``s per view and read,
    one per distinct key."""

    def __init__(self, project: str, entity_key_serialization_version: int = 3, *,
                 connection_string: str = "localhost:6379", redis_type: str = "redis",
                 keys_per_round_trip: int = 10_000, **_ignored: Any):
        """``connection_string``: Feast's (``host:port,db=3,password=...,ssl=true``);
        ``keys_per_round_trip``: larger batches take several pipelined round trips. Feast's
        other settings are ignored."""
        if redis_type != "redis":
            raise ValueError(f"redis_type {redis_type!r} is not supported by online reads; "
                             f"only a single Redis server ('redis') is")
        super().__init__(project, entity_key_serialization_version)
        self.keys_per_round_trip = keys_per_round_trip
        import redis

        host, port, params = parse_redis_connection_string(connection_string)
        params["decode_responses"] = False
        self._client = redis.Redis(host=host, port=port, **params)
        self._pool = self._client.connection_pool
        # redis-py before 5.3 wants the command's name when handing out a connection.
        version = tuple(int(part) for part in redis.__version__.split(".")[:2] if part.isdigit())
        self._connection_args = ("HMGET",) if version < (5, 3) else ()
        self._suffix = project.encode("utf-8")

    def _prepare(self, read: _ViewRead) -> tuple[bytes, bytes]:
        """The start of an ``HMGET`` of the features in Redis' wire format, up to the key, and
        its end after the key: the features' fields (murmur3 of ``"<view>:<feature>"``)."""
        import mmh3

        fields = [struct.pack("<I", mmh3.hash(f"{read.view.name}:{name}", signed=False))
                  for name in read.features]
        head = b"*%d\r\n$5\r\nHMGET\r\n" % (len(fields) + 2)
        return head, b"".join(b"$%d\r\n%s\r\n" % (len(field), field) for field in fields)

    def _fetch(self, read: _ViewRead, keys: list[bytes]) -> list:
        distinct = list(dict.fromkeys(keys))
        replies: list = []
        for start in range(0, len(distinct), self.keys_per_round_trip):
            replies.extend(self._hmget(read, distinct[start:start + self.keys_per_round_trip]))
        if len(distinct) != len(keys):
            by_key = dict(zip(distinct, replies))
            replies = [by_key[key] for key in keys]
        return list(zip(*replies))

    def _hmget(self, read: _ViewRead, keys: list[bytes]) -> list:
        (head, fields), suffix = read.prepared, self._suffix
        payload = b"".join([b"%s$%d\r\n%s%s\r\n%s" % (head, len(key) + len(suffix), key, suffix,
                                                       fields) for key in keys])
        conn = self._pool.get_connection(*self._connection_args)
        try:
            conn.send_packed_command([payload])
            return [conn.read_response() for _ in keys]
        except BaseException:
            conn.disconnect()  # replies may be left unread: never reuse this connection
            raise
        finally:
            self._pool.release(conn)

    def close(self) -> None:
        self._client.close()


def parse_redis_connection_string(text: str) -> tuple[str, int, dict[str, Any]]:
    """Feast's Redis ``connection_string`` (``host:port,db=3,password=...,ssl=true``) as host,
    port and keyword arguments for ``redis.Redis`` (values read as JSON where they parse)."""
    import json

    nodes, params = [], {}
    for part in text.split(","):
        if "=" in part:
            name, value = part.split("=", 1)
            try:
                params[name] = json.loads(value)
            except json.JSONDecodeError:
                params[name] = value
        elif part:
            nodes.append(part)
    if len(nodes) != 1:
        raise ValueError(f"Redis connection string {text!r} should name exactly one host:port")
    host, _, port = nodes[0].partition(":")
    return host or "localhost", int(port or 6379), params
