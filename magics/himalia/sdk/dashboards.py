"""Dashboards from Python: publish a notebook for business viewers, share it, follow its views.

::

    from himalia.sdk import dashboards
    d = dashboards.publish("churn", "churn_report.ipynb", title="Churn this week",
                           job="nightly-churn", viewers=True)
    d["url"]                      # <hub>/services/dashboards/churn/

A dashboard is a snapshot of a notebook, rendered by Voilà at ``<hub>/services/dashboards/NAME/``
for the people it is shared with (users, hub groups, or everyone with the viewer role); they see
its outputs and widgets, never its code. Publishing again under the same name makes a new
version. With a linked job, the notebook reads that job's newest successful values with
:func:`himalia.sdk.latest`, and the gallery shows when they were made.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .client import Client, HimaliaError
from .jobs import _notebook_json

#: Dashboards per request when listing.
PAGE = 100
#: ``update(job=...)`` leaves the linked job as it is unless given.
KEEP = object()


def share_body(users: Iterable[str] | None, groups: Iterable[str] | None,
               viewers: bool | None, current: dict | None = None) -> dict:
    """The ``share`` field of a request: what is given replaces, what is None stays as in
    ``current`` (a dashboard's ``share``), else empty."""
    current = current or {}
    return {"users": list(current.get("users", [])) if users is None else list(users),
            "groups": list(current.get("groups", [])) if groups is None else list(groups),
            "viewers": bool(current.get("viewers", False)) if viewers is None else bool(viewers)}


def job_ref(job: str | int | None) -> str | int | None:
    """A job as the API takes it: its id as a number, or its name."""
    if isinstance(job, str) and job.strip().isdigit():
        return int(job)
    return job


def freshness(dashboard: dict) -> str:
    """When the data it shows was made: its linked job's last successful run."""
    fresh = dashboard.get("freshness") or {}
    if fresh.get("finished_at"):
        try:
            when = datetime.fromisoformat(fresh["finished_at"]).astimezone(timezone.utc)
            made = when.strftime("%Y-%m-%d %H:%M UTC")
        except (TypeError, ValueError):
            made = str(fresh["finished_at"])
        return f"data from {made} (run {fresh.get('run_id')})"
    return "no successful run yet" if dashboard.get("job_id") is not None else "no linked job"


def audience(share: dict) -> str:
    """Who may open it, in words."""
    parts = []
    if share.get("viewers"):
        parts.append("everyone with the viewer role")
    if share.get("users"):
        parts.append("users " + ", ".join(share["users"]))
    if share.get("groups"):
        parts.append("groups " + ", ".join(share["groups"]))
    return "; ".join(parts) or "only you"


class Dashboards:
    """``/api/v1/dashboards`` through a :class:`Client`."""

    def __init__(self, client: Client | None = None):
        self.client = client or Client.from_env()

    def publish(self, name: str, notebook: dict | str | Path | None = None, *,
                path: str | None = None, title: str | None = None,
                description: str | None = None, job: str | int | None = None,
                share_users: Iterable[str] | None = None,
                share_groups: Iterable[str] | None = None,
                viewers: bool | None = None) -> dict:
        """Publish ``notebook`` (its JSON, or a local ``.ipynb`` read here) or ``path`` (a
        notebook in your home folder, read by the platform) as dashboard ``name``; publishing
        your own name again makes its next version. ``job``: the job (id or name) whose outputs
        it shows. ``share_users``/``share_groups``/``viewers`` (everyone with the viewer role):
        who may open it. Returns the dashboard, ``url`` included."""
        if (notebook is None) == (path is None):
            raise HimaliaError("Give the notebook (its JSON or a local file) or its path in your "
                               "home folder, not both.")
        body: dict[str, Any] = {"name": name}
        if notebook is not None:
            body["notebook"] = _notebook_json(notebook)
        else:
            body["path"] = path
        for key, value in (("title", title), ("description", description), ("job_id", job_ref(job))):
            if value is not None:
                body[key] = value
        if share_users is not None or share_groups is not None or viewers is not None:
            body["share"] = share_body(share_users, share_groups, viewers)
        return self.client.request("POST", "dashboards", json=body)

    def list(self, mine: bool = False) -> list[dict]:
        """The dashboards you may open (``mine``: only yours), every page of them."""
        found: list[dict] = []
        while True:
            page = self.client.request("GET", "dashboards", params={
                "offset": len(found), "limit": PAGE, "mine": "true" if mine else "false"})["dashboards"]
            found += page
            if len(page) < PAGE:
                return found

    def get(self, name: str) -> dict:
        return self.client.request("GET", f"dashboards/{name}")

    def update(self, name: str, *, title: str | None = None, description: str | None = None,
               job: Any = KEEP, share: dict | None = None) -> dict:
        """Change the title, the description, the linked job (``job=None`` unlinks it) or the
        whole ``share`` (``{"users", "groups", "viewers"}``; see :meth:`share` to change part)."""
        body: dict[str, Any] = {k: v for k, v in (("title", title), ("description", description),
                                                  ("share", share)) if v is not None}
        if job is not KEEP:
            body["job_id"] = job_ref(job)
        return self.client.request("PATCH", f"dashboards/{name}", json=body)

    def share(self, name: str, users: Iterable[str] | None = None,
              groups: Iterable[str] | None = None, viewers: bool | None = None) -> dict:
        """Who may open it: ``users`` and ``groups`` replace those lists, ``viewers`` opens it
        to (or closes it for) everyone with the viewer role; what is None stays as it is."""
        current = None
        if users is None or groups is None or viewers is None:
            current = self.get(name)["share"]
        return self.client.request("PATCH", f"dashboards/{name}",
                                   json={"share": share_body(users, groups, viewers, current)})

    def unpublish(self, name: str) -> None:
        """Stop serving it; its link answers 404 from now on."""
        self.client.request("DELETE", f"dashboards/{name}")

    def versions(self, name: str) -> list[dict]:
        """``[{"version", "sha256", "created"}]``, one per publication, newest first."""
        return self.client.request("GET", f"dashboards/{name}/versions")["versions"]


def publish(name: str, notebook: dict | str | Path | None = None, *, client: Client | None = None,
            **kwargs: Any) -> dict:
    """:meth:`Dashboards.publish` with the kernel's own client."""
    return Dashboards(client).publish(name, notebook, **kwargs)


def unpublish(name: str, client: Client | None = None) -> None:
    Dashboards(client).unpublish(name)


def list_dashboards(mine: bool = False, client: Client | None = None) -> list[dict]:
    return Dashboards(client).list(mine)
