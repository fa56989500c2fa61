"""Dask through the platform: a groupby-aggregate over 50M generated rows, pandas on one core vs
a 2-worker cluster of the platform's dask-gateway, side by side in one run.

* (a) pandas: the rows are generated (the same partitions, seeded) and aggregated in this
  process, one core;
* (b) himalia: ``himalia up`` (the real gateway service), a scientist's cluster of 2 one-core
  workers started through ``himalia.sdk.clusters``; the rows are generated inside the workers
  (``dask.dataframe.from_map``), never shipped from the client, and aggregated there.

Cluster start is measured the same way on both sides: from the request to a connected client
that sees 2 one-core workers (each a dask-worker with its nanny), the median of three starts
after one unmeasured start and stop on each side (imports, disk cache and, for the gateway, the
person's account and TLS set up once). The gateway's time is also split into "scheduler up"
(the request returns) and "workers connected". Goal: gateway <= 2x the plain
``distributed.LocalCluster`` (whose scheduler and nannies live in the measuring process, so it
starts no scheduler process); Dask's own
``SubprocessCluster`` (a scheduler process and dask-worker processes, the gateway's layout) is
printed beside them.

Usage: ``python benchmarks/clusters.py [--rows 50_000_000] [--partitions 20]`` (as root: the
workers run as the person's own account). It ends with ``RESULT dask_speedup <a / b> (goal >= 1.7)``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

# This file is named after the package it measures: its own folder must not shadow ``dask``.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from himalia_testing import Person, Platform, wait_for  # noqa: E402

from himalia.hub.proxy import ensure_proxy  # noqa: E402

KEYS = 1000
#: Measured cluster starts on each side (after one unmeasured); the median is reported.
STARTS = 3


def seconds_list(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def make_part(spec: tuple[int, int]) -> pd.DataFrame:
    """One partition of the generated table: ``rows`` rows from seed ``index``."""
    index, rows = spec
    rng = np.random.default_rng(index)
    return pd.DataFrame({"key": rng.integers(0, KEYS, rows), "value": rng.random(rows)})


def specs(rows: int, partitions: int) -> list[tuple[int, int]]:
    size = rows // partitions
    return [(i, size + (rows - size * partitions if i == partitions - 1 else 0)) for i in range(partitions)]


def with_pandas(rows: int, partitions: int) -> tuple[float, pd.DataFrame]:
    start = time.perf_counter()
    frame = pd.concat([make_part(s) for s in specs(rows, partitions)], ignore_index=True)
    result = frame.groupby("key")["value"].agg(["sum", "mean", "count"])
    return time.perf_counter() - start, result


def with_dask(client, rows: int, partitions: int) -> tuple[float, pd.DataFrame]:
    import dask.dataframe as dd

    meta = make_part((0, 1)).iloc[:0]
    start = time.perf_counter()
    frame = dd.from_map(make_part, specs(rows, partitions), meta=meta)
    result = client.compute(frame.groupby("key")["value"].agg(["sum", "mean", "count"])).result()
    return time.perf_counter() - start, result


def plain_cluster_start(kind: str = "local") -> float:
    """Seconds to a client seeing 2 workers of a plain Dask cluster: ``local`` is
    ``LocalCluster`` (scheduler and nannies in this process), ``subprocess`` Dask's
    ``SubprocessCluster`` (a scheduler process and dask-worker processes, as the gateway runs)."""
    from distributed import Client, LocalCluster
    from distributed.deploy.subprocess import SubprocessCluster

    start = time.perf_counter()
    if kind == "local":
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
    else:
        cluster = SubprocessCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0")
    with cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        return time.perf_counter() - start


def gateway_cluster_start(clusters):
    """``(seconds to scheduler up, seconds to 2 workers connected, cluster, client)``."""
    start = time.perf_counter()
    cluster = clusters.start(workers=2)
    scheduler_up = time.perf_counter() - start
    client = cluster.get_client()
    client.wait_for_workers(2, timeout=300)
    return scheduler_up, time.perf_counter() - start, cluster, client


def stop_and_wait(clusters, cluster, client) -> None:
    """Stop a cluster and wait until its processes are gone (its status STOPPED, not merely
    STOPPING), as leaving ``with LocalCluster(...)`` does: the next start has the cores to itself."""
    from dask_gateway.client import ClusterStatus

    name = cluster.name
    client.close()
    cluster.shutdown()

    def stopped() -> bool:
        with clusters.gateway() as gateway:
            return gateway.get_cluster(name).status in (ClusterStatus.STOPPED, ClusterStatus.FAILED)

    wait_for(stopped, 120, what=f"cluster {name} to stop")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--partitions", type=int, default=20)
    args = parser.parse_args()
    print(f"(a) pandas, one core, {args.rows:,} rows ...", flush=True)
    a, expected = with_pandas(args.rows, args.partitions)
    plain_cluster_start("local")
    local = [plain_cluster_start("local") for _ in range(STARTS)]
    plain_cluster_start("subprocess")
    subprocess_started = [plain_cluster_start("subprocess") for _ in range(STARTS)]
    with tempfile.TemporaryDirectory(prefix="himalia-bench-dask-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        platform = Platform(None, Path(ensure_proxy(workdir / "chp")).parent)
        platform.write_config(cluster_max_cores=2, cluster_worker_memory="6G",
                              cluster_orphan_timeout=0)
        try:
            platform.start()
            person = Person(platform, "dbench", "scientist")
            from himalia.sdk.clusters import Clusters

            clusters = Clusters(f"{platform.url}/services/dask-gateway", person.token)
            stop_and_wait(clusters, *gateway_cluster_start(clusters)[2:])
            starts = []
            for i in range(STARTS):
                scheduler_up, seconds, cluster, client = gateway_cluster_start(clusters)
                starts.append((seconds, scheduler_up))
                if i < STARTS - 1:
                    stop_and_wait(clusters, cluster, client)
            try:
                with_dask(client, args.partitions * 10_000, args.partitions)  # workers import pandas
                b, got = with_dask(client, args.rows, args.partitions)
            finally:
                client.close()
                cluster.shutdown()
        finally:
            platform.close()
    pd.testing.assert_frame_equal(got.sort_index(), expected, check_exact=False)
    print(f"(a) pandas on one core: {a:.2f} s")
    print(f"(b) himalia cluster, 2 workers: {b:.2f} s (same result)")
    started, scheduler_up = statistics.median(s[0] for s in starts), statistics.median(s[1] for s in starts)
    local_p50, subprocess_p50 = statistics.median(local), statistics.median(subprocess_started)
    print(f"cluster start, request to 2 workers connected (warm, median of {STARTS}): himalia gateway "
          f"{started:.2f} s (scheduler up {scheduler_up:.2f} s; {seconds_list(s[0] for s in starts)}), "
          f"plain LocalCluster {local_p50:.2f} s ({seconds_list(local)}), ratio {started / local_p50:.2f} "
          f"(goal <= 2); Dask's SubprocessCluster {subprocess_p50:.2f} s ({seconds_list(subprocess_started)}), "
          f"ratio {started / subprocess_p50:.2f}")
    print(f"RESULT dask_speedup {a / b:.2f} (goal >= 1.7)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
