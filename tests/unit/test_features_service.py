"""The feature store's rules over a real Feast SQL registry in the platform API's database
(SQLite and PostgreSQL): decoding, plans, ownership, all-or-nothing apply, the catalog, the
refs a training set reads, and online values written with Feast's own writer."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pytest
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Float64, Int64

from himalia.hub.features import service
from himalia.hub.features.repo import FeatureRepo, FeatureSettings, online_config, redis_connection_string
from himalia.hub.features.service import FeatureError
from himalia.hub.services.api.identity import Identity

ADA = Identity("ada", "user", ["scientist"])
BOB = Identity("bob", "user", ["scientist"])
ROOT = Identity("root", "user", ["admin"])


@pytest.fixture
def repo(api_db, tmp_path):
    users = tmp_path / "users"
    settings = FeatureSettings(root=tmp_path / "features", registry_url=api_db.url,
                               online=online_config("sqlite", tmp_path / "features"),
                               users_root=str(users))
    r = FeatureRepo(settings)
    yield r
    r.close()


def source_file(tmp_path, owner: str, name: str = "stats.parquet") -> str:
    folder = tmp_path / "users" / owner
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    pd.DataFrame({"customer_id": [1, 2, 1], "event_timestamp": [t0, t0, t0 + pd.Timedelta(days=1)],
                  "ltv": [1.0, 2.0, 3.0], "age": [30, 40, 31]}).to_parquet(path)
    return str(path)


def definitions(path: str, name: str = "customer_stats", description: str = "d"):
    customer = Entity(name="customer", join_keys=["customer_id"])
    view = FeatureView(name=name, entities=[customer], ttl=timedelta(days=2), description=description,
                       source=FileSource(name=f"{name}_src", path=path, timestamp_field="event_timestamp"),
                       schema=[Field(name="ltv", dtype=Float64), Field(name="age", dtype=Int64),
                               Field(name="customer_id", dtype=Int64)])
    return customer, view


def wire(*objects) -> list[dict]:
    return [{"kind": "entity" if isinstance(o, Entity) else "feature_view",
             "proto": base64.b64encode(o.to_proto().SerializeToString()).decode()} for o in objects]


def test_apply_records_the_owner_and_a_second_plan_is_unchanged(repo, tmp_path):
    objects = service.decode(wire(*definitions(source_file(tmp_path, "ada"))))
    plan = service.apply(repo, ADA, objects)
    assert [(c.kind, c.action) for c in plan.changes] == [("entity", "add"), ("feature_view", "add")]
    fv = service.get_view(repo, "customer_stats")
    assert fv.owner == "ada"
    again = service.plan(repo, ADA, service.decode(wire(*definitions(source_file(tmp_path, "ada")))))
    assert {c.action for c in again.changes} == {"unchanged"}
    changed = service.plan(repo, ADA, service.decode(wire(*definitions(source_file(tmp_path, "ada"),
                                                                        description="new"))))
    update = changed.changes[1]
    assert update.action == "update" and [c["field"] for c in update.changes] == ["description"]
    # The hash a training run records does not move when nothing changed.
    assert service.definition_hash(fv) == service.definition_hash(service.get_view(repo, "customer_stats"))


def test_one_scientist_cannot_change_or_delete_anothers_view(repo, tmp_path):
    service.apply(repo, ADA, service.decode(wire(*definitions(source_file(tmp_path, "ada")))))
    theirs = service.decode(wire(*definitions(source_file(tmp_path, "bob"))))
    with pytest.raises(FeatureError, match="belongs to ada") as e:
        service.apply(repo, BOB, theirs)
    assert e.value.status == 403
    with pytest.raises(FeatureError, match="ada") as e:
        service.delete_view(repo, BOB, "customer_stats")
    assert e.value.status == 403
    # Bob may use ada's entity unchanged in a view of his own.
    _, bobs = definitions(source_file(tmp_path, "bob"), name="bob_stats")
    service.apply(repo, BOB, service.decode(wire(Entity(name="customer", join_keys=["customer_id"]), bobs)))
    assert service.get_view(repo, "bob_stats").owner == "bob"
    # An admin may change anyone's.
    service.delete_view(repo, ROOT, "bob_stats")


def test_nothing_is_half_applied(repo, tmp_path, monkeypatch):
    customer, view = definitions(source_file(tmp_path, "ada"))
    _, outside = definitions(source_file(tmp_path, "bob"), name="outside")
    with pytest.raises(FeatureError, match="outside your files"):
        service.apply(repo, ADA, service.decode(wire(customer, view, outside)))
    assert not repo.registry.list_entities(repo.project, allow_cache=False)
    # A failure inside Feast after the first object is written puts the registry back.
    calls = []
    real = repo.registry.apply_feature_view

    def fail(*args, **kwargs):
        calls.append(args[0].name)
        raise RuntimeError("the registry database went away")

    monkeypatch.setattr(repo.registry, "apply_feature_view", fail)
    with pytest.raises(FeatureError, match="Nothing was applied"):
        service.apply(repo, ADA, service.decode(wire(customer, view)))
    assert calls == ["customer_stats"]
    monkeypatch.setattr(repo.registry, "apply_feature_view", real)
    assert not repo.registry.list_entities(repo.project, allow_cache=False)
    assert not repo.registry.list_feature_views(repo.project, allow_cache=False)


def test_definitions_that_run_code_or_read_elsewhere_are_refused(repo, tmp_path):
    for kind in ("on_demand_feature_view", "stream_feature_view"):
        with pytest.raises(FeatureError, match="pickled"):
            service.decode([{"kind": kind, "proto": ""}])
    with pytest.raises(FeatureError, match="base64"):
        service.decode([{"kind": "entity", "proto": "not base64!"}])
    with pytest.raises(FeatureError, match="not one of"):
        service.decode([{"kind": "saved_dataset", "proto": ""}])
    _, view = definitions("/etc/passwd")
    with pytest.raises(FeatureError, match="outside your files") as e:
        service.plan(repo, ADA, service.decode(wire(Entity(name="customer", join_keys=["customer_id"]), view)))
    assert e.value.status == 403
    _, view = definitions(str(tmp_path / "users" / "ada" / ".." / "bob" / "x.parquet"))
    with pytest.raises(FeatureError, match="outside your files"):
        service.plan(repo, ADA, service.decode(wire(Entity(name="customer", join_keys=["customer_id"]), view)))
    _, view = definitions(source_file(tmp_path, "ada"))
    with pytest.raises(FeatureError, match="entity 'customer', which is not defined"):
        service.plan(repo, ADA, service.decode(wire(view)))


def test_refs_name_close_matches_and_give_the_engine_its_specs(repo, tmp_path):
    service.apply(repo, ADA, service.decode(wire(*definitions(source_file(tmp_path, "ada")))))
    specs = service.specs_for(repo, ["customer_stats:ltv", "customer_stats:age"])
    spec = specs["customer_stats"]["spec"]
    assert spec["ttl_seconds"] == 2 * 86400 and spec["timestamp_field"] == "event_timestamp"
    assert spec["join_keys"] == [{"name": "customer_id", "dtype": "INT64"}]
    with pytest.raises(FeatureError, match="did you mean 'customer_stats:ltv'") as e:
        service.specs_for(repo, ["customer_stats:ltvv"])
    assert e.value.status == 404
    with pytest.raises(FeatureError, match="view:feature"):
        service.specs_for(repo, ["ltv"])


def test_online_values_written_with_feasts_writer_read_back(repo, tmp_path, api_db):
    service.apply(repo, ADA, service.decode(wire(*definitions(source_file(tmp_path, "ada")))))
    fv = service.get_view(repo, "customer_stats")
    t = datetime(2026, 1, 2, tzinfo=timezone.utc)
    table = pa.table({"customer_id": [1, 2], "ltv": [3.0, 2.0], "age": [31, 40],
                      "event_timestamp": pa.array([t, t], pa.timestamp("us", "UTC"))})
    assert service.write_online(repo, fv, table) == 2
    from himalia.hub.features.api import read_online

    frame = read_online(repo, ["customer_stats:ltv", "customer_stats:age"], {"customer_id": [2, 5, 1]})
    assert list(frame.customer_id) == [2, 5, 1]
    assert frame.ltv.tolist()[0] == 2.0 and frame.ltv.tolist()[2] == 3.0 and pd.isna(frame.ltv[1])
    with pytest.raises(FeatureError, match="lack column"):
        service.write_online(repo, fv, table.drop(["ltv"]))
    with api_db.session() as session:
        catalog = service.catalog(repo, session, "customer")
    assert [v["name"] for v in catalog["views"]] == ["customer_stats"]


def test_redis_urls_become_feast_connection_strings():
    assert redis_connection_string("redis://127.0.0.1:6379/3") == "127.0.0.1:6379,db=3"
    assert redis_connection_string("redis://:s3cret@cache:6380/0") == "cache:6380,db=0,password=s3cret"
    with pytest.raises(ValueError, match="redis://"):
        redis_connection_string("memcached://x")


def test_the_redis_online_store_by_configuration(api_db, tmp_path):
    """``c.HimaliaConfig.feature_online_store = "redis://..."``: Feast writes to the local Redis and
    the platform reads back (keys of a project of this test only, removed after)."""
    import redis

    from himalia_testing import require_service

    client = redis.Redis(host="127.0.0.1", port=6379, db=0)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        require_service("Redis is not reachable on 127.0.0.1:6379")
    project = f"t{tmp_path.name[-6:].replace('-', '').replace('_', '')}"
    settings = FeatureSettings(root=tmp_path / "features", registry_url=api_db.url,
                               online=online_config("redis://127.0.0.1:6379/0", tmp_path),
                               users_root=str(tmp_path / "users"), project=project)
    repo = FeatureRepo(settings)
    try:
        service.apply(repo, ADA, service.decode(wire(*definitions(source_file(tmp_path, "ada")))))
        fv = service.get_view(repo, "customer_stats")
        t = datetime(2026, 1, 2, tzinfo=timezone.utc)
        table = pa.table({"customer_id": [1, 2], "ltv": [3.0, 2.0], "age": [31, 40],
                          "event_timestamp": pa.array([t, t], pa.timestamp("us", "UTC"))})
        service.write_online(repo, fv, table)
        from himalia.hub.features.api import read_online

        frame = read_online(repo, ["customer_stats:ltv"], {"customer_id": [2, 1, 3]})
        assert frame.ltv.tolist()[:2] == [2.0, 3.0] and pd.isna(frame.ltv[2])
        assert list(client.scan_iter(match=f"*{project}"))
    finally:
        repo.close()
        for key in client.scan_iter(match=f"*{project}"):
            client.delete(key)


def test_every_record_batch_of_the_rows_reaches_the_online_store(repo, tmp_path):
    """Rows arrive as Arrow streams of several record batches (DuckDB writes them so)."""
    service.apply(repo, ADA, service.decode(wire(*definitions(source_file(tmp_path, "ada")))))
    fv = service.get_view(repo, "customer_stats")
    t = datetime(2026, 1, 2, tzinfo=timezone.utc)
    batches = [pa.record_batch({"customer_id": [k], "ltv": [float(k)], "age": [k],
                                "event_timestamp": pa.array([t], pa.timestamp("us", "UTC"))})
               for k in range(1, 6)]
    assert service.write_online(repo, fv, pa.Table.from_batches(batches)) == 5
    from himalia.hub.features.api import read_online

    frame = read_online(repo, ["customer_stats:ltv"], {"customer_id": [5, 1, 3]})
    assert frame.ltv.tolist() == [5.0, 1.0, 3.0]
