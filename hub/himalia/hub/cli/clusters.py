"""``himalia clusters list|stop NAME``: your Dask clusters from a terminal, through
:class:`himalia.sdk.clusters.Clusters` (the token and platform of ``HIMALIA_API_URL`` and
``JUPYTERHUB_API_TOKEN``, as in a terminal of your JupyterLab)."""

from __future__ import annotations

import argparse

from himalia.sdk import HimaliaError
from himalia.sdk.clusters import Clusters

from .common import CLIError
from .jobs import table


def _clusters(args: argparse.Namespace) -> Clusters:
    try:
        return Clusters(env=args.env)
    except HimaliaError as e:
        raise CLIError(f"{e} (run this in a terminal of your JupyterLab)") from None


def cmd_list(args: argparse.Namespace) -> int:
    clusters = _clusters(args)
    try:
        reports = clusters.list()
    except HimaliaError as e:
        raise CLIError(str(e)) from None
    if not reports:
        print("No clusters.")
        return 0
    print(table(["NAME", "STATUS", "STARTED", "PROFILE", "DASHBOARD"],
                [[r.name, r.status.name.lower(),
                  r.start_time.isoformat(timespec="seconds") if r.start_time else "-",
                  r.options.get("profile", ""), clusters.dashboard(r.name)] for r in reports]))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    try:
        _clusters(args).stop(args.name)
    except HimaliaError as e:
        raise CLIError(str(e)) from None
    print(f"Cluster {args.name} stopped.")
    return 0


def add_commands(sub) -> None:
    group = sub.add_parser("clusters", help="your Dask clusters (dask-gateway)")
    verbs = group.add_subparsers(dest="clusters_command", metavar="list|stop")
    verbs.add_parser("list", help="your running and starting clusters").set_defaults(func=cmd_list)
    stop = verbs.add_parser("stop", help="stop one of your clusters")
    stop.add_argument("name")
    stop.set_defaults(func=cmd_stop)
    group.set_defaults(func=lambda args: (group.print_help(), 0)[1])
