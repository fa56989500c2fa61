"""Online reads answer what Feast's ``get_online_features(...).to_df()`` answers.

Feast itself materializes a throwaway repository (a file registry and Parquet sources in a
temporary folder) into a real SQLite file and into the Redis server on 127.0.0.1 (a project name
of this run's own, whose keys are deleted afterwards); each test compares himalia's frame with
Feast's for the same keys. A change in how Feast stores online data fails these tests.
"""

from __future__ import annotations

import math
import os
import secrets
import subprocess
import sys
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest

from himalia.features.online import (EntityRowsError, OnlineStore, UnknownFeatureError,
                                     decode_value, entity_key_bytes,
                                     parse_redis_connection_string)
from himalia.features.spec import EntitySpec, FeatureSpec, ViewSpec

REDIS = os.environ.get("HIMALIA_TEST_REDIS", "127.0.0.1:6379")
NOW = datetime.now(timezone.utc).replace(microsecond=0)
CUSTOMERS = list(range(1, 31))

STATS = ViewSpec(
    name="customer_stats", path="", timestamp_field="event_timestamp",
    join_keys=(EntitySpec("customer_id", "INT64"),),
    features=(FeatureSpec("spend", "DOUBLE"), FeatureSpec("orders", "INT64"),
              FeatureSpec("tier", "STRING"), FeatureSpec("active", "BOOL"),
              FeatureSpec("last_seen", "UNIX_TIMESTAMP"), FeatureSpec("ratio", "FLOAT"),
              FeatureSpec("visits", "INT32")))
PROFILE = ViewSpec(
    name="customer_profile", path="", timestamp_field="event_timestamp",
    join_keys=(EntitySpec("customer_id", "INT64"),),
    features=(FeatureSpec("segment", "STRING"), FeatureSpec("score", "DOUBLE")))
PAIRS = ViewSpec(
    name="customer_merchant", path="", timestamp_field="event_timestamp",
    join_keys=(EntitySpec("customer_id", "INT64"), EntitySpec("merchant", "STRING")),
    features=(FeatureSpec("amount", "DOUBLE"), FeatureSpec("count", "INT64")))
ACCOUNTS = ViewSpec(
    name="account_stats", path="", timestamp_field="event_timestamp",
    join_keys=(EntitySpec("account", "STRING"),),
    features=(FeatureSpec("balance", "DOUBLE"), FeatureSpec("flagged", "BOOL")))
VIEWS = {view.name: view for view in (STATS, PROFILE, PAIRS, ACCOUNTS)}
STATS_REFS = [f"customer_stats:{spec.name}" for spec in STATS.features]


def _stats_rows() -> pd.DataFrame:
    """Two rows per customer (the newer one is what goes online), with nulls sprinkled in:
    customer 5 has every feature null, customers 7, 11, ... some of them."""
    rng = np.random.default_rng(7)
    frames = []
    for age in (timedelta(days=2), timedelta(hours=1)):
        n = len(CUSTOMERS)
        frame = pd.DataFrame({
            "customer_id": np.array(CUSTOMERS, dtype="int64"),
            "event_timestamp": [NOW - age] * n,
            "created": [NOW - age] * n,
            "spend": rng.standard_normal(n) * 100,
            "orders": pd.array(rng.integers(-(2**40), 2**40, n), dtype="Int64"),
            "tier": pd.array([["gold", "", "Zürich ☃", "silver"][i % 4] for i in range(n)],
                             dtype="object"),
            "active": pd.array([i % 3 == 0 for i in range(n)], dtype="boolean"),
            "last_seen": [NOW - timedelta(minutes=i) for i in range(n)],
            "ratio": rng.random(n).astype("float32"),
            "visits": pd.array(rng.integers(-1000, 1000, n), dtype="Int32"),
        })
        for column in ("spend", "orders", "tier", "active", "last_seen", "ratio", "visits"):
            frame.loc[frame.customer_id == 5, column] = None
        frame.loc[frame.customer_id % 7 == 0, ["orders", "tier"]] = None
        frame.loc[frame.customer_id % 11 == 0, ["ratio", "last_seen", "active"]] = None
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _sources(folder) -> dict[str, str]:
    n = len(CUSTOMERS)
    stamp = {"event_timestamp": [NOW - timedelta(hours=1)] * n,
             "created": [NOW - timedelta(hours=1)] * n}
    frames = {
        "customer_stats": _stats_rows(),
        "customer_profile": pd.DataFrame({
            "customer_id": np.array(CUSTOMERS, dtype="int64"), **stamp,
            "segment": [f"segment-{i % 5}" for i in CUSTOMERS],
            "score": [i / 7 for i in CUSTOMERS]}),
        "customer_merchant": pd.DataFrame({
            "customer_id": np.array(CUSTOMERS, dtype="int64"), **stamp,
            "merchant": [["acme", "globex", "initech"][i % 3] for i in CUSTOMERS],
            "amount": [i * 1.5 for i in CUSTOMERS],
            "count": np.array(CUSTOMERS, dtype="int64") * 3}),
        "account_stats": pd.DataFrame({
            "account": [f"acct-{i:03d}" for i in CUSTOMERS], **stamp,
            "balance": [i * 10.25 for i in CUSTOMERS],
            "flagged": [i % 4 == 0 for i in CUSTOMERS]}),
    }
    paths = {}
    for name, frame in frames.items():
        paths[name] = str(folder / f"{name}.parquet")
        frame.to_parquet(paths[name])
    return paths


def _feast_objects(paths: dict[str, str]) -> list:
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast import types

    feast_types = {"DOUBLE": types.Float64, "FLOAT": types.Float32, "INT64": types.Int64,
                   "INT32": types.Int32, "STRING": types.String, "BOOL": types.Bool,
                   "UNIX_TIMESTAMP": types.UnixTimestamp}
    entities = {"customer_id": Entity(name="customer", join_keys=["customer_id"],
                                      value_type=ValueType.INT64),
                "merchant": Entity(name="merchant", join_keys=["merchant"],
                                   value_type=ValueType.STRING),
                "account": Entity(name="account", join_keys=["account"],
                                  value_type=ValueType.STRING)}
    objects: list = list(entities.values())
    for view in VIEWS.values():
        objects.append(FeatureView(
            name=view.name, entities=[entities[key.name] for key in view.join_keys],
            ttl=timedelta(days=30),
            schema=[*(Field(name=key.name, dtype=feast_types[key.dtype]) for key in view.join_keys),
                    *(Field(name=spec.name, dtype=feast_types[spec.dtype])
                      for spec in view.features)],
            source=FileSource(path=paths[view.name], timestamp_field="event_timestamp",
                              created_timestamp_column="created")))
    return objects


def _redis_reachable() -> bool:
    import redis

    host, port, params = parse_redis_connection_string(REDIS)
    try:
        with redis.Redis(host=host, port=port, socket_connect_timeout=2, **params) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _delete_redis_keys(project: str) -> None:
    import redis

    host, port, params = parse_redis_connection_string(REDIS)
    with redis.Redis(host=host, port=port, **params) as client:
        names = list(client.scan_iter(match=f"*{project}".encode(), count=1000))
        if names:
            client.delete(*names)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return _sources(tmp_path_factory.mktemp("feast-sources"))


@dataclass
class Stores:
    """Feast's FeatureStore and himalia's reader over the same materialized online store."""

    feast: Any
    reader: OnlineStore
    online: dict
    project: str


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def stores(request, sources, tmp_path_factory):
    from feast import FeatureStore, RepoConfig

    kind = request.param
    repo = tmp_path_factory.mktemp(f"feast-{kind}")
    project = f"himalia_unit_{secrets.token_hex(4)}"
    if kind == "redis":
        from himalia_testing import require_service

        if not _redis_reachable():
            require_service(f"Redis is not reachable at {REDIS}")
        online = {"type": "redis", "connection_string": REDIS}
    else:
        online = {"type": "sqlite", "path": str(repo / "online.db")}
    config = RepoConfig(project=project, provider="local", registry=str(repo / "registry.db"),
                        online_store=online, offline_store={"type": "file"},
                        entity_key_serialization_version=3, repo_path=str(repo))
    fs = FeatureStore(config=config)
    reader = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fs.apply(_feast_objects(sources))
            fs.materialize(NOW - timedelta(days=10), NOW)
        reader = OnlineStore.from_config(online, project, 3)
        yield Stores(fs, reader, online, project)
    finally:
        if reader is not None:
            reader.close()
        if kind == "redis":
            _delete_redis_keys(project)


def assert_same_as_feast(stores: Stores, refs: list[str], entities: dict,
                         reader: OnlineStore | None = None) -> pd.DataFrame:
    """himalia's frame equals Feast's, exactly; Feast orders one view's features as a set does,
    so its columns are put in himalia's order first."""
    ours = (reader or stores.reader).read(VIEWS, refs, entities)
    theirs = stores.feast.get_online_features(features=refs, entity_rows=entities).to_df()
    assert sorted(ours.columns) == sorted(theirs.columns)
    pd.testing.assert_frame_equal(ours, theirs[list(ours.columns)], check_exact=True)
    return ours


def test_keys_in_random_order_come_back_in_that_order(stores):
    keys = list(np.random.default_rng(3).permutation(CUSTOMERS))
    frame = assert_same_as_feast(stores, STATS_REFS, {"customer_id": keys})
    assert frame.customer_id.tolist() == keys
    assert list(frame.columns) == ["customer_id", *(spec.name for spec in STATS.features)]


def test_duplicate_keys_each_get_their_row(stores):
    frame = assert_same_as_feast(stores, STATS_REFS, {"customer_id": [3, 9, 3, 3, 12, 9]})
    assert frame.spend[0] == frame.spend[2] == frame.spend[3]


def test_keys_not_in_the_store_are_null_as_feast_has_them(stores):
    frame = assert_same_as_feast(stores, STATS_REFS, {"customer_id": [4, 999, 5, -1, 14]})
    assert math.isnan(frame.spend[1]) and frame.tier[1] is None


def test_a_batch_of_only_unknown_keys_is_all_none(stores):
    frame = assert_same_as_feast(stores, STATS_REFS, {"customer_id": [1000, 1001]})
    assert frame.spend.tolist() == [None, None]


def test_values_with_nulls_and_a_subset_of_features(stores):
    assert_same_as_feast(stores, ["customer_stats:tier", "customer_stats:ratio",
                                  "customer_stats:orders"],
                         {"customer_id": [5, 7, 11, 14, 22, 22]})


def test_two_views_in_one_call(stores):
    assert_same_as_feast(stores, ["customer_profile:segment", "customer_stats:spend",
                                  "customer_profile:score", "customer_stats:last_seen"],
                         {"customer_id": [2, 30, 77, 2, 11]})


def test_a_composite_key(stores):
    merchants = {i: ["acme", "globex", "initech"][i % 3] for i in CUSTOMERS}
    assert_same_as_feast(stores, ["customer_merchant:amount", "customer_merchant:count"],
                         {"merchant": [merchants[4], "acme", merchants[8], merchants[4]],
                          "customer_id": [4, 4, 8, 4]})


def test_string_keys(stores):
    assert_same_as_feast(stores, ["account_stats:flagged", "account_stats:balance"],
                         {"account": ["acct-004", "acct-017", "nobody", "acct-004"]})


def test_a_large_batch_matches_too(stores):
    keys = list(np.random.default_rng(5).integers(-5, 40, 2000))
    assert_same_as_feast(stores, STATS_REFS, {"customer_id": keys})


def test_a_batch_larger_than_one_query_is_split_and_put_back_in_order(stores):
    keys = list(np.random.default_rng(6).integers(-5, 40, 50))
    options = {**stores.online, "keys_per_query": 7, "keys_per_round_trip": 7}
    with OnlineStore.from_config(options, stores.project, 3) as reader:
        assert_same_as_feast(stores, STATS_REFS, {"customer_id": keys}, reader=reader)


def test_entity_columns_may_be_numpy_arrays_or_series(stores):
    keys = [8, 3, 99, 8]
    expected = stores.reader.read(VIEWS, STATS_REFS, {"customer_id": keys})
    for column in (np.array(keys), pd.Series(keys), np.array(keys, dtype="int32")):
        got = stores.reader.read(VIEWS, STATS_REFS, {"customer_id": column})
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
    frame = pd.DataFrame({"account": ["acct-001", "acct-002"], "other": [1, 2]})
    assert list(stores.reader.read(VIEWS, ["account_stats:balance"], frame).columns) == [
        "account", "balance"]


def test_an_empty_batch_is_an_empty_frame(stores):
    frame = stores.reader.read(VIEWS, STATS_REFS, {"customer_id": []})
    assert len(frame) == 0
    assert list(frame.columns) == ["customer_id", *(spec.name for spec in STATS.features)]


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("join_keys, dtypes, columns", [
    (["customer_id"], ["INT64"], [[0, 1, -1, 2**63 - 1, -(2**63), 123456789]]),
    (["customer_id"], ["INT32"], [[0, -7, 2**31 - 1, -(2**31)]]),
    (["account"], ["STRING"], [["", "acct-1", "Zürich ☃"]]),
    (["blob"], ["BYTES"], [[b"", b"\x00\xff", b"abc"]]),
    (["merchant", "customer_id"], ["STRING", "INT64"], [["acme", "b"], [4, -9]]),
])
def test_entity_keys_are_byte_identical_to_feasts(version, join_keys, dtypes, columns):
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    field = {"INT64": "int64_val", "INT32": "int32_val", "STRING": "string_val",
             "BYTES": "bytes_val"}
    ours = entity_key_bytes(join_keys, dtypes, columns, version)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = [serialize_entity_key(
            EntityKey(join_keys=join_keys,
                      entity_values=[Value(**{field[dtype]: value})
                                     for dtype, value in zip(dtypes, row)]),
            entity_key_serialization_version=version) for row in zip(*columns)]
    assert ours == theirs


def test_numpy_key_columns_serialize_like_lists():
    as_list = entity_key_bytes(["customer_id"], ["INT64"], [[1, 2, 3]])
    assert entity_key_bytes(["customer_id"], ["INT64"], [np.array([1, 2, 3])]) == as_list
    assert entity_key_bytes(["customer_id"], ["INT64"], [pd.Series([1, 2, 3])]) == as_list


def test_values_decode_as_feast_converts_them():
    from feast.protos.feast.types.Value_pb2 import BoolList, DoubleList, Null, Value
    from feast.type_map import feast_value_type_to_python_type

    values = [Value(), Value(double_val=0.0), Value(double_val=-1.25e300),
              Value(double_val=float("inf")), Value(float_val=0.1), Value(int64_val=0),
              Value(int64_val=-1), Value(int64_val=2**63 - 1), Value(int64_val=-(2**63)),
              Value(int32_val=-(2**31)), Value(int32_val=300), Value(bool_val=False),
              Value(bool_val=True), Value(string_val=""), Value(string_val="Zürich ☃" * 30),
              Value(bytes_val=b"\x00\x01"), Value(unix_timestamp_val=1_700_000_000),
              Value(unix_timestamp_val=-5), Value(unix_timestamp_val=-(2**63)),
              Value(null_val=Null.NULL), Value(double_list_val=DoubleList(val=[1.0, 2.5])),
              Value(bool_list_val=BoolList(val=[True]))]
    for value in values:
        expected = feast_value_type_to_python_type(value)
        got = decode_value(value.SerializeToString())
        assert got == expected and type(got) is type(expected), value
    assert math.isnan(decode_value(Value(double_val=float("nan")).SerializeToString()))


def test_an_unknown_feature_is_named_with_the_closest_one(stores):
    reader = stores.reader
    with pytest.raises(UnknownFeatureError) as error:
        reader.read(VIEWS, ["customer_stats:spnd"], {"customer_id": [1]})
    assert str(error.value) == ("feature view 'customer_stats' has no feature 'spnd'; "
                                "did you mean 'customer_stats:spend'?")
    assert isinstance(error.value, KeyError)


def test_an_unknown_view_is_named_with_the_closest_one(stores):
    reader = stores.reader
    with pytest.raises(UnknownFeatureError, match="did you mean 'customer_stats'"):
        reader.read(VIEWS, ["customer_stat:spend"], {"customer_id": [1]})


def test_a_missing_entity_column_is_named(stores):
    reader = stores.reader
    with pytest.raises(EntityRowsError, match="entity column 'merchant'.*is missing") as error:
        reader.read(VIEWS, ["customer_merchant:amount"], {"customer_id": [1]})
    assert isinstance(error.value, ValueError)


def test_entity_columns_of_different_lengths_are_named(stores):
    reader = stores.reader
    with pytest.raises(EntityRowsError, match="'customer_id' has 2 values but 'merchant' has 1"):
        reader.read(VIEWS, ["customer_merchant:amount"],
                    {"merchant": ["acme"], "customer_id": [1, 2]})


def test_a_string_where_an_integer_key_belongs_is_named(stores):
    reader = stores.reader
    with pytest.raises(EntityRowsError, match="'customer_id' is an integer key"):
        reader.read(VIEWS, ["customer_stats:spend"], {"customer_id": ["1"]})


def test_an_unknown_store_type_lists_the_supported_ones():
    with pytest.raises(ValueError, match=r"'dynamodb' is not supported; "
                                         r"choose one of \['redis', 'sqlite'\]"):
        OnlineStore.from_config({"type": "dynamodb"}, "p", 3)


def test_the_reader_imports_without_feast():
    code = ("import sys, himalia.features.online; "
            "assert not any(m == 'feast' or m.startswith('feast.') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
