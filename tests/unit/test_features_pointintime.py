"""Point-in-time training sets (``himalia.features.pointintime.training_set``) over real Parquet
files: the same answer as pandas' ``merge_asof`` and as Feast's own DuckDB offline store, every
label row kept in its place, and input mistakes explained."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from himalia.features.pointintime import FeatureInputError, training_set
from himalia.features.spec import EntitySpec, FeatureSpec, ViewSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from features_data import feast_store  # noqa: E402

T0 = pd.Timestamp("2025-03-01", tz="UTC")
HOUR = pd.Timedelta(hours=1)
DAY = pd.Timedelta(days=1)


def write(df: pd.DataFrame, path: Path, unit: str = "ns") -> str:
    """``df`` as Parquet, its tz-aware timestamp columns in ``unit``."""
    df = df.copy()
    for name, dtype in df.dtypes.items():
        if isinstance(dtype, pd.DatetimeTZDtype):
            df[name] = df[name].astype(f"datetime64[{unit}, {dtype.tz}]")
    df.to_parquet(path, index=False)
    return str(path)


def view(name: str, path: str, keys: dict[str, str], features: dict[str, str], *, ttl=0,
         created="", timestamp="event_timestamp", mapping=None) -> ViewSpec:
    return ViewSpec(name=name, path=path, timestamp_field=timestamp,
                    join_keys=tuple(EntitySpec(k, t) for k, t in keys.items()),
                    features=tuple(FeatureSpec(f, t) for f, t in features.items()),
                    created_timestamp_column=created, field_mapping=dict(mapping or {}),
                    ttl_seconds=ttl)


def customer_rows(rng, customers=40, rows=1500, null_created=0.02) -> pd.DataFrame:
    """Hourly event times over 10 days, so a customer has many rows per hour (ties on the event
    time); every row has its own created time, a few have none."""
    event = pd.Series(T0 + HOUR * rng.integers(0, 240, rows))
    created = event + pd.to_timedelta(rng.permutation(rows) + 1, unit="ms")
    created = created.mask(rng.random(rows) < null_created)
    return pd.DataFrame({
        "cust_id": rng.integers(0, customers, rows), "ts": event, "created": created,
        "raw_spend": rng.normal(size=rows).round(6), "visits": rng.integers(0, 100, rows),
    })


def driver_rows(rng, drivers=15, rows=600) -> pd.DataFrame:
    return pd.DataFrame({
        "driver_id": [f"d{i}" for i in rng.integers(0, drivers, rows)],
        "event_timestamp": T0 + pd.to_timedelta(rng.permutation(240 * 60)[:rows], unit="min"),
        "rating": rng.random(rows),
    })


def label_rows(rng, n=600, customers=45, drivers=17) -> pd.DataFrame:
    """Labels on the same hourly grid (some at a feature row's exact time), from a day before
    the first feature row (nothing known yet) to days after the last (expired), some for
    customers and drivers with no rows at all."""
    return pd.DataFrame({
        "label_id": np.arange(n),
        "customer_id": rng.integers(0, customers, n),
        "driver_id": [f"d{i}" for i in rng.integers(0, drivers, n)],
        "event_timestamp": T0 + HOUR * rng.integers(-24, 300, n),
        "label": rng.integers(0, 2, n),
    }).sample(frac=1, random_state=1)


CUSTOMER_MAPPING = {"cust_id": "customer_id", "raw_spend": "spend"}


def customer_view(path, ttl=2 * 86400, created="created") -> ViewSpec:
    return view("customer_stats", path, {"customer_id": "INT64"},
                {"spend": "DOUBLE", "visits": "INT64"}, ttl=ttl, created=created,
                timestamp="ts", mapping=CUSTOMER_MAPPING)


def driver_view(path) -> ViewSpec:
    return view("driver_stats", path, {"driver_id": "STRING"}, {"rating": "DOUBLE"}, ttl=0)


def reference(labels: pd.DataFrame, refs: list[str], views: dict[str, ViewSpec],
              full_feature_names: bool = False) -> pd.DataFrame:
    """The same training set by pandas' ``merge_asof`` (backward, tolerance = TTL), each source
    sorted by event then created time so the last of a tie is the newest created row."""
    columns = {}
    left = pd.DataFrame({"__rid": np.arange(len(labels)), "__t": labels["event_timestamp"]
                         .dt.tz_convert("UTC").dt.as_unit("ns").to_numpy()})
    for name in dict.fromkeys(r.split(":")[0] for r in refs):
        spec = views[name]
        keys = [k.name for k in spec.join_keys]
        features = [r.split(":")[1] for r in refs if r.split(":")[0] == name]
        src = pd.read_parquet(spec.path).rename(columns=spec.field_mapping)
        src["__t"] = src[spec.timestamp_field].dt.tz_convert("UTC").dt.as_unit("ns")
        order = ["__t"] + ([spec.created_timestamp_column] if spec.created_timestamp_column else [])
        src = src.dropna(subset=["__t"]).sort_values(order, na_position="first", kind="stable")
        probe = left.join(labels[keys].reset_index(drop=True)).sort_values("__t", kind="stable")
        merged = pd.merge_asof(
            probe, src[["__t", *keys, *features]], on="__t", by=keys, direction="backward",
            tolerance=pd.Timedelta(seconds=spec.ttl_seconds) if spec.ttl_seconds else None)
        merged = merged.set_index("__rid").sort_index()
        for feature in features:
            columns[f"{name}:{feature}"] = merged[feature].to_numpy()
    out = labels.copy()
    for ref in refs:
        out[ref.replace(":", "__") if full_feature_names else ref.split(":")[1]] = columns[ref]
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Random sources (nanosecond and microsecond copies) and labels."""
    folder = tmp_path_factory.mktemp("pit")
    rng = np.random.default_rng(7)
    customers, drivers = customer_rows(rng), driver_rows(rng)
    return {
        "labels": label_rows(rng),
        "customer_ns": write(customers, folder / "customers.parquet"),
        "customer_us": write(customers, folder / "customers_us.parquet", unit="us"),
        "driver_ns": write(drivers, folder / "drivers.parquet"),
        "driver_us": write(drivers, folder / "drivers_us.parquet", unit="us"),
        "folder": folder,
    }


@pytest.fixture(scope="module")
def feast(data):
    """A Feast repository (DuckDB offline store) over the microsecond copies of the sources."""
    views = {"customer_stats": customer_view(data["customer_us"]),
             "driver_stats": driver_view(data["driver_us"])}
    return feast_store(list(views.values()), data["folder"] / "feast"), views


REFS = ["customer_stats:spend", "driver_stats:rating", "customer_stats:visits"]


def test_equals_merge_asof_on_random_data_with_ties_ttl_mapping_and_two_join_keys(data):
    views = {"customer_stats": customer_view(data["customer_ns"]),
             "driver_stats": driver_view(data["driver_ns"])}
    labels = data["labels"]
    got = training_set(labels, REFS, views)
    pd.testing.assert_frame_equal(got, reference(labels, REFS, views), check_dtype=False)
    assert list(got.columns) == [*labels.columns, "spend", "rating", "visits"]
    assert got.spend.isna().any() and got.spend.notna().any()


def test_the_labels_come_back_as_given_with_nulls_where_nothing_was_known(data):
    views = {"customer_stats": customer_view(data["customer_ns"])}
    labels = data["labels"].set_index(pd.Index([f"r{i}" for i in range(len(data["labels"]))]))
    got = training_set(labels, ["customer_stats:spend"], views)
    pd.testing.assert_frame_equal(got[labels.columns], labels)
    assert got.index.equals(labels.index)
    before_anything = labels.event_timestamp < T0
    assert before_anything.any() and got.spend[before_anything].isna().all()


def test_ttl_bounds_are_inclusive_at_both_ends(tmp_path):
    t = T0 + DAY * 10
    ns = pd.Timedelta(1, "ns")
    source = pd.DataFrame({"customer_id": [1, 2, 3, 4],
                           "event_timestamp": [t - DAY, t - DAY - ns, t, t + ns],
                           "value": [1.0, 2.0, 3.0, 4.0]})
    spec = view("v", write(source, tmp_path / "s.parquet"), {"customer_id": "INT64"},
                {"value": "DOUBLE"}, ttl=86400)
    labels = pd.DataFrame({"customer_id": [1, 2, 3, 4], "event_timestamp": [t] * 4})
    got = training_set(labels, ["v:value"], {"v": spec})
    assert got.value[0] == 1.0 and got.value[2] == 3.0  # at now - ttl and at now: in
    assert got.value[1:2].isna().all() and got.value[3:].isna().all()  # a ns too old, too new


def test_a_tie_on_the_event_time_goes_to_the_newest_created_row(tmp_path):
    source = pd.DataFrame({"customer_id": [1, 1, 1, 1],
                           "event_timestamp": [T0, T0, T0, T0 - HOUR],
                           "created": [T0 + HOUR, T0 + 3 * HOUR, pd.NaT, T0 + 9 * HOUR],
                           "value": [1.0, 2.0, 3.0, 4.0]})
    spec = view("v", write(source, tmp_path / "s.parquet"), {"customer_id": "INT64"},
                {"value": "DOUBLE"}, created="created")
    labels = pd.DataFrame({"customer_id": [1, 1], "event_timestamp": [T0, T0 - HOUR]})
    assert training_set(labels, ["v:value"], {"v": spec}).value.tolist() == [2.0, 4.0]


def test_timestamps_compare_as_instants_whatever_the_zone_and_unit(data):
    views = {"customer_stats": customer_view(data["customer_ns"])}
    labels = data["labels"]
    local = labels.assign(event_timestamp=labels.event_timestamp.dt.tz_convert("America/New_York")
                          .astype("datetime64[us, America/New_York]"))
    got = training_set(local, ["customer_stats:spend"], views)
    assert got.event_timestamp.dtype == local.event_timestamp.dtype
    expected = training_set(labels, ["customer_stats:spend"], views)
    np.testing.assert_array_equal(got.spend.to_numpy(), expected.spend.to_numpy())


def test_nanosecond_and_microsecond_sources_give_the_same_answer(data):
    refs = ["customer_stats:spend", "driver_stats:rating"]
    ns = training_set(data["labels"], refs, {"customer_stats": customer_view(data["customer_ns"]),
                                             "driver_stats": driver_view(data["driver_ns"])})
    us = training_set(data["labels"], refs, {"customer_stats": customer_view(data["customer_us"]),
                                             "driver_stats": driver_view(data["driver_us"])})
    pd.testing.assert_frame_equal(ns, us)


def feast_answer(store, labels, refs, full_feature_names=False) -> pd.DataFrame:
    job = store.get_historical_features(entity_df=labels.copy(), features=refs,
                                        full_feature_names=full_feature_names)
    return job.to_df()


@pytest.mark.parametrize("full_feature_names", [False, True])
def test_equals_feasts_duckdb_offline_store_row_for_row(data, feast, full_feature_names):
    store, views = feast
    labels = data["labels"]
    ours = training_set(labels, REFS, views, full_feature_names=full_feature_names)
    theirs = feast_answer(store, labels, REFS, full_feature_names)
    features = [c for c in ours.columns if c not in labels.columns]
    assert sorted(features) == sorted(c for c in theirs.columns if c not in labels.columns)
    ours = ours.set_index("label_id").sort_index()
    theirs = theirs.set_index("label_id").sort_index()
    assert theirs.index.is_unique and set(theirs.index) <= set(ours.index)
    kept = ours.loc[theirs.index]
    pd.testing.assert_frame_equal(kept[features], theirs[features], check_dtype=False)
    for column in ("customer_id", "driver_id", "label"):
        assert (kept[column] == theirs[column]).all()
    assert (kept.event_timestamp == theirs.event_timestamp).all()
    dropped = ours.loc[ours.index.difference(theirs.index)]
    assert dropped[features].isna().all().all()


def test_equals_feast_on_the_nanosecond_source_feast_cannot_read(data, feast):
    store, _ = feast
    labels = data["labels"]
    ours = training_set(labels, REFS, {"customer_stats": customer_view(data["customer_ns"]),
                                       "driver_stats": driver_view(data["driver_ns"])})
    theirs = feast_answer(store, labels, REFS).set_index("label_id")
    kept = ours.set_index("label_id").loc[theirs.index]
    pd.testing.assert_frame_equal(kept[["spend", "rating", "visits"]],
                                  theirs[["spend", "rating", "visits"]], check_dtype=False)


def test_a_folder_or_a_glob_of_parquet_files_is_one_source(data, tmp_path):
    whole = pd.read_parquet(data["customer_ns"])
    for i, start in enumerate(range(0, len(whole), 600)):
        (tmp_path / f"day={i}").mkdir()
        write(whole.iloc[start:start + 600], tmp_path / f"day={i}" / "part.parquet")
    labels = data["labels"]
    expected = training_set(labels, ["customer_stats:spend"],
                            {"customer_stats": customer_view(data["customer_ns"])})
    for path in (str(tmp_path), str(tmp_path / "day=*" / "*.parquet")):
        got = training_set(labels, ["customer_stats:spend"],
                           {"customer_stats": customer_view(path)})
        pd.testing.assert_frame_equal(got, expected)


def test_a_small_memory_limit_and_one_thread_give_the_same_answer(data):
    views = {"customer_stats": customer_view(data["customer_ns"]),
             "driver_stats": driver_view(data["driver_ns"])}
    expected = training_set(data["labels"], REFS, views)
    got = training_set(data["labels"], REFS, views, memory_limit="64MB", threads=1)
    pd.testing.assert_frame_equal(got, expected)


def test_repeated_labels_and_labels_without_a_time_or_key_keep_their_rows(data):
    views = {"customer_stats": customer_view(data["customer_ns"], ttl=0)}
    once = data["labels"].head(5).reset_index(drop=True)
    expected = training_set(once, ["customer_stats:spend"], views).spend.to_numpy()
    labels = pd.concat([once, once], ignore_index=True)
    labels["customer_id"] = labels["customer_id"].astype("Int64")
    labels.loc[0, "customer_id"] = pd.NA
    labels.loc[1, "event_timestamp"] = pd.NaT
    got = training_set(labels, ["customer_stats:spend"], views).spend.to_numpy()
    assert len(got) == 10 and np.isnan(got[:2]).all()
    np.testing.assert_array_equal(got[2:], np.concatenate([expected[2:], expected]))


def test_no_labels_give_an_empty_frame_with_the_feature_columns(data):
    views = {"customer_stats": customer_view(data["customer_ns"])}
    got = training_set(data["labels"].head(0), ["customer_stats:spend"], views)
    assert len(got) == 0 and list(got.columns)[-1] == "spend"


# -- input mistakes ------------------------------------------------------------------------------


@pytest.fixture
def small(tmp_path):
    source = pd.DataFrame({"customer_id": [1], "event_timestamp": [T0], "ltv": [1.0]})
    spec = view("customer_stats", write(source, tmp_path / "s.parquet"), {"customer_id": "INT64"},
                {"ltv": "DOUBLE"})
    labels = pd.DataFrame({"customer_id": [1], "event_timestamp": [T0]})
    return labels, {"customer_stats": spec}, tmp_path


def raises(match: str):
    return pytest.raises(FeatureInputError, match=match)


def test_a_misspelt_view_or_feature_gets_a_suggestion(small):
    labels, views, _ = small
    with raises(r"unknown feature view 'customer_stat'.*did you mean 'customer_stats:ltv'\?"):
        training_set(labels, ["customer_stat:ltv"], views)
    with raises(r"view 'customer_stats' has no feature 'ltb'; did you mean 'customer_stats:ltv'\?"):
        training_set(labels, ["customer_stats:ltb"], views)


def test_a_ref_without_a_view_is_refused_with_the_expected_form(small):
    labels, views, _ = small
    with raises(r"'ltv' is not of the form 'view:feature'"):
        training_set(labels, ["ltv"], views)


def test_a_missing_join_key_column_names_it_and_its_view(small):
    labels, views, _ = small
    with raises(r"no column 'customer_id', the join key of view 'customer_stats'"):
        training_set(labels.drop(columns="customer_id"), ["customer_stats:ltv"], views)


def test_a_join_key_of_the_wrong_type_names_both_types(small):
    labels, views, _ = small
    with raises(r"entity_df\['customer_id'\] holds string values but view 'customer_stats' keeps "
                r"'customer_id' as BIGINT.*astype\('int64'\)"):
        training_set(labels.astype({"customer_id": str}), ["customer_stats:ltv"], views)


def test_a_missing_or_naive_label_time_says_what_to_do(small):
    labels, views, _ = small
    with raises(r"entity_df has no 'event_timestamp' column; did you mean 'event_timestmp'"):
        training_set(labels.rename(columns={"event_timestamp": "event_timestmp"}),
                     ["customer_stats:ltv"], views)
    with raises(r"without a time zone.*entity_df\['event_timestamp'\]\.dt\.tz_localize\('UTC'\)"):
        training_set(labels.assign(event_timestamp=labels.event_timestamp.dt.tz_localize(None)),
                     ["customer_stats:ltv"], views)


def test_a_source_with_naive_timestamps_is_refused(small):
    labels, views, tmp_path = small
    naive = pd.DataFrame({"customer_id": [1], "event_timestamp": [T0.tz_localize(None)],
                          "ltv": [1.0]})
    naive.to_parquet(tmp_path / "naive.parquet")
    spec = view("customer_stats", str(tmp_path / "naive.parquet"), {"customer_id": "INT64"},
                {"ltv": "DOUBLE"})
    with raises(r"'event_timestamp' of .*naive.parquet holds timestamps without a time zone"):
        training_set(labels, ["customer_stats:ltv"], {"customer_stats": spec})


def test_two_features_with_one_name_need_full_feature_names(small):
    labels, views, tmp_path = small
    other = view("other_stats", views["customer_stats"].path, {"customer_id": "INT64"},
                 {"ltv": "DOUBLE"})
    views = {**views, "other_stats": other}
    refs = ["customer_stats:ltv", "other_stats:ltv"]
    with raises(r"would both be named 'ltv'; pass full_feature_names=True"):
        training_set(labels, refs, views)
    got = training_set(labels, refs, views, full_feature_names=True)
    assert list(got.columns[-2:]) == ["customer_stats__ltv", "other_stats__ltv"]
