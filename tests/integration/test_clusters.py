"""Dask clusters on the real platform: the dask-gateway server that ``himalia up`` starts, a
scientist's ``%cluster`` in a real himalia kernel, limits, other people kept out, the dashboard
through the hub, and clusters that end with idleness, a killed kernel or a shut-down kernel."""

from __future__ import annotations

import json
import os
import signal

import nbformat
import pytest
import requests

from himalia.sdk import HimaliaError
from himalia.sdk.clusters import Clusters
from himalia_testing import Kernel, Person, Platform, free_port, wait_for
from integration.test_features import Scientist

pytestmark = pytest.mark.timeout(600)
IDLE_SECONDS = 15
ORPHAN_SECONDS = 5


@pytest.fixture(scope="module")
def platform(proxy_bin):
    p = Platform(None, proxy_bin)
    p.write_config(cluster_idle_timeout=IDLE_SECONDS, cluster_orphan_timeout=ORPHAN_SECONDS,
                   cluster_max_cores=2, cluster_max_clusters=1, cluster_worker_memory="1G")
    try:
        p.start()
        yield p
    finally:
        p.close()


@pytest.fixture(scope="module")
def ada(platform, unique_name_module):
    person = Scientist(platform, unique_name_module("ca"))
    yield person
    person.kernel.close()


@pytest.fixture(scope="module")
def bob(platform, unique_name_module):
    return Person(platform, unique_name_module("cb"), "scientist")


def gateway(platform, person) -> Clusters:
    return Clusters(f"{platform.url}/services/dask-gateway", person.token)


def usage_error(person, code: str) -> str:
    """The UsageError line a magic printed (IPython shows it without a traceback)."""
    out = person.kernel.execute(code, timeout=120)
    lines = [l for l in (out["stdout"] + (out["error"] or "")).splitlines() if l.startswith("UsageError")]
    assert lines, out
    return lines[-1]


def names(platform, person) -> set[str]:
    return {c.name for c in gateway(platform, person).list()}


@pytest.fixture(scope="module")
def started(ada):
    """Ada's cluster, started with %cluster in her kernel and kept for the tests that need it."""
    out = ada.run("""
client = %cluster start --workers 2
client.wait_for_workers(2, timeout=120)
print("cluster", client.cluster.name, len(client.scheduler_info()["workers"]))
""", timeout=240)
    name = out.split("cluster ")[-1].split()[0]
    assert out.strip().endswith(" 2"), out
    return name


def test_a_cluster_from_a_kernel_aggregates_as_pandas_does(ada, started):
    out = ada.run("""
import numpy as np, pandas as pd, dask.dataframe as dd
rng = np.random.default_rng(0)
frame = pd.DataFrame({"key": rng.integers(0, 20, 50_000), "value": rng.normal(size=50_000)})
expected = frame.groupby("key")["value"].agg(["sum", "mean", "count"])
got = dd.from_pandas(frame, npartitions=8).groupby("key")["value"].agg(["sum", "mean", "count"]).compute()
pd.testing.assert_frame_equal(got.sort_index(), expected, check_exact=False)
print("workers ran", sorted(client.run(lambda: __import__("getpass").getuser()).values()))
""")
    # The workers run as Ada's own Unix account (the platform runs as root with system users).
    assert f"workers ran ['{ada.platform.user_prefix}{ada.name}', '{ada.platform.user_prefix}{ada.name}']" in out, out


def test_status_scale_and_dashboard_magics(ada, started):
    out = ada.run("%cluster status\nlink = %cluster dashboard\nprint('link', link)")
    assert f"Cluster {started}: 2 worker(s)" in out
    assert f"/services/dask-gateway/clusters/{started}/status" in out


def test_train_on_dask_runs_a_grid_search_on_the_cluster_and_logs_it(ada, started):
    out = ada.run("""
import json, mlflow, numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from distributed import get_task_stream
from himalia.sdk import tracking
rng = np.random.default_rng(0)
frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
frame["y"] = (frame["a"] + rng.normal(scale=0.5, size=300) > 0).astype(int)
search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0, 10.0]}, cv=3)
client.submit(sum, [1, 2]).result()  # work restarts the idle clock: the imports may take longer
with get_task_stream(client) as log:
    model = %train search frame --target y --on dask --name on-dask
run = mlflow.get_run(tracking.last_run_id())
stream = log.data
print("RESULT", json.dumps({
    "params": run.data.params, "metrics": run.data.metrics, "tags": run.data.tags,
    "best_C": model.best_params_["C"],
    "workers": sorted(client.scheduler_info(n_workers=-1)["workers"]),
    "keys": sorted({str(t["key"]).split("-")[0] for t in stream}),
    "fits": sorted({t["worker"] for t in stream if "fit_and_score" in str(t["key"])})}))
""", timeout=300)
    result = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    assert result["params"]["himalia.target"] == "y" and result["params"]["param_grid"]
    assert 0.5 < result["metrics"]["accuracy"] <= 1 and result["best_C"] in (0.1, 1.0, 10.0)
    tags = result["tags"]
    assert (tags["himalia.parallel"], tags["himalia.dask.cluster"], tags["himalia.dask.workers"]) == \
        ("dask", started, "2")
    # The scheduler's task log: the search's fits ran on the cluster's workers.
    assert result["fits"] and set(result["fits"]) <= set(result["workers"]), result


def test_the_dashboard_is_reachable_through_the_hub_by_its_owner_only(platform, ada, bob, started):
    url = f"{platform.url}/services/dask-gateway/clusters/{started}/status"
    mine = requests.get(url, headers={"Authorization": f"token {ada.token}"}, timeout=60)
    assert mine.status_code == 200 and "bokeh" in mine.text.lower(), mine.text[:300]
    theirs = requests.get(url, headers={"Authorization": f"token {bob.token}"}, timeout=60)
    assert theirs.status_code == 404 and theirs.json()["message"] == f"No cluster {started} of yours."
    nobody = requests.get(url, timeout=60)
    assert nobody.status_code == 401


def test_another_person_cannot_list_connect_to_or_stop_the_cluster(platform, bob, ada, started):
    theirs = gateway(platform, bob)
    assert started not in {c.name for c in theirs.list()}
    with pytest.raises(HimaliaError, match="not yours"):
        theirs.connect(started)
    with pytest.raises(HimaliaError, match="not yours"):
        theirs.stop(started)
    assert started in names(platform, ada)


def test_limits_refuse_clearly_and_leave_nothing_started(platform, ada, started):
    too_many = usage_error(ada, "%cluster start --workers 5")
    assert "5 workers" in too_many and "ask for at most 2" in too_many, too_many
    second = usage_error(ada, "%cluster start --workers 1")
    assert "you already have 1 cluster(s) running" in second, second
    unknown = usage_error(ada, "%cluster start --profile huge")
    assert "unknown profile 'huge'" in unknown and "cpu" in unknown
    assert names(platform, ada) == {started}


def test_stop_ends_the_cluster(platform, ada, started):
    out = ada.run("%cluster stop")
    assert f"Cluster {started} stopped." in out
    wait_for(lambda: started not in names(platform, ada), 60, what="the stopped cluster to go")


def test_an_adaptive_cluster_starts_a_worker_for_work_and_none_before(platform, ada):
    mine = gateway(platform, ada)
    cluster = mine.start(adapt=(0, 1))
    client = cluster.get_client()
    try:
        assert cluster.name in names(platform, ada)
        # Nothing to do: no worker is asked for (adaptive with a minimum of 0).
        assert client.scheduler_info()["workers"] == {}
        # Work makes the scheduler ask the gateway for one, which then runs it.
        assert client.submit(sum, [40, 2]).result(timeout=180) == 42
        assert len(client.scheduler_info()["workers"]) == 1
    finally:
        client.close()
        cluster.shutdown()
    wait_for(lambda: cluster.name not in names(platform, ada), 60, what="the adaptive cluster to go")


def test_an_idle_cluster_shuts_itself_down(platform, ada):
    mine = gateway(platform, ada)
    cluster = mine.start(workers=1)
    client = cluster.get_client()
    try:
        # A connected client keeps no cluster alive: only work does.
        wait_for(lambda: cluster.name not in names(platform, ada), IDLE_SECONDS + 60,
                 what="the idle cluster to shut down")
    finally:
        client.close()
        cluster.close()


def test_a_killed_kernel_leaves_no_cluster(platform, ada):
    with Kernel(ada.kernel.server_url, ada.token) as kernel:
        out = kernel.execute("import os\nclient = %cluster start\nprint('pid', os.getpid(), client.cluster.name)",
                             timeout=180)
        assert out["error"] is None, out
        pid, name = out["stdout"].split("pid ")[-1].split()[:2]
        assert name in names(platform, ada)
        os.kill(int(pid), signal.SIGKILL)
        wait_for(lambda: name not in names(platform, ada), ORPHAN_SECONDS + 60,
                 what="the killed kernel's cluster to go")


def test_a_kernel_that_shuts_down_closes_its_cluster(platform, ada):
    kernel = Kernel(ada.kernel.server_url, ada.token)
    out = kernel.execute("client = %cluster start\nprint('name', client.cluster.name)", timeout=180)
    assert out["error"] is None, out
    name = out["stdout"].split("name ")[-1].split()[0]
    kernel.close()
    # Well before the idle or orphan timeouts could.
    wait_for(lambda: name not in names(platform, ada), ORPHAN_SECONDS, what="the cluster to close with its kernel")


def test_a_gateway_that_is_down_gives_a_clear_message(ada):
    down = usage_error(ada, f"""
import os
os.environ["HIMALIA_GATEWAY_URL"] = "http://127.0.0.1:{free_port()}/services/dask-gateway"
try:
    %cluster start --workers 1
finally:
    del os.environ["HIMALIA_GATEWAY_URL"]
""")
    assert "is not answering" in down and "is the platform running?" in down, down


def test_a_cluster_started_in_a_job_run_ends_with_the_run(platform, bob):
    from himalia.sdk import Client
    from himalia.sdk.jobs import Jobs

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import himalia.sdk as h\nclient = h.cluster(workers=1)\nclient.wait_for_workers(1, timeout=120)\n"
        "h.record('cluster', client.cluster.name)")]
    nb.metadata["kernelspec"] = {"name": "himalia", "display_name": "Python 3 (himalia)", "language": "python"}
    jobs = Jobs(Client(f"{platform.url}/services/himalia/", bob.token, timeout=60))
    job = jobs.create("with-a-cluster", notebook=json.loads(nbformat.writes(nb)))
    run = jobs.wait(jobs.run(job["id"])["id"], timeout=300)
    assert run["state"] == "succeeded", run
    name = jobs.latest(job["id"], "cluster")
    # Stopped by the runner as the run ends, before the orphan timeout could.
    wait_for(lambda: name not in names(platform, bob), ORPHAN_SECONDS / 2, what="the run's cluster to go")
