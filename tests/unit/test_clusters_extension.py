"""The Dask panel's server side as data: how a gateway's cluster report is listed. The route
itself runs against the real gateway in tests/ui/test_clusters_panel.py."""

from __future__ import annotations

from datetime import datetime, timezone

from dask_gateway.client import ClusterReport, ClusterStatus

from himalia.extension.clusters import describe


def test_a_cluster_is_listed_with_its_dashboard_path_on_the_hub():
    started = datetime(2031, 3, 3, 2, 0, tzinfo=timezone.utc)
    report = ClusterReport("abc123", {"profile": "cpu", "workers": 2, "worker_cores": 0},
                           ClusterStatus.RUNNING, "gateway://h:1/abc123", None,
                           started.astimezone().replace(tzinfo=None), None)
    assert describe(report, "/services/dask-gateway") == {
        "name": "abc123", "status": "running", "started": "2031-03-03T02:00:00+00:00",
        "profile": "cpu", "workers": 2, "dashboard": "/services/dask-gateway/clusters/abc123/status"}
    pending = ClusterReport("p", {}, ClusterStatus.PENDING, None, None, None, None)
    assert describe(pending, "/x") == {"name": "p", "status": "pending", "started": None, "profile": "",
                                      "workers": 0, "dashboard": "/x/clusters/p/status"}
