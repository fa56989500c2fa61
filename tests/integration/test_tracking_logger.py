"""``himalia.sdk.tracking`` against a real ``mlflow server`` on 127.0.0.1: every logged point
arrives exactly once, also across interpreter exit and a server outage, and points MLflow
refuses are reported without holding up the others."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient

from himalia.sdk import tracking
from himalia.sdk.tracking import end_run, failed, flush, last_run_id, log_metric, log_metrics, pending
from himalia_testing import free_port, kill_group, mlflow_client, wait_for

LOGGER = "himalia.sdk.tracking"
# Job execution starts huey consumers the tests do not need (seconds of start-up, memory).
SERVER_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class MlflowServer:
    """``mlflow server`` with a SQLite store under ``root``, in a process group of its own; a
    restart keeps its port and store."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "MlflowServer":
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--serve-artifacts", "--artifacts-destination", str(self.root / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.root,
            env={**os.environ, **SERVER_ENV}, start_new_session=True,
        )
        log.close()
        wait_for(self._answers, 180, what=f"mlflow server, output in {self.root / 'server.log'}")
        return self

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"mlflow server exited:\n{(self.root / 'server.log').read_text()[-3000:]}")
        try:
            return requests.get(f"{self.url}/health", timeout=2).ok
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc.pid)
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    yield running
    running.stop()


@pytest.fixture
def client(server):
    """The module's server as the tracking URI; its runs are ended afterwards."""
    with mlflow_client(server.url):
        yield MlflowClient(server.url)
        while mlflow.active_run():
            mlflow.end_run()


def stored(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    """``(step, value)`` of every stored point of ``key``, duplicates included."""
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def tracking_messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_ten_thousand_points_all_arrive_with_their_values_and_steps(client):
    with mlflow.start_run() as run:
        for step in range(10_000):
            log_metric("loss", 1 / (step + 1), step=step)
        assert flush(timeout=120) == 0
        assert pending() == 0
    assert stored(client, run.info.run_id, "loss") == [(step, 1 / (step + 1)) for step in range(10_000)]


def test_points_logged_just_before_the_interpreter_exits_are_stored(client, server):
    code = (
        "import mlflow\n"
        "from himalia.sdk import tracking\n"
        f"mlflow.set_tracking_uri({server.url!r})\n"
        "run = mlflow.start_run()\n"
        "print(run.info.run_id, flush=True)\n"
        "for step in range(5000):\n"
        "    tracking.log_metric('acc', step / 5000, step=step)\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    run_id = child.stdout.split()[0]
    assert stored(client, run_id, "acc") == [(step, step / 5000) for step in range(5000)]


def test_end_run_stores_the_runs_points_then_ends_the_run(client):
    run = mlflow.start_run()
    for step in range(1500):
        log_metrics({"loss": 1 / (step + 1), "lr": 0.1}, step=step)
    assert end_run() == 0
    assert mlflow.active_run() is None
    assert last_run_id() == run.info.run_id
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert stored(client, run.info.run_id, "loss") == [(step, 1 / (step + 1)) for step in range(1500)]
    assert len(stored(client, run.info.run_id, "lr")) == 1500


def test_nan_and_infinities_are_stored_like_mlflow_stores_them(client):
    with mlflow.start_run() as run:
        log_metrics({"nan": math.nan, "inf": math.inf, "-inf": -math.inf}, step=3)
        assert flush(timeout=60) == 0
    assert math.isnan(stored(client, run.info.run_id, "nan")[0][1])
    assert stored(client, run.info.run_id, "inf")[0][1] > 1e300
    assert stored(client, run.info.run_id, "-inf")[0][1] < -1e300


def test_logging_without_a_run_says_how_to_start_one():
    assert mlflow.active_run() is None
    with pytest.raises(ValueError, match=r"no active run: start one with mlflow.start_run\(\) or %track start"):
        log_metric("loss", 1.0)


def test_a_point_mlflow_refuses_is_reported_and_the_points_behind_it_are_stored(client, caplog):
    with mlflow.start_run() as run:
        log_metric("loss", 1.0, step=0)
        log_metric("bad*key", 1.0, step=1)
        for step in range(1, 100):
            log_metric("loss", 1 / (step + 1), step=step)
        assert flush(timeout=60) == 0
    run_id = run.info.run_id
    assert stored(client, run_id, "loss") == [(step, 1 / (step + 1)) for step in range(100)]
    refused = [p for p in failed() if p.run_id == run_id]
    assert [(p.key, p.step, p.value) for p in refused] == [("bad*key", 1, 1.0)]
    assert "Names may only contain" in refused[0].error
    assert any(f"refused 1 metric point(s) of run {run_id}" in m for m in tracking_messages(caplog))


def test_a_point_only_the_server_refuses_is_singled_out_of_its_batch(client, monkeypatch):
    # As if the server had a rule this client does not know: only the server refuses the point.
    monkeypatch.setattr(tracking, "_check_point", lambda point: None)
    with mlflow.start_run() as run:
        for step in range(1000):
            log_metric("loss", float(step), step=step)
            if step == 700:
                log_metric("bad*key", 7.0, step=step)
        assert flush(timeout=120) == 0
    run_id = run.info.run_id
    assert stored(client, run_id, "loss") == [(step, float(step)) for step in range(1000)]
    assert [(p.key, p.step) for p in failed() if p.run_id == run_id] == [("bad*key", 700)]


def test_points_of_a_deleted_run_are_reported_without_holding_up_other_runs(client, caplog):
    gone = client.create_run("0").info.run_id
    client.delete_run(gone)
    kept = client.create_run("0").info.run_id
    for step in range(1500):
        log_metric("x", float(step), step=step, run_id=gone)
        log_metric("x", float(step), step=step, run_id=kept)
    assert flush(timeout=120) == 0
    assert stored(client, kept, "x") == [(step, float(step)) for step in range(1500)]
    refused = [p for p in failed() if p.run_id == gone]
    assert len(refused) == 1500
    assert "deleted" in refused[0].error
    reported = [re.search(rf"refused (\d+) metric point\(s\) of run {gone}", m) for m in tracking_messages(caplog)]
    assert sum(int(found[1]) for found in reported if found) == 1500


def test_points_logged_while_the_server_is_down_are_stored_once_when_it_is_back(tmp_path, caplog):
    server = MlflowServer(tmp_path).start()
    previous = mlflow.get_tracking_uri()
    try:
        client = MlflowClient(server.url)
        mlflow.set_tracking_uri(server.url)
        run_id = client.create_run("0").info.run_id
        log_metric("loss", 0.0, step=0, run_id=run_id)
        assert flush(timeout=60) == 0

        server.stop()
        for step in range(1, 2500):
            log_metric("loss", step / 2, step=step, run_id=run_id)
        outage = re.compile(rf"\d+ metric points waiting, MLflow at {re.escape(server.url)} unreachable "
                            r"\(.+\); retrying")
        wait_for(lambda: any(outage.search(m) for m in tracking_messages(caplog)), 60,
                 what="the outage to be reported")
        for step in range(2500, 3000):
            log_metric("loss", step / 2, step=step, run_id=run_id)
        assert pending() == 2999
        assert flush(timeout=1) == 2999  # kept, not lost

        server.start()
        assert flush(timeout=120) == 0
        assert pending() == 0
        assert stored(client, run_id, "loss") == [(step, step / 2) for step in range(3000)]
        messages = tracking_messages(caplog)
        assert len([m for m in messages if outage.search(m)]) == 1, messages
        assert any(f"MLflow at {server.url} reachable again" in m for m in messages), messages
    finally:
        mlflow.set_tracking_uri(previous)
        server.stop()
