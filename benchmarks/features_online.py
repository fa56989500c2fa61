"""Online read latency: himalia's batched reader vs the Feast SDK, on SQLite and on Redis.

The ``customer_stats`` view (100k customers, ten float features, ``features_data.py``) is
materialized by Feast into a SQLite online store and into Redis (a project name of its own,
whose keys are deleted at the end). Feast materializes each customer's newest row, which DuckDB
picks out of the feature file first (newest event time, then newest ``created``, as Feast
orders them): the same online rows, without Feast's minutes-long scan of the whole file
(``--materialize-all`` has Feast scan it). Then, on the same random batches of 100 customers,
each read takes all ten features:

* himalia: ``OnlineStore.read`` (keys serialized, one query or pipelined round trip, values
  decoded, a DataFrame built);
* Feast: ``FeatureStore.get_online_features(...).to_dict()``;
* raw: the store alone: the keys serialized, then one ``SELECT`` or one redis-py pipeline of
  ``HMGET``s, nothing decoded (himalia packs its own pipeline, so on Redis it beats this).

The engines take turns on each batch (after a warm-up; the garbage collector runs between
batches, not inside a timed read), every himalia answer is checked against Feast's, and p50/p99
are printed per engine and store. The reads run in rounds (``--rounds``, 3) and each engine's
best round counts: a p99 of 1000 reads of a millisecond is the 10th slowest, which one busy
moment on a shared machine decides.

Usage: ``python benchmarks/features_online.py [--reads 1000] [--rounds 3] [--entities 100]
[--data DIR] [--redis 127.0.0.1:6379] [--materialize-all]``. It ends with
``RESULT online_p99_ratio_sqlite <himalia/feast> (goal <= 0.3)`` and the same for Redis.
"""

from __future__ import annotations

import argparse
import gc
import math
import secrets
import shutil
import sys
import tempfile
import time
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "magics"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import features_data  # noqa: E402

from himalia.features.online import (OnlineStore, entity_key_bytes,  # noqa: E402
                                     parse_redis_connection_string)

WARMUP = 50
GOAL = 0.3


def run(data_dir: Path, args) -> list[str]:
    """Materialize, time the three engines on each store, and return the ``RESULT`` lines."""
    reads = getattr(args, "online_reads", None) or getattr(args, "reads", None) or 1000
    batch = getattr(args, "online_entities", None) or getattr(args, "entities", None) or 100
    rounds = getattr(args, "online_rounds", None) or 3
    redis_url = getattr(args, "redis", None) or "127.0.0.1:6379"
    source = Path(data_dir) / "features.parquet"
    if not source.exists():
        features_data.generate(data_dir)
    work = Path(tempfile.mkdtemp(prefix="himalia-online-bench-"))
    project = f"himalia_bench_{secrets.token_hex(4)}"
    lines, ratios = [], {}
    try:
        if not getattr(args, "materialize_all", False):
            source = _newest_rows(source, work / "newest.parquet")
        customers = _customers(source)
        view = features_data.view_spec(source)
        refs = [f"{view.name}:{spec.name}" for spec in view.features]
        rng = np.random.default_rng(1)
        batches = [rng.choice(customers, batch, replace=False) for _ in range(reads)]
        for kind in ("sqlite", "redis"):
            online = ({"type": "sqlite", "path": str(work / "online.db")} if kind == "sqlite"
                      else {"type": "redis", "connection_string": redis_url})
            try:
                fs = _materialize(work / kind, project, online, source, view)
                with OnlineStore.from_config(online, project, 3) as reader:
                    runs = [_time_engines(kind, fs, reader, project, view, refs, batches)
                            for _ in range(rounds)]
            finally:
                if kind == "redis":
                    _delete_redis_keys(redis_url, project)
            p50, p99 = {}, {}
            for engine in runs[0]:
                p50[engine] = min(np.percentile(run[engine], 50) for run in runs)
                p99[engine] = min(np.percentile(run[engine], 99) for run in runs)
                lines.append(f"{kind:6s} {engine:7s}: p50 {p50[engine]:.3f} ms, p99 "
                             f"{p99[engine]:.3f} ms (best of {rounds} rounds of {reads} reads of "
                             f"{batch} entities x {len(refs)} features; p99 by round: "
                             + ", ".join(f"{np.percentile(run[engine], 99):.2f}" for run in runs)
                             + ")")
            ratios[kind] = p99["himalia"] / p99["feast"]
            lines.append(f"{kind:6s} himalia/feast: p99 {ratios[kind]:.3f}, p50 "
                         f"{p50['himalia'] / p50['feast']:.3f}; himalia/raw: p99 "
                         f"{p99['himalia'] / p99['raw']:.2f}, p50 "
                         f"{p50['himalia'] / p50['raw']:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for kind in ("sqlite", "redis"):
        lines.append(f"RESULT online_p99_ratio_{kind} {ratios[kind]:.3f} (goal <= {GOAL})")
    return lines


def _newest_rows(source: Path, target: Path) -> Path:
    """Each customer's newest row of ``source`` (what materializing it puts online)."""
    import duckdb

    with duckdb.connect() as db:
        db.execute(f"""COPY (SELECT * FROM read_parquet('{source}') QUALIFY row_number() OVER (
                           PARTITION BY customer_id ORDER BY event_timestamp DESC, created DESC)
                           = 1) TO '{target}' (FORMAT parquet)""")
    return target


def _customers(source: Path) -> np.ndarray:
    ids = pq.read_table(source, columns=["customer_id"]).column("customer_id").to_numpy()
    return np.unique(ids)


def _materialize(repo: Path, project: str, online: dict, source: Path, view):
    """A Feast repository with the view, applied and materialized into ``online``."""
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
    from feast.types import Float64, Int64

    repo.mkdir(parents=True)
    config = RepoConfig(project=project, provider="local", registry=str(repo / "registry.db"),
                        online_store=online, offline_store={"type": "duckdb"},
                        entity_key_serialization_version=3, repo_path=str(repo))
    fs = FeatureStore(config=config)
    key = view.join_keys[0].name
    entity = Entity(name="customer", join_keys=[key], value_type=ValueType.INT64)
    feature_view = FeatureView(
        name=view.name, entities=[entity], ttl=timedelta(seconds=view.ttl_seconds),
        schema=[Field(name=key, dtype=Int64),
                *(Field(name=spec.name, dtype=Float64) for spec in view.features)],
        source=FileSource(path=str(source), timestamp_field=view.timestamp_field,
                          created_timestamp_column=view.created_timestamp_column))
    fs.apply([entity, feature_view])
    stamps = pq.read_table(source, columns=[view.timestamp_field]).column(0).to_numpy()
    start, end = (stamp.astype("datetime64[s]").astype(datetime).replace(tzinfo=timezone.utc)
                  for stamp in (stamps.min(), stamps.max() + np.timedelta64(1, "s")))
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fs.materialize(start, end)
    print(f"materialized {view.name} into {online['type']} in "
          f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
    return fs


def _raw_reader(kind: str, fs, project: str, view):
    """A read of the store alone: the serialized keys in, the stored bytes out."""
    names = [spec.name for spec in view.features]
    if kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(f"{Path(fs.config.online_store.path).resolve().as_uri()}?mode=ro",
                               uri=True)
        table = f'"{project}_{view.name}"'

        def select(keys):
            return conn.execute(f"SELECT entity_key, feature_name, value FROM {table} "
                                f"WHERE entity_key IN ({','.join('?' * len(keys))})",
                                keys).fetchall()
        return select, conn.close
    import mmh3
    import redis

    host, port, params = parse_redis_connection_string(fs.config.online_store.connection_string)
    client = redis.Redis(host=host, port=port, **params)
    fields = [mmh3.hash(f"{view.name}:{name}", signed=False).to_bytes(4, "little")
              for name in names]
    suffix = project.encode()

    def hmget(keys):
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key + suffix, fields)
            return pipe.execute()
    return hmget, client.close


def _time_engines(kind, fs, reader, project, view, refs, batches) -> dict[str, list[float]]:
    key = view.join_keys[0].name
    views = {view.name: view}
    raw, close_raw = _raw_reader(kind, fs, project, view)
    engines = {
        "himalia": lambda ids: reader.read(views, refs, {key: ids}),
        "feast": lambda ids: fs.get_online_features(features=refs,
                                                   entity_rows={key: ids.tolist()}).to_dict(),
        "raw": lambda ids: raw(entity_key_bytes([key], ["INT64"], [ids])),
    }
    timings: dict[str, list[float]] = {name: [] for name in engines}
    answers = []
    order = list(engines)
    gc.disable()
    try:
        for i, ids in enumerate(tqdm([*batches[:WARMUP], *batches], desc=f"{kind}: reads",
                                     leave=False)):
            order = order[1:] + order[:1]  # each engine goes first in turn
            results = {}
            for name in order:
                started = time.perf_counter()
                results[name] = engines[name](ids)
                elapsed = (time.perf_counter() - started) * 1000
                if i >= WARMUP:
                    timings[name].append(elapsed)
            answers.append((results["himalia"], results["feast"]))
            gc.collect(0)
    finally:
        gc.enable()
        close_raw()
    _check(answers, key, [ref.split(":")[1] for ref in refs])
    return timings


def _check(answers, key: str, features: list[str]) -> None:
    """Every himalia answer equals Feast's, value for value (NaN for NaN)."""
    for frame, feast in answers:
        assert frame[key].tolist() == feast[key], "key columns differ"
        for name in features:
            ours, theirs = frame[name].tolist(), feast[name]
            same = all(a == b or (a is None and b is None)
                       or (isinstance(a, float) and isinstance(b, float) and math.isnan(a)
                           and math.isnan(b)) for a, b in zip(ours, theirs))
            assert same and len(ours) == len(theirs), f"values of {name} differ from Feast's"


def _delete_redis_keys(url: str, project: str) -> None:
    """Delete the keys of ``project`` (they end with its name), and nothing else."""
    import redis

    host, port, params = parse_redis_connection_string(url)
    client = redis.Redis(host=host, port=port, **params)
    try:
        batch = []
        for name in client.scan_iter(match=f"*{project}".encode(), count=10_000):
            batch.append(name)
            if len(batch) == 10_000:
                client.delete(*batch)
                batch = []
        if batch:
            client.delete(*batch)
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, dest="online_rounds",
                        help="rounds of reads; each engine's best round counts")
    parser.add_argument("--entities", type=int, default=100)
    parser.add_argument("--data", type=Path, default=None,
                        help="folder of features_data.py's files (generated there if absent; "
                             "a temporary folder by default)")
    parser.add_argument("--redis", default="127.0.0.1:6379",
                        help="Feast's Redis connection string (host:port,db=N,...)")
    parser.add_argument("--materialize-all", action="store_true",
                        help="have Feast materialize from the whole file (minutes per store)")
    args = parser.parse_args()
    data_dir = args.data or Path(tempfile.mkdtemp(prefix="himalia-online-data-"))
    try:
        if args.data is None or not (data_dir / "features.parquet").exists():
            with tqdm(total=1, desc="generating the feature data") as bar:
                features_data.generate(data_dir)
                bar.update(1)
        for line in run(data_dir, args):
            print(line)
    finally:
        if args.data is None:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
