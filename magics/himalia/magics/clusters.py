"""``%cluster``: a Dask cluster from the notebook, through the platform's dask-gateway.

``client = %cluster start --workers 4`` (or ``--adapt 1:8``) starts one and returns a
``dask.distributed.Client`` connected to it; ``%cluster scale N``, ``status``, ``dashboard``
and ``stop`` act on this kernel's cluster. Clusters started here end with the kernel.
The gateway and its limits are the platform's (:mod:`himalia.sdk.clusters`).
"""

from __future__ import annotations

import argparse

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.display import HTML, display
from traitlets import Callable

from himalia.sdk import HimaliaError
from himalia.sdk.clusters import Clusters, kernel_client, parse_adapt, training_client, training_tags

from .base import HimaliaMagics, render

ACTIONS = ("start", "scale", "status", "stop", "dashboard", "list")


def cluster_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="%cluster", description="A Dask cluster through the platform.")
    sub = parser.add_subparsers(dest="action", metavar="|".join(ACTIONS))
    start = sub.add_parser("start", help="start a cluster; returns a dask.distributed.Client")
    start.add_argument("--workers", type=int, default=0, help="fixed number of workers")
    start.add_argument("--adapt", default=None, metavar="MIN:MAX", help="adaptive scaling between MIN and MAX")
    start.add_argument("--profile", default=None, help="worker profile (e.g. cpu, gpu)")
    scale = sub.add_parser("scale", help="scale this kernel's cluster to N workers")
    scale.add_argument("workers", type=int)
    for name, text in (("status", "this kernel's cluster: workers, cores, memory"),
                       ("dashboard", "the dashboard link (through the hub)"),
                       ("list", "your clusters, from any kernel"),
                       ("stop", "stop this kernel's cluster, or NAME")):
        p = sub.add_parser(name, help=text)
        if name == "stop":
            p.add_argument("name", nargs="?", default=None)
    parser.actions = sub.choices
    return parser


class _Parser:
    """``HimaliaMagics.parse`` wants ``magic.parser``; errors become UsageError."""

    def __init__(self):
        self.parser = cluster_parser()

    def parse(self, line: str) -> argparse.Namespace:
        import shlex

        try:
            return self.parser.parse_args(shlex.split(line))
        except SystemExit:
            raise UsageError(f"%cluster: cannot parse {line.strip()!r} (see %cluster --help)") from None


@magics_class
class ClusterMagics(HimaliaMagics):
    """Dask clusters; configurable as ``c.ClusterMagics``."""

    clusters_factory = Callable(
        Clusters, help="Callable returning a himalia.sdk.clusters.Clusters; default reads the kernel's environment.",
    ).tag(config=True)

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        #: This kernel's cluster (a ``dask_gateway.GatewayCluster``) and its client.
        self.current = None
        self.client = None

    def _clusters(self) -> Clusters:
        try:
            return self.clusters_factory()
        except HimaliaError as e:
            raise UsageError(f"%cluster: {e}") from None

    def _mine(self):
        if self.current is None or self.current.status == "closed":
            raise UsageError("%cluster: this kernel has no cluster: %cluster start --workers N")
        return self.current

    @line_magic
    def cluster(self, line: str = ""):
        """%cluster start [--workers N] [--adapt MIN:MAX] [--profile P] | scale N | status |
        dashboard | list | stop [NAME]: a Dask cluster through the platform."""
        parser = _Parser()
        words = line.split()
        if not words or words[0] in ("-h", "--help"):
            print(parser.parser.format_help().rstrip())
            return None
        if words[0] not in ACTIONS:
            raise UsageError(f"%cluster: unknown action {words[0]!r}; choose one of: {', '.join(ACTIONS)}")
        if "-h" in words or "--help" in words:
            print(parser.parser.actions[words[0]].format_help().rstrip())
            return None
        args = parser.parse(line)
        try:
            return getattr(self, f"_{args.action}")(args)
        except HimaliaError as e:
            raise UsageError(f"%cluster {args.action}: {e}") from None

    def _start(self, args):
        try:
            adapt = parse_adapt(args.adapt)
        except ValueError as e:
            raise UsageError(f"%cluster start: {e}") from None
        if args.workers < 0:
            raise UsageError(f"%cluster start: --workers must be 0 or more, got {args.workers}")
        if adapt and args.workers:
            raise UsageError("%cluster start: give --workers or --adapt, not both")
        clusters = self._clusters()
        cluster = clusters.start(workers=args.workers, adapt=adapt, profile=args.profile)
        try:
            client = cluster.get_client()
        except BaseException:
            cluster.shutdown()
            raise
        if self.current is not None and self.current.status != "closed":
            print(f"Note: this kernel's earlier cluster {self.current.name} keeps running "
                  "(%cluster stop NAME ends it).")
        self.current, self.client = cluster, client
        scaling = f"adaptive {adapt[0]}..{adapt[1]}" if adapt else f"{args.workers} worker(s)"
        display(HTML(f"Cluster <code>{cluster.name}</code>: {scaling}; "
                     f"<a href='{clusters.dashboard(cluster.name)}' target='_blank'>dashboard</a>"))
        return client

    def _scale(self, args):
        cluster = self._mine()
        if args.workers < 0:
            raise UsageError(f"%cluster scale: N must be 0 or more, got {args.workers}")
        Clusters.scale(cluster, args.workers)
        print(f"Cluster {cluster.name}: scaling to {args.workers} worker(s).")

    def _status(self, args):
        cluster = self._mine()
        info = self.client.scheduler_info(n_workers=-1) if self.client else {"workers": {}}
        workers = info.get("workers", {})
        cores = sum(w.get("nthreads", 0) for w in workers.values())
        memory = sum(w.get("memory_limit", 0) for w in workers.values()) / 2 ** 30
        print(f"Cluster {cluster.name}: {len(workers)} worker(s), {cores} thread(s), "
              f"{memory:.1f} GiB; dashboard {self._clusters().dashboard(cluster.name)}")

    def _dashboard(self, args):
        cluster = self._mine()
        link = self._clusters().dashboard(cluster.name)
        display(HTML(f"<a href='{link}' target='_blank'>{link}</a>"))
        return link

    def _list(self, args):
        reports = self._clusters().list()
        rows = [[r.name, r.status.name.lower(), r.start_time.isoformat(timespec="seconds")
                 if r.start_time else "-", r.options.get("profile", "")] for r in reports]
        if not rows:
            print("No clusters.")
            return None
        display(render("Your Dask clusters", ["name", "status", "started", "profile"], rows), raw=True)

    def _stop(self, args):
        if args.name:
            self._clusters().stop(args.name)
            if self.current is not None and self.current.name == args.name:
                self._forget()
            print(f"Cluster {args.name} stopped.")
            return None
        cluster = self._mine()
        name = cluster.name
        self._forget()
        cluster.shutdown()
        print(f"Cluster {name} stopped.")

    def _forget(self) -> None:
        if self.client is not None:
            self.client.close()
        self.current = self.client = None


def dask_training(shell, workers: int | None = None):
    """``(client, tags)`` for ``%train --on dask``: this kernel's gateway cluster (the one
    ``%cluster start`` or ``himalia.sdk.cluster`` made), else a new one that then becomes the
    kernel's cluster; ``tags`` describe it for the MLflow run."""
    magics = shell.magics_manager.registry.get("ClusterMagics") if shell is not None else None
    existing = kernel_client(magics.client if magics is not None else None)
    factory = magics.clusters_factory if magics is not None else Clusters
    try:
        clusters = factory()
        if existing is not None and existing.cluster.name not in {c.name for c in clusters.list()}:
            # Stopped meanwhile (idle, or from elsewhere): its client would wait forever.
            if magics is not None and magics.client is existing:
                magics._forget()
            existing = None
        client, started = training_client(existing, workers, clusters=clusters)
        tags = training_tags(client)
    except HimaliaError as e:
        raise UsageError(f"%train --on dask: {e}") from None
    if started:
        if magics is not None and (magics.current is None or magics.current.status == "closed"):
            magics.current, magics.client = client.cluster, client
        print(f"Started Dask cluster {client.cluster.name} with {tags['himalia.dask.workers']} "
              "worker(s); it stays for later runs (%cluster stop ends it).")
    return client, tags
