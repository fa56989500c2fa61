"""Job latency and throughput: himalia's runner vs papermill in-process, side by side in one run.

The same trivial parameterized notebook (a parameters cell and three small cells, the himalia
kernel) is executed

* (a) by ``papermill.execute_notebook`` in this process (it starts a kernel each time), and
* (b) by himalia: from the submit call (``POST /api/v1/jobs/<id>/runs`` through the proxy, as a
  user's token) to the run ``succeeded`` with its executed notebook stored, observed by polling
  ``GET /api/v1/runs/<id>`` every 5 ms. Runs arrive a few seconds apart, as scheduled runs do,
  so the runner's kernel pool has a kernel waiting (that is what the pool is for).

Then 100 runs are queued at once and the time until all have ended gives the throughput
(runs per minute on this machine; each run still gets a fresh kernel).

Usage: ``python benchmarks/jobs.py [--runs 10] [--queued 100]`` (as root: the platform runs
kernels as the owner's own account). It ends with ``RESULT job_latency_ratio <median b / median
a> (goal <= 0.25)``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nbformat
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from himalia_testing import Platform  # noqa: E402

from himalia.hub.proxy import ensure_proxy  # noqa: E402

SCOPES = ["access:services!service=himalia", "read:users:name!user", "read:users:groups!user",
          "read:roles:users!user"]


def notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("n = 3\nlabel = 'a'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("total = sum(range(n))"),
                nbformat.v4.new_code_cell("text = f'{label}: {total}'"),
                nbformat.v4.new_code_cell("print(text)")]
    nb.metadata["kernelspec"] = {"name": "himalia", "display_name": "Python 3 (himalia)",
                                 "language": "python"}
    return nb


def in_process(path: Path, runs: int, bar: tqdm) -> list[float]:
    import papermill

    times = []
    for i in range(runs):
        start = time.perf_counter()
        papermill.execute_notebook(str(path), str(path.with_name(f"out-{i}.ipynb")),
                                   parameters={"n": i + 3}, kernel_name="himalia", progress_bar=False)
        times.append(time.perf_counter() - start)
        bar.update()
    return times


class User:
    def __init__(self, platform: Platform, name: str):
        assert platform.api("POST", f"/users/{name}").status_code == 201
        platform.set_role(name, "scientist")
        token = platform.api("POST", f"/users/{name}/tokens", json={"scopes": SCOPES}).json()["token"]
        self.http = httpx.Client(base_url=f"{platform.url}/services/himalia/api/v1",
                                 headers={"Authorization": f"token {token}"}, timeout=60)

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = self.http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()


def through_himalia(user: User, job: int, runs: int, spacing: float, bar: tqdm) -> list[float]:
    times = []
    for i in range(runs):
        time.sleep(spacing)  # the scenario: runs arrive apart, as scheduled runs do
        start = time.perf_counter()
        run = user.call("POST", f"/jobs/{job}/runs", json={"parameters": {"n": i + 3}})
        while True:
            state = user.call("GET", f"/runs/{run['id']}")["state"]
            if state not in ("queued", "running"):
                break
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
        if state != "succeeded":
            details = user.call("GET", f"/runs/{run['id']}")
            raise RuntimeError(f"run {run['id']} {state}: {details['reason']}")
        times.append(elapsed)
        bar.update()
    return times


def throughput(user: User, job: int, queued: int, bar: tqdm) -> tuple[float, int]:
    start = time.perf_counter()
    ids = [user.call("POST", f"/jobs/{job}/runs", json={"parameters": {"n": i}})["id"]
           for i in range(queued)]
    ended: dict[int, str] = {}
    while len(ended) < queued:
        runs = user.call("GET", f"/jobs/{job}/runs", params={"limit": 500})["runs"]
        for run in runs:
            if run["id"] in ids and run["state"] not in ("queued", "running") and run["id"] not in ended:
                ended[run["id"]] = run["state"]
                bar.update()
        time.sleep(0.2)
    minutes = (time.perf_counter() - start) / 60
    return queued / minutes, sum(state != "succeeded" for state in ended.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--queued", type=int, default=100)
    parser.add_argument("--spacing", type=float, default=4.0,
                        help="seconds between two latency runs (the pool refills meanwhile)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="himalia-bench-jobs-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        path = workdir / "bench.ipynb"
        nbformat.write(notebook(), path)
        with tqdm(total=args.runs, desc="papermill in-process", unit="run") as bar:
            baseline = in_process(path, args.runs, bar)
        proxy = Path(ensure_proxy(workdir / "chp")).parent
        platform = Platform(None, proxy)
        platform.write_config(job_max_parallel=2)
        try:
            platform.start()
            user = User(platform, "bench")
            job = user.call("POST", "/jobs", json={"name": "bench", "notebook": json.loads(nbformat.writes(notebook())),
                                                   "concurrency": 2})["id"]
            with tqdm(total=args.runs + 1, desc="himalia job runs", unit="run") as bar:
                ours = through_himalia(user, job, args.runs + 1, args.spacing, bar)[1:]  # 1st: cold pool
            with tqdm(total=args.queued, desc=f"{args.queued} queued runs", unit="run") as bar:
                per_minute, failures = throughput(user, job, args.queued, bar)
        finally:
            platform.close()
    a, b = statistics.median(baseline), statistics.median(ours)
    print(f"(a) papermill in-process: median {a * 1000:.0f} ms  (min {min(baseline) * 1000:.0f}, "
          f"max {max(baseline) * 1000:.0f})")
    print(f"(b) himalia submit -> succeeded: median {b * 1000:.0f} ms  (min {min(ours) * 1000:.0f}, "
          f"max {max(ours) * 1000:.0f})")
    print(f"throughput: {per_minute:.1f} runs/min for {args.queued} queued runs, {failures} failed")
    print(f"RESULT job_latency_ratio {b / a:.3f} (goal <= 0.25)")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
