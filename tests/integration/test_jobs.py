"""Scheduled notebook jobs on the real platform: the runner `himalia up` supervises executes
notebooks with papermill on pooled kernels, as each owner's Unix account, with no server of
theirs running. Webhooks go to a local HTTP server, e-mail to a local SMTP server (aiosmtpd).
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import threading

import nbformat
import psutil
import pytest
import requests

from himalia_testing import Platform, free_port, wait_for

pytestmark = pytest.mark.timeout(900)
API = "/services/himalia/api/v1"
SCOPES = ["access:services!service=himalia", "access:services!service=mlflow",
          "read:users:name!user", "read:users:groups!user", "read:roles:users!user"]


def notebook(*cells: str, parameters: str = "n = 3\nrate = 0.5\nlabel = 'x'") -> dict:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(parameters)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# A job"), p, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = {"name": "himalia", "display_name": "Python 3 (himalia)", "language": "python"}
    return json.loads(nbformat.writes(nb))


class Hooks(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        Hooks.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def hooks():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def mailbox():
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    class Box(Message):
        def __init__(self):
            super().__init__()
            self.messages = []

        def handle_message(self, message):
            self.messages.append(message)

    box = Box()
    box.port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


@pytest.fixture(scope="module")
def platform(proxy_bin, mailbox):
    p = Platform(None, proxy_bin)
    p.write_config(
        job_max_notebook_bytes=200_000,
        smtp={"host": "127.0.0.1", "port": mailbox.port, "sender": "jobs@himalia.test"},
    )
    try:
        p.start()
        yield p
    finally:
        p.close()


class Person:
    def __init__(self, platform: Platform, name: str, role: str | None):
        self.platform, self.name = platform, name
        assert platform.api("POST", f"/users/{name}").status_code == 201
        if role:
            platform.set_role(name, role)
        scopes = [s for s in SCOPES if role == "scientist" or "mlflow" not in s]
        r = platform.api("POST", f"/users/{name}/tokens", json={"note": "jobs tests", "scopes": scopes})
        assert r.status_code == 201, r.text
        self.headers = {"Authorization": f"token {r.json()['token']}"}

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.platform.url}{API}{path}", headers=self.headers,
                                timeout=60, **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs):
        r = self.call(method, path, **kwargs)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text[:600]}"
        return r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else r

    def job(self, name: str, nb: dict, **fields) -> dict:
        return self.ok("POST", "/jobs", 201, json={"name": name, "notebook": nb, **fields})

    def wait(self, run_id: int, timeout: float = 120, states=("succeeded", "failed", "timed_out", "cancelled")) -> dict:
        found = {}

        def ended():
            found.update(self.ok("GET", f"/runs/{run_id}"))
            return found["state"] in states

        try:
            wait_for(ended, timeout, what=f"run {run_id} to end")
        except AssertionError as e:
            raise AssertionError(f"{e}: {found}\n{self.call('GET', f'/runs/{run_id}/logs').text}") from None
        return found


@pytest.fixture(scope="module")
def people(platform, unique_name_module):
    return {
        "alice": Person(platform, unique_name_module("ja"), "scientist"),
        "bob": Person(platform, unique_name_module("jb"), "scientist"),
        "viewer": Person(platform, unique_name_module("jv"), "viewer"),
    }


def runner_process(platform: Platform) -> psutil.Process:
    found = []

    def running():
        found[:] = []
        for p in platform.processes():
            try:
                # The runner itself, not its supervisor, nor the deployment manager (also supervised).
                cmdline = p.cmdline()
                if (p.status() != psutil.STATUS_ZOMBIE and "--supervised" in cmdline
                        and "himalia.hub.jobs.runner" in cmdline):
                    found.append(p)
            except psutil.Error:
                pass
        return found

    wait_for(running, 60, what="the job runner")
    return found[0]


def kernels_of(platform: Platform, account: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["username", "cmdline"]):
        if p.info["username"] == account and "himalia.kernels" in " ".join(p.info["cmdline"] or []):
            out.append(p)
    return out


def test_a_run_gets_typed_parameters_and_runs_as_its_owner_without_a_server(platform, people):
    alice = people["alice"]
    nb = notebook(
        "import getpass, os\nwho = getpass.getuser()\ntotal = n * rate",
        "import himalia.sdk as h\nassert h.record('total', total)\nh.record('who', who)\n"
        "import pandas as pd\nh.record('table', pd.DataFrame({'k': [label] * n}))",
        "print('label', label, 'total', total, 'run', os.environ['HIMALIA_JOB_RUN_ID'])",
    )
    job = alice.job("report", nb, parameters={"n": 4})
    assert job["parameters"]["n"] == {"type": "int", "default": 4, "help": ""}
    assert job["parameters"]["rate"]["type"] == "float"
    run = alice.ok("POST", f"/jobs/{job['id']}/runs", 201, json={"parameters": {"label": "typed"}})
    assert run["state"] == "queued"
    done = alice.wait(run["id"])
    assert done["state"] == "succeeded", done
    assert done["progress"]["cells_done"] == done["progress"]["cells_total"] > 0
    assert len(done["cell_seconds"]) == done["progress"]["cells_total"]
    # Nobody started a server for alice: the run did not need one.
    assert not platform.api("GET", f"/users/{alice.name}").json().get("servers")

    out = nbformat.reads(alice.ok("GET", f"/runs/{run['id']}/output").text, as_version=4)
    injected = [c for c in out.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "label = \"typed\"" in injected[0].source and "n = 4" in injected[0].source
    printed = "".join(o.get("text", "") for c in out.cells if c.cell_type == "code" for o in c.outputs)
    assert f"label typed total 2.0 run {run['id']}" in printed

    values = alice.ok("GET", f"/runs/{run['id']}/values")["values"]
    assert values["total"] == {"kind": "json", "value": 2.0}
    assert values["who"]["value"] == platform.user_prefix + alice.name
    assert values["table"]["kind"] == "parquet"
    latest = alice.ok("GET", "/jobs/report/values/total")
    assert latest["value"] == 2.0 and latest["run"] == run["id"]
    # Each recorded value is a change made as alice: it is in the audit log.
    import sqlite3

    with sqlite3.connect(platform.state_dir / "api" / "himalia.sqlite") as audit:
        recorded = audit.execute("SELECT actor, json_extract(detail, '$.name') FROM himalia_audit_log "
                                 "WHERE action = 'run.value' AND target = ?", (f"run:{run['id']}",)).fetchall()
    assert sorted(recorded) == [(alice.name, "table"), (alice.name, "total"), (alice.name, "who")]
    wait_for(lambda: alice.call("GET", f"/runs/{run['id']}/output", params={"format": "html"}).status_code == 200,
             60, what="the HTML rendering")
    assert "typed" in alice.call("GET", f"/runs/{run['id']}/output", params={"format": "html"}).text


def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(platform, people):
    alice = people["alice"]
    before = len(alice.ok("GET", "/jobs")["jobs"])
    good = notebook("y = n + 1")
    cases = [
        ({"name": "b1", "notebook": good, "parameters": {"nope": 1}}, 422, "parameters.nope"),
        ({"name": "b2", "notebook": good, "parameters": {"n": "three"}}, 422, "parameters.n"),
        ({"name": "b3", "notebook": good, "parameters": {"n": True}}, 422, "parameters.n"),
        ({"name": "b4", "notebook": good, "schedule": "every day"}, 422, "schedule"),
        ({"name": "b5", "notebook": good, "timezone": "Mars/Olympus"}, 422, "timezone"),
        ({"name": "b6", "notebook": {"cells": "no"}}, 422, "notebook"),
        ({"name": "b7", "path": "../../etc/passwd"}, 422, "path"),
        ({"name": "b8", "path": "/etc/passwd"}, 422, "path"),
        ({"name": "b9", "path": "missing.ipynb"}, 422, "path"),
        ({"name": "b10", "notebook": good, "inputs": ["missing.csv"]}, 422, "inputs.0"),
        ({"name": "b11", "notebook": notebook("x = '" + "a" * 300_000 + "'")}, 413, "notebook"),
        ({"name": "bad name!", "notebook": good}, 422, "name"),
        ({"name": "b12", "notebook": good, "timeout_seconds": 0}, 422, "timeout_seconds"),
        ({"name": "b13", "notebook": good, "profile": "nope"}, 422, "profile"),
        ({"name": "b14", "notebook": good, "colour": "red"}, 422, "colour"),
    ]
    for body, status, field in cases:
        r = alice.call("POST", "/jobs", json=body)
        assert r.status_code == status, (body.get("name"), r.status_code, r.text[:300])
        message = r.json()["message"]
        assert message.startswith(field + ":") or field in message, (field, message)
    assert len(alice.ok("GET", "/jobs")["jobs"]) == before
    job = alice.job("typed", good)
    r = alice.call("POST", f"/jobs/{job['id']}/runs", json={"parameters": {"rate": "fast"}})
    assert r.status_code == 422 and "parameters.rate" in r.json()["message"]
    assert alice.ok("GET", f"/jobs/{job['id']}/runs")["runs"] == []


def test_a_notebook_in_the_home_folder_with_its_inputs_and_no_symlinks(platform, people):
    alice = people["alice"]
    # The runner makes the account when it first needs it; alice's files go in her home.
    home = f"/home/{platform.user_prefix}{alice.name}"
    wait_for(lambda: os.path.isdir(home), 60, what="alice's home")
    account = os.stat(home)
    os.makedirs(f"{home}/work/data", exist_ok=True)
    with open(f"{home}/work/data/in.csv", "w") as f:
        f.write("a\n1\n2\n")
    with open(f"{home}/work/nb.ipynb", "w") as f:
        json.dump(notebook("import pandas as pd\nrows = len(pd.read_csv('data/in.csv'))\nprint('rows', rows)"), f)
    os.symlink("/etc/passwd", f"{home}/work/link.ipynb")
    for path in (f"{home}/work", f"{home}/work/data", f"{home}/work/data/in.csv", f"{home}/work/nb.ipynb"):
        os.chown(path, account.st_uid, account.st_gid)
    os.lchown(f"{home}/work/link.ipynb", account.st_uid, account.st_gid)

    r = alice.call("POST", "/jobs", json={"name": "linked", "path": "work/link.ipynb"})
    assert r.status_code == 422 and "symbolic link" in r.json()["message"]
    job = alice.ok("POST", "/jobs", 201, json={"name": "fromhome", "path": "work/nb.ipynb",
                                               "inputs": ["data/in.csv"]})
    assert job["inputs"] == ["data/in.csv"] and job["source_path"] == "work/nb.ipynb"
    # The snapshot is taken now: a later change to the files does not change the job.
    with open(f"{home}/work/data/in.csv", "w") as f:
        f.write("a\n1\n")
    run = alice.ok("POST", f"/jobs/{job['id']}/runs", 201, json={})
    assert alice.wait(run["id"])["state"] == "succeeded"
    assert "rows 2" in alice.ok("GET", f"/runs/{run['id']}/output").text


def test_a_failing_cell_fails_the_run_and_keeps_the_output(platform, people):
    alice = people["alice"]
    job = alice.job("broken", notebook("x = 1", "raise ValueError('bad data ' + label)", "never = True"))
    run = alice.ok("POST", f"/jobs/{job['id']}/runs", 201, json={})
    done = alice.wait(run["id"])
    assert done["state"] == "failed"
    assert done["error"]["ename"] == "ValueError" and "bad data x" in done["error"]["evalue"]
    assert any("ValueError" in line for line in done["error"]["traceback"])
    assert "ValueError" in done["reason"]
    out = alice.ok("GET", f"/runs/{run['id']}/output").text
    assert "bad data x" in out and "papermill-error-cell-tag" in out


def test_a_run_past_its_timeout_is_stopped_with_its_kernel(platform, people):
    alice = people["alice"]
    job = alice.job("slow", notebook("import time\ntime.sleep(120)"), timeout_seconds=3)
    run = alice.ok("POST", f"/jobs/{job['id']}/runs", 201, json={})
    done = alice.wait(run["id"], timeout=60)
    assert done["state"] == "timed_out", done
    assert done["duration_seconds"] < 30
    # What is left of alice's kernels is the one the pool keeps waiting for her next run.
    left = kernels_of(platform, platform.user_prefix + alice.name)
    assert len(left) <= 1, [(k.pid, k.status(), k.create_time(), k.cmdline()[-1]) for k in left]


def test_cancel_a_running_run(platform, people):
    alice = people["alice"]
    job = alice.job("cancelme", notebook("import time\ntime.sleep(120)"))
    run = alice.ok("POST", f"/jobs/{job['id']}/runs", 201, json={})
    alice.wait(run["id"], states=("running",))
    alice.ok("POST", f"/runs/{run['id']}/cancel")
    assert alice.wait(run["id"], timeout=30)["state"] == "cancelled"
    r = alice.call("POST", f"/runs/{run['id']}/cancel")
    assert r.status_code == 409 and "already ended" in r.json()["message"]


def test_failures_retry_with_backoff_and_notify_by_webhook_and_email(platform, people, hooks, mailbox):
    alice = people["alice"]
    Hooks.received.clear()
    job = alice.job("flaky", notebook("raise RuntimeError('down')"), max_retries=1,
                    retry_backoff_seconds=2,
                    notify={"webhook": hooks, "email": ["alice@example.org"], "on": ["failure"]})
    first = alice.ok("POST", f"/jobs/{job['id']}/runs", 201, json={})
    assert alice.wait(first["id"])["state"] == "failed"
    wait_for(lambda: len(alice.ok("GET", f"/jobs/{job['id']}/runs")["runs"]) == 2, 30, what="the retry")
    retry = alice.ok("GET", f"/jobs/{job['id']}/runs")["runs"][0]
    assert retry["trigger"] == "retry" and retry["attempt"] == 2 and retry["retry_of"] == first["id"]
    done = alice.wait(retry["id"])
    assert done["state"] == "failed"
    first_end = alice.ok("GET", f"/runs/{first['id']}")["finished_at"]
    from datetime import datetime

    gap = datetime.fromisoformat(done["started_at"]) - datetime.fromisoformat(first_end)
    assert gap.total_seconds() >= 2
    wait_for(lambda: len(Hooks.received) == 2, 30, what="two webhook calls")
    assert [h["run"] for h in Hooks.received] == [first["id"], retry["id"]]
    assert Hooks.received[0]["retry"] == retry["id"] and Hooks.received[1]["retry"] is None
    assert all(h["state"] == "failed" and h["job"] == "flaky" for h in Hooks.received)
    wait_for(lambda: len(mailbox.messages) >= 2, 30, what="two e-mails")
    assert "flaky" in mailbox.messages[0]["Subject"] and mailbox.messages[0]["To"] == "alice@example.org"
    assert "down" in mailbox.messages[0].get_payload()
    # No third attempt: max_retries is 1.
    assert len(alice.ok("GET", f"/jobs/{job['id']}/runs")["runs"]) == 2


def test_a_schedule_runs_on_time_once_per_slot(platform, people):
    alice = people["alice"]
    job = alice.job("ticker", notebook("x = n"), schedule="* * * * * */2", timezone="Europe/Paris")
    assert len(job["next_runs"]) == 3 and job["next_runs"][0].endswith("+01:00")
    wait_for(lambda: len([r for r in alice.ok("GET", f"/jobs/{job['id']}/runs")["runs"]
                          if r["state"] == "succeeded"]) >= 3, 90, what="three scheduled runs")
    alice.ok("PATCH", f"/jobs/{job['id']}", json={"paused": True})
    runs = alice.ok("GET", f"/jobs/{job['id']}/runs")["runs"]
    slots = [r["slot"] for r in runs]
    assert all(r["trigger"] == "schedule" for r in runs) and len(set(slots)) == len(slots)
    assert all(datetime_seconds(s) % 2 == 0 for s in slots)


def datetime_seconds(iso: str) -> int:
    from datetime import datetime

    return datetime.fromisoformat(iso).second


def test_who_sees_what(platform, people):
    alice, bob, viewer = people["alice"], people["bob"], people["viewer"]
    job = alice.job("private", notebook("import himalia.sdk as h\nh.record('kpi', 7)"))
    run = alice.ok("POST", f"/jobs/{job['id']}/runs", 201, json={})
    assert alice.wait(run["id"])["state"] == "succeeded"
    for path in (f"/jobs/{job['id']}", f"/runs/{run['id']}", f"/runs/{run['id']}/output",
                 f"/runs/{run['id']}/values", f"/jobs/{job['id']}/values/kpi"):
        assert bob.call("GET", path).status_code == 404, path
        assert viewer.call("GET", path).status_code == 404, path
    assert bob.call("POST", f"/jobs/{job['id']}/runs", json={}).status_code == 404
    assert bob.call("DELETE", f"/jobs/{job['id']}").status_code == 404
    assert job["id"] not in [j["id"] for j in bob.ok("GET", "/jobs")["jobs"]]
    r = viewer.call("POST", "/jobs", json={"name": "v", "notebook": notebook("x = 1")})
    assert r.status_code == 403 and "scientist" in r.json()["message"]
    r = requests.get(f"{platform.url}{API}/runs/{run['id']}", timeout=30)
    assert r.status_code == 401
    everyone = requests.get(f"{platform.url}{API}/jobs", timeout=30,
                            headers={"Authorization": f"token {platform.admin_token}"})
    assert job["id"] in [j["id"] for j in everyone.json()["jobs"]]  # an admin sees every job
    # Published: viewers read outputs and values, and still cannot run or change the job.
    alice.ok("PATCH", f"/jobs/{job['id']}", json={"published": True})
    assert viewer.ok("GET", f"/jobs/{job['id']}/values/kpi")["value"] == 7
    assert viewer.call("GET", f"/runs/{run['id']}/output").status_code == 200
    assert viewer.call("POST", f"/jobs/{job['id']}/runs", json={}).status_code == 403
    assert viewer.call("GET", f"/runs/{run['id']}/logs").status_code == 403
    assert bob.call("POST", f"/runs/{run['id']}/cancel").status_code == 404


def test_killing_the_runner_loses_nothing_and_runs_no_slot_twice(platform, people):
    """kill -9 the runner mid-run 20 times; its supervisor restarts it each time."""
    alice = people["alice"]
    account = platform.user_prefix + alice.name
    job = alice.job("crashy", notebook("import time\ntime.sleep(0.5 + rate)"), max_retries=30,
                    retry_backoff_seconds=0, schedule="* * * * * */3")
    kills, killed_mid_run = 0, 0
    for _ in range(20):
        runner = runner_process(platform)
        # A run this runner started (not one the killed runner left marked running).
        wait_for(lambda: any(r["state"] == "running" and r["id"] > killed_mid_run for r in
                             alice.ok("GET", f"/jobs/{job['id']}/runs", params={"limit": 5})["runs"]),
                 60, what="a running run")
        killed_mid_run = max(r["id"] for r in alice.ok("GET", f"/jobs/{job['id']}/runs",
                                                       params={"limit": 5})["runs"])
        os.kill(runner.pid, signal.SIGKILL)
        kills += 1
        wait_for(lambda: runner_process(platform).pid != runner.pid, 60, what="the runner to come back")
    # Paused: no new slots, no more retries; what was queued for a slot waits for a resume.
    alice.ok("PATCH", f"/jobs/{job['id']}", json={"paused": True, "max_retries": 0})
    wait_for(lambda: not any(r["state"] == "running" for r in
                             alice.ok("GET", f"/jobs/{job['id']}/runs", params={"limit": 500})["runs"]),
             120, what="every run to end")
    runs = alice.ok("GET", f"/jobs/{job['id']}/runs", params={"limit": 500})["runs"]
    assert all(r["state"] in ("succeeded", "failed", "timed_out", "cancelled")
               or (r["state"] == "queued" and r["trigger"] in ("schedule", "retry")) for r in runs)
    slots = [r["slot"] for r in runs if r["slot"]]
    assert kills == 20 and len(slots) == len(set(slots)), "a slot ran twice"
    failed_by_crash = [r for r in runs if "runner stopped" in r["reason"]]
    assert failed_by_crash, "no run was caught mid-run"
    definition = alice.ok("GET", f"/jobs/{job['id']}")
    assert definition["version"] == 1 and definition["parameters"]["rate"]["default"] == 0.5
    leftover = [k for k in kernels_of(platform, account)
                if k.ppid() not in (runner_process(platform).pid,)]
    assert leftover == [], [(k.ppid(), k.cmdline()) for k in leftover]
    print(f"crash test: {kills} kills, {len(runs)} runs, {len(failed_by_crash)} failed by a kill, "
          f"{len(slots)} slots each run once, {sum(r['trigger'] == 'retry' for r in runs)} retries, "
          f"{sum(r['state'] == 'queued' for r in runs)} left queued")


def test_rerun_is_exact_and_retention_removes_old_outputs(platform, people):
    from himalia.sdk import Client, Jobs

    alice = people["alice"]
    job = alice.job("exact", notebook("import himalia.sdk as h\nh.record('n', n)\n"
                                      "import pandas as pd\nh.record('rows', pd.DataFrame({'i': range(n)}))"),
                    keep_runs=1)
    first = alice.ok("POST", f"/jobs/{job['id']}/runs", 201, json={"parameters": {"n": 5}})
    assert alice.wait(first["id"])["state"] == "succeeded"
    assert alice.ok("PATCH", f"/jobs/{job['id']}", json={"parameters": {"n": 9}})["version"] == 2
    again = alice.ok("POST", f"/runs/{first['id']}/rerun", 201)
    assert again["version"] == 1 and again["parameters"] == {"n": 5} and again["trigger"] == "rerun"
    assert alice.wait(again["id"])["state"] == "succeeded"
    token = alice.headers["Authorization"].split()[1]
    jobs = Jobs(Client(f"{platform.url}/services/himalia/", token))
    assert jobs.latest("exact", "n") == 5
    assert list(jobs.latest("exact", "rows")["i"]) == [0, 1, 2, 3, 4]
    # keep_runs=1: the first run keeps its record, not its files.
    r = alice.call("GET", f"/runs/{first['id']}/output")
    assert r.status_code == 410 and "keep_runs" in r.json()["message"]
    assert alice.call("GET", f"/runs/{again['id']}/output").status_code == 200
    fresh = alice.ok("POST", f"/jobs/{job['id']}/runs", 201, json={})
    assert alice.wait(fresh["id"])["state"] == "succeeded"
    assert jobs.latest("exact", "n") == 9


def test_mlflow_runs_inside_a_job_are_tagged_with_the_job_run(platform, people):
    alice = people["alice"]
    job = alice.job("tracked", notebook(
        "from himalia.sdk import lineage\nimport mlflow\nrun = lineage.start_run('in-a-job')\n"
        "mlflow.log_metric('score', n * rate)\nmlflow.end_run()",
        "import himalia.sdk as h\nh.record('mlflow_run', run.info.run_id)"))
    run = alice.ok("POST", f"/jobs/{job['id']}/runs", 201, json={})
    assert alice.wait(run["id"])["state"] == "succeeded"
    mlflow_run = alice.ok("GET", f"/runs/{run['id']}/values")["values"]["mlflow_run"]["value"]
    r = requests.get(f"{platform.url}/services/mlflow/api/2.0/mlflow/runs/get", headers=alice.headers,
                     params={"run_id": mlflow_run}, timeout=30)
    assert r.status_code == 200, r.text
    data = r.json()["run"]
    tags = {t["key"]: t["value"] for t in data["data"]["tags"]}
    assert tags["himalia.job_run"] == str(run["id"])
    assert {m["key"]: m["value"] for m in data["data"]["metrics"]}["score"] == 1.5
    # In the owner's own experiment, logged with the run's token (revoked once it ended).
    experiment = requests.get(f"{platform.url}/services/mlflow/api/2.0/mlflow/experiments/get",
                              headers=alice.headers, params={"experiment_id": data["info"]["experiment_id"]},
                              timeout=30).json()["experiment"]
    assert experiment["name"] == f"users/{alice.name}"
