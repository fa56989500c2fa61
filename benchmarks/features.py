"""Feature store: point-in-time training sets (himalia vs Feast vs pandas), then online reads.

On the ``customer_stats`` data of ``features_data.py`` (100k customers, ten float features, a
30-day TTL, ties on the event time decided by ``created``), the training set of every label
(``customer_id``, ``event_timestamp``, ``label``) with all ten features is built

* by himalia: ``himalia.features.pointintime.training_set`` (a DuckDB ASOF JOIN over the
  Parquet file, nanosecond timestamps as written);
* by Feast: ``FeatureStore.get_historical_features(...).to_df()`` with its DuckDB offline store
  (over the microsecond copy of the file: Feast's DuckDB store cannot read nanoseconds);
* by pandas: ``read_parquet``, then ``merge_asof`` (backward, by customer, tolerance = TTL).

Each engine runs in a fresh process of its own (``--rounds`` times, taking turns; the fastest
round counts): the wall time is the call alone (Feast's repository is applied before the clock
starts; reading the labels is not timed; reading the features is, for every engine), the CPU time
is the process's user + system time over the call (all threads), the peak RSS is the process's
high-water mark (``ru_maxrss``) when the call returns, the highest of the rounds. himalia's rows
are then checked against pandas' row for row and against Feast's on the rows Feast returns.

Then, unless ``--skip-online``, the online part (``features_online.py``, when present) runs on
the same data and its lines are printed.

Usage: ``python benchmarks/features.py [--small] [--data DIR] [--rounds 1] [--skip-online]``.
It ends with ``RESULT training_set_peak_rss_gb <himalia> (goal <= 2.5)`` and
``RESULT training_set_ratio <himalia s / feast s> (goal <= 0.1)``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "magics"))
sys.path.insert(0, str(HERE))
import features_data  # noqa: E402

ENGINES = ("himalia", "feast", "pandas")
NAMES = {"himalia": "himalia training_set", "feast": "Feast (duckdb offline store)",
         "pandas": "pandas merge_asof"}
ROW = "__label_row"  # carried by every engine so Feast's unordered rows can be lined up
RATIO_GOAL = 0.1
RSS_GOAL_GB = 2.5


def refs() -> list[str]:
    return [f"customer_stats:{name}" for name in features_data.FEATURES]


# -- one engine, in a process of its own ------------------------------------------------------


def run_himalia(paths: dict, labels: pd.DataFrame, work: Path):
    from himalia.features.pointintime import training_set

    spec = features_data.view_spec(paths["features"])
    return lambda: training_set(labels, refs(), {spec.name: spec})


def run_feast(paths: dict, labels: pd.DataFrame, work: Path):
    store = features_data.feast_store([features_data.view_spec(paths["features_us"])],
                                      work / "feast-repo")
    return lambda: store.get_historical_features(entity_df=labels, features=refs()).to_df()


def run_pandas(paths: dict, labels: pd.DataFrame, work: Path):
    spec = features_data.view_spec(paths["features"])

    def call():
        source = pd.read_parquet(paths["features"])
        source = source.sort_values(["event_timestamp", "created"], kind="stable")
        left = labels.sort_values("event_timestamp", kind="stable")
        merged = pd.merge_asof(left, source.drop(columns="created"), on="event_timestamp",
                               by="customer_id", direction="backward",
                               tolerance=pd.Timedelta(seconds=spec.ttl_seconds))
        return merged.sort_values(ROW).reset_index(drop=True)

    return call


def child(engine: str, data: Path, out: Path) -> None:
    """Time one engine and write its answer to ``out`` and its figures to stdout as JSON."""
    import pyarrow.parquet as pq

    paths = {name: data / f"{name}.parquet" for name in ("features", "features_us", "labels")}
    labels = pq.read_table(paths["labels"]).to_pandas()
    labels[ROW] = np.arange(len(labels), dtype=np.int64)
    call = globals()[f"run_{engine}"](paths, labels, out.parent)
    cpu = _cpu()
    start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - start
    cpu = _cpu() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    columns = [ROW, *features_data.FEATURES]
    result[columns].to_parquet(out, index=False)
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_rss": peak, "rows": len(result)}))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the parent ----------------------------------------------------------------------------------


def measure(engine: str, data: Path, work: Path) -> dict:
    out = work / f"{engine}.parquet"
    proc = subprocess.run([sys.executable, __file__, "--child", engine, "--data", str(data),
                           "--out", str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{engine} failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "out": out}


def differing_rows(a: pd.DataFrame, b: pd.DataFrame) -> int:
    left, right = a[features_data.FEATURES].to_numpy(), b[features_data.FEATURES].to_numpy()
    same = (left == right) | (np.isnan(left) & np.isnan(right))
    return int((~same.all(axis=1)).sum())


def compare(work: Path, engines: list[str]) -> list[str]:
    lines = []
    ours = pd.read_parquet(work / "himalia.parquet")
    if not (ours[ROW].to_numpy() == np.arange(len(ours))).all():
        lines.append("himalia: the rows are NOT in the labels' order")
    if "pandas" in engines:
        theirs = pd.read_parquet(work / "pandas.parquet")
        lines.append(f"himalia vs pandas merge_asof, row for row: "
                     f"{differing_rows(ours, theirs)} of {len(ours)} rows differ")
    if "feast" in engines:
        theirs = pd.read_parquet(work / "feast.parquet").sort_values(ROW)
        kept = ours.set_index(ROW).loc[theirs[ROW]].reset_index()
        dropped = len(ours) - len(theirs)
        lines.append(f"himalia vs Feast, on the {len(theirs)} rows Feast returns: "
                     f"{differing_rows(kept, theirs.reset_index(drop=True))} differ; "
                     f"Feast dropped {dropped} label rows")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="50k labels x 500k feature rows")
    parser.add_argument("--labels", type=int, help="labels (default 1M, --small 50k)")
    parser.add_argument("--feature-rows", type=int, help="feature rows (default 10M, --small 500k)")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--data", type=Path, help="folder for the generated data, kept and reused "
                        "(default: a temporary folder, removed at the end)")
    parser.add_argument("--rounds", type=int, default=1, help="runs per engine; the fastest counts")
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--skip-online", action="store_true")
    parser.add_argument("--online-reads", type=int, default=1000)
    parser.add_argument("--online-entities", type=int, default=100)
    parser.add_argument("--redis", default="127.0.0.1:6379")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.out)
        return
    labels = args.labels or (50_000 if args.small else 1_000_000)
    rows = args.feature_rows or (500_000 if args.small else 10_000_000)
    data = args.data or Path(tempfile.mkdtemp(prefix="himalia-features-data-"))
    work = Path(tempfile.mkdtemp(prefix="himalia-features-bench-"))
    engines = [e for e in ENGINES if not getattr(args, f"skip_{e}", False)]
    try:
        with tqdm(total=1, desc=f"data: {labels:,} labels x {rows:,} feature rows") as bar:
            features_data.generate(data, customers=args.customers, feature_rows=rows,
                                   labels=labels)
            bar.update(1)
        runs: dict[str, list[dict]] = {e: [] for e in engines}
        for _ in tqdm(range(args.rounds), desc="training sets"):
            for engine in engines:
                runs[engine].append(measure(engine, data, work))
        print(f"{'engine':32s} {'wall s':>8s} {'CPU s':>8s} {'peak RSS GB':>12s} {'rows':>10s}")
        best = {}
        for engine in engines:
            fastest = min(runs[engine], key=lambda r: r["seconds"])
            best[engine] = {**fastest, "peak_rss": max(r["peak_rss"] for r in runs[engine])}
            b = best[engine]
            rounds = ", ".join(f"{r['seconds']:.2f}" for r in runs[engine])
            print(f"{NAMES[engine]:32s} {b['seconds']:8.2f} {b['cpu']:8.2f} "
                  f"{b['peak_rss'] / 1e9:12.2f} {b['rows']:10d}"
                  + (f"  (rounds: {rounds})" if args.rounds > 1 else ""))
        for line in compare(work, engines):
            print(line)
        online = []
        if not args.skip_online and (HERE / "features_online.py").exists():
            import features_online

            online = features_online.run(data, args)
        for line in online:
            print(line)
        print(f"RESULT training_set_peak_rss_gb {best['himalia']['peak_rss'] / 1e9:.2f} "
              f"(goal <= {RSS_GOAL_GB})")
        if "feast" in best:
            ratio = best["himalia"]["seconds"] / best["feast"]["seconds"]
            print(f"RESULT training_set_ratio {ratio:.3f} (goal <= {RATIO_GOAL})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if args.data is None:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
