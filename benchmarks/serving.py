"""Serving throughput and latency: a hand-written ``bentoml serve`` service vs himalia's route.

The same scikit-learn model (logged to the platform's MLflow) is served

* (a) by a hand-written BentoML service (``bentoml.mlflow.load_model``, an API taking MLflow's
  ``dataframe_split`` and answering ``{"predictions": [...]}``), started with ``bentoml serve``
  and called directly on its port, and
* (b) by himalia: ``POST /api/v1/deployments``, then called through the hub's proxy at
  ``/models/<name>/predict`` with a hub token (authentication, the version router and the
  prediction log included).

Also measured, to show what the route itself costs: (c) the same himalia version's
``bentoml serve`` process called directly on its port, bypassing the proxy and the router.

Both have one worker process and no access log. The same load generator (wrk, C, from
Debian) drives each for the same time with the same connections, in alternating rounds. Then
10 versions are swapped in while wrk keeps calling the route, and every failed request counts
(non-2xx answers and socket errors).

Usage: ``python benchmarks/serving.py [--seconds 15] [--rounds 2] [--connections 8] [--swaps 10]``.
It ends with ``RESULT serving_throughput_ratio <b/a> (goal >= 0.95)``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from himalia_testing import Platform, free_port, kill_group, wait_for  # noqa: E402

from himalia.hub.proxy import ensure_proxy  # noqa: E402
from himalia.hub.supervisor import children  # noqa: E402

BODY = '{"dataframe_split": {"columns": ["a", "b"], "data": [[0.9, 0.1], [0.2, 0.7], [0.5, 0.4]]}}'
BASELINE = '''
import os

import bentoml
import pandas as pd


@bentoml.service(workers=1, logging={"access": {"enabled": False}})
class Baseline:
    bento_model = bentoml.models.BentoModel(os.environ["BASELINE_MODEL_TAG"])

    def __init__(self):
        self.model = bentoml.mlflow.load_model(self.bento_model)

    @bentoml.api
    def predict(self, dataframe_split: dict) -> dict:
        frame = pd.DataFrame(dataframe_split["data"], columns=dataframe_split["columns"])
        return {"predictions": self.model.predict(frame).tolist()}
'''
LUA = '''wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
''' % BODY


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["bash", "-c", "source scripts/venv.sh && apt_install wrk"], cwd=ROOT, check=True)
    return shutil.which("wrk") or sys.exit("wrk could not be installed (apt-get install wrk)")


def parse_wrk(text: str) -> dict:
    def ms(value: str) -> float:
        number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    requests_done = int(re.search(r"(\d+) requests in", text).group(1))
    number, unit = re.search(r"requests in ([\d.]+)(ms|s|m|h)\b", text).groups()
    seconds = float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "requests": requests_done, "seconds": seconds,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "p50": ms(re.search(r"\s50%\s+(\S+)", text).group(1)),
        "p99": ms(re.search(r"\s99%\s+(\S+)", text).group(1)),
        "failed": (int(non2xx.group(1)) if non2xx else 0)
                  + (sum(int(g) for g in socket.groups()) if socket else 0),
    }


def wrk_command(wrk: str, lua: Path, url: str, seconds: float, connections: int,
                headers: dict) -> list[str]:
    argv = [wrk, "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "--timeout", "30s",
            "-s", str(lua)]
    for k, v in headers.items():
        argv += ["-H", f"{k}: {v}"]
    return [*argv, url]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--swaps", type=int, default=10)
    args = parser.parse_args()
    wrk = ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="himalia-serving-bench-"))
    os.chmod(work, 0o755)
    lua = work / "post.lua"
    lua.write_text(LUA)
    prefix = work / "chp"
    prefix.mkdir()
    platform = Platform(None, Path(ensure_proxy(prefix)).parent)
    baseline = None
    try:
        with tqdm(total=4, desc="starting the platform, logging the model, (a) and (b)") as bar:
            platform.start(timeout=240)
            bar.update(1)
            name = "bench"
            platform.api("POST", f"/users/{name}")
            platform.set_role(name, "scientist")
            token = platform.api("POST", f"/users/{name}/tokens", json={"note": "bench"}).json()["token"]
            os.environ.update(MLFLOW_TRACKING_URI=f"{platform.url}/services/mlflow",
                              MLFLOW_TRACKING_TOKEN=token, BENTOML_HOME=str(work / "bentoml"),
                              BENTOML_DO_NOT_TRACK="true")
            models = [log_model(flip=False), log_model(flip=True)]
            bar.update(1)
            baseline, baseline_url = start_baseline(work, models[0])
            bar.update(1)
            api = f"{platform.url}/services/himalia/api/v1"
            auth = {"Authorization": f"token {token}"}
            deploy_and_wait(api, auth, "churn", models[0], version=1)
            bar.update(1)
        route = f"{platform.url}/models/churn/predict"
        results = {"a": [], "b": [], "c": []}
        runs = [("a", baseline_url, {}), ("b", route, auth),
                ("c", version_server(platform, "churn:v1"), {})] * args.rounds
        for label, url, headers in tqdm(runs, desc=f"load, {args.seconds:.0f} s each"):
            out = subprocess.run(wrk_command(wrk, lua, url, args.seconds, args.connections, headers),
                                 capture_output=True, text=True, check=True).stdout
            results[label].append(parse_wrk(out))
        summary = {}
        names = {"a": "bentoml serve, hand-written, direct", "b": "himalia /models/churn/predict",
                 "c": "himalia's bentoml serve, direct"}
        for label in ("a", "b", "c"):
            rs = results[label]
            summary[label] = {
                "rps": sum(r["requests"] for r in rs) / sum(r["seconds"] for r in rs),
                "p50": sorted(r["p50"] for r in rs)[len(rs) // 2],
                "p99": max(r["p99"] for r in rs),
                "failed": sum(r["failed"] for r in rs),
            }
            print(f"({label}) {names[label]}: "
                  f"{summary[label]['rps']:.1f} req/s, p50 {summary[label]['p50']:.2f} ms, "
                  f"p99 {summary[label]['p99']:.2f} ms, failed {summary[label]['failed']}; rounds: "
                  + ", ".join(f"{r['rps']:.0f}" for r in rs))

        swap_failed, swap_requests = swaps(wrk, lua, route, auth, api, models, args)
        ratio = summary["b"]["rps"] / summary["a"]["rps"]
        p99_ratio = summary["b"]["p99"] / summary["a"]["p99"]
        print(f"p99 b/a {p99_ratio:.3f} (goal <= 1.10); p50 b/a "
              f"{summary['b']['p50'] / summary['a']['p50']:.3f}")
        print(f"the route's own cost (proxy, auth, router, log): throughput b/c "
              f"{summary['b']['rps'] / summary['c']['rps']:.3f}, p50 b-c "
              f"{summary['b']['p50'] - summary['c']['p50']:+.2f} ms")
        print(f"swaps under load: {args.swaps} swaps, {swap_requests} requests, {swap_failed} failed (goal 0)")
        print(f"RESULT serving_throughput_ratio {ratio:.3f} (goal >= 0.95)")
    finally:
        if baseline is not None:
            workers = children(baseline.pid)  # bentoml serve's workers have groups of their own
            kill_group(baseline.pid)
            for pid in workers:
                kill_group(pid)
        platform.close()
        shutil.rmtree(work, ignore_errors=True)


def log_model(flip: bool) -> str:
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    mlflow.set_experiment("users/bench")
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.random(500), "b": rng.random(500)})
    y = (X.a > X.b).astype(int)
    model = LogisticRegression().fit(X, 1 - y if flip else y)
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(model, name="model", input_example=X.head(3),
                                 signature=infer_signature(X, model.predict(X)),
                                 pip_requirements=["scikit-learn"])
    return f"runs:/{run.info.run_id}/model"


def start_baseline(work: Path, model_uri: str) -> tuple[subprocess.Popen, str]:
    import bentoml

    tag = str(bentoml.mlflow.import_model("baseline", model_uri).tag)
    source = work / "baseline"
    source.mkdir()
    (source / "service.py").write_text(BASELINE)
    port = free_port()
    env = {**os.environ, "BASELINE_MODEL_TAG": tag}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("bentoml")), "serve", "service:Baseline",
                             "--host", "127.0.0.1", "--port", str(port)], cwd=source, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def ready():
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return proc.poll() is not None and sys.exit("the baseline service exited")

    wait_for(ready, 120, interval=0.25, what="the baseline service")
    answer = httpx.post(f"http://127.0.0.1:{port}/predict", content=BODY,
                        headers={"Content-Type": "application/json"}).json()
    assert "predictions" in answer, answer
    return proc, f"http://127.0.0.1:{port}/predict"


def version_server(platform: Platform, bento_tag: str) -> str:
    """The predict URL of the ``bentoml serve`` process of one deployed version."""
    for proc in platform.processes():
        argv = proc.cmdline()
        if bento_tag in argv and "serve" in argv and "--port" in argv:
            return f"http://127.0.0.1:{argv[argv.index('--port') + 1]}/himalia/predict"
    sys.exit(f"no bentoml serve process for {bento_tag}")


def deploy_and_wait(api: str, auth: dict, name: str, model_uri: str, version: int) -> None:
    r = httpx.post(f"{api}/deployments", json={"name": name, "model_uri": model_uri},
                   headers=auth, timeout=60)
    assert r.status_code == 202, r.text
    assert r.json()["version"]["version"] == version, r.text

    def settled():
        d = httpx.get(f"{api}/deployments/{name}", headers=auth, timeout=30).json()
        v = next(v for v in d["versions"] if v["version"] == version)
        if v["state"] == "failed":
            sys.exit(f"version {version} failed: {v['reason']}")
        return v["state"] == "serving" and v["traffic"] == 100

    wait_for(settled, 300, interval=0.25, what=f"version {version}")


def swaps(wrk: str, lua: Path, route: str, auth: dict, api: str, models: list[str],
          args: argparse.Namespace) -> tuple[int, int]:
    """wrk calls the route while ``args.swaps`` new versions are swapped in; SIGINT ends it."""
    argv = wrk_command(wrk, lua, route, 3600, args.connections, auth)
    load = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for i in tqdm(range(args.swaps), desc="swaps under load"):
            deploy_and_wait(api, auth, "churn", models[(i + 1) % 2], version=i + 2)
    finally:
        load.send_signal(signal.SIGINT)
        out, _ = load.communicate(timeout=60)
    stats = parse_wrk(out)
    return stats["failed"], stats["requests"]


if __name__ == "__main__":
    main()
