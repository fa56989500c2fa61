"""Metric logging cost in a training loop: ``himalia.sdk.tracking.log_metric`` vs ``mlflow.log_metric``.

One ``mlflow server`` (SQLite store, one worker, on a free port) serves both, in one run:

(a) ``--points`` synchronous ``mlflow.log_metric`` calls in a loop, inside one run (the baseline);
(b) the same loop calling ``himalia.sdk.tracking.log_metric`` inside another run: the loop's
    wall time (what the training loop pays) and, separately, the time ``flush()`` then takes
    until the server has stored every point;
(c) the same loop with the same arithmetic and no logging (the loop's own cost).

The wall-time overhead ratio is ``loop (b) / loop (a)``: the share of the time the training
loop would have spent in synchronous logging that it still spends with himalia's buffer (the
goal is at most 5 %). Because both include the loop's own cost (c), the ratio of logging costs
alone, ``(b - c) / (a - c)``, is printed beside it. Flushing happens in a background thread while
the loop runs and afterwards; its time is reported, not counted: a loop does not wait for it.
Both runs must end with every point stored (queried from the server).

Usage: ``python benchmarks/tracking.py [--points 10000]``. It ends with ``RESULT
tracking_overhead_ratio <loop (b) / loop (a)> (goal <= 0.05)``.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from tqdm import tqdm

from himalia.hub.cli import free_port

PROGRESS_EVERY = 500


def start_server(workdir: Path, port: int) -> subprocess.Popen:
    """``mlflow server`` in a process group of its own; returns once it answers."""
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with open(workdir / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
             "--serve-artifacts", "--artifacts-destination", str(workdir / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir, env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited:\n{(workdir / 'server.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError("mlflow server not up after 180s")


def stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def timed_loop(log, points: int, bar: tqdm) -> float:
    """Seconds for ``points`` iterations of a training-loop-shaped body calling ``log``."""
    start = time.perf_counter()
    for step in range(points):
        value = math.sin(step) * 0.5 + step / points
        log("loss", value, step)
        if step % PROGRESS_EVERY == 0:
            bar.update(min(PROGRESS_EVERY, points - step))
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000, help="metric points per loop")
    args = parser.parse_args()

    import mlflow
    from mlflow.tracking import MlflowClient

    from himalia.sdk import tracking

    with tempfile.TemporaryDirectory(prefix="himalia-bench-tracking-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with tqdm(total=1, desc="mlflow server", unit="server") as bar:
            proc = start_server(Path(tmp), port)
            bar.update(1)
        try:
            mlflow.set_tracking_uri(url)
            client = MlflowClient(url)
            with tqdm(total=args.points, desc="(a) mlflow.log_metric", unit="point") as bar:
                with mlflow.start_run() as run_a:
                    t_a = timed_loop(lambda key, value, step: mlflow.log_metric(key, value, step=step),
                                     args.points, bar)
            with tqdm(total=args.points, desc="(b) himalia log_metric", unit="point") as bar:
                with mlflow.start_run() as run_b:
                    t_b = timed_loop(tracking.log_metric, args.points, bar)
                    flush_start = time.perf_counter()
                    left = tracking.flush(timeout=300)
                    t_flush = time.perf_counter() - flush_start
            with tqdm(total=args.points, desc="(c) no logging", unit="point") as bar:
                t_c = timed_loop(lambda key, value, step: None, args.points, bar)
            stored_a = len(client.get_metric_history(run_a.info.run_id, "loss"))
            stored_b = len(client.get_metric_history(run_b.info.run_id, "loss"))
        finally:
            stop_server(proc)

    per_point = 1e6 / args.points
    print()
    print(f"{'':28}{'loop':>10}{'per point':>14}{'stored':>9}")
    print(f"{'(a) mlflow.log_metric':28}{t_a:>9.3f}s{t_a * per_point:>11.1f} us{stored_a:>9}")
    print(f"{'(b) himalia log_metric':28}{t_b:>9.3f}s{t_b * per_point:>11.1f} us{stored_b:>9}")
    print(f"{'(c) no logging':28}{t_c:>9.3f}s{t_c * per_point:>11.1f} us{'-':>9}")
    print(f"(b) flush after the loop: {t_flush:.3f}s ({left} points left, {len(tracking.failed())} refused); "
          f"loop + flush {t_b + t_flush:.3f}s")
    print(f"points stored: mlflow {stored_a}, himalia {stored_b} (goal {args.points} each)")
    print(f"logging cost alone (b - c) / (a - c): {(t_b - t_c) / (t_a - t_c):.5f}")
    print(f"RESULT tracking_overhead_ratio {t_b / t_a:.5f} (goal <= 0.05)")
    return 0 if stored_a == stored_b == args.points else 1


if __name__ == "__main__":
    sys.exit(main())
