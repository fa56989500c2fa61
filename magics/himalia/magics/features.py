"""``%features``: the platform's feature store from a notebook.

``%features search WORDS``, ``%features describe VIEW`` (statistics, histograms, freshness),
``%features get REFS --key customer_id=1,2``, ``%%features define`` (run Feast definitions, show
the plan), ``%features plan`` / ``%features apply`` (what the last define made),
``%features materialize [VIEW ...] [--end TIME] [--schedule CRON]``.

The rules are the platform's, through :mod:`himalia.sdk.features`; this module parses and shows.
"""

from __future__ import annotations

from html import escape

from IPython.core.error import UsageError
from IPython.core.magic import line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Callable

from himalia.sdk import Client, HimaliaError
from himalia.sdk.features import parse_keys

from .base import HimaliaMagics, render
from .jobs import api_message

SUBCOMMANDS = ("search", "describe", "get", "define", "plan", "apply", "materialize")
STAT_HEADERS = ["feature", "type", "count", "nulls", "distinct", "mean", "std", "min", "max"]


def histogram_svg(histogram: dict, width: int = 160, height: int = 32) -> str:
    """A histogram as inline SVG bars, one per bin, heights relative to the fullest bin."""
    counts = histogram.get("counts") or []
    if not counts:
        return ""
    top = max(counts) or 1
    bar = width / len(counts)
    rects = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - height * c / top:.1f}" width="{max(bar - 1, 1):.1f}" '
        f'height="{height * c / top:.1f}"><title>{c}</title></rect>'
        for i, c in enumerate(counts))
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="histogram" '
            f'style="fill: var(--jp-brand-color1, #1976d2)">{rects}</svg>')


def _num(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def describe_bundle(view: dict) -> dict:
    """A view as text and HTML: what it is, its freshness, and a statistics table with a
    histogram per numeric feature."""
    fresh = view["freshness"]
    lines = [
        f"{view['name']} (owner {view['owner']}): {view['description'] or 'no description'}",
        f"entities {', '.join(view['entities'])}; join keys "
        f"{', '.join(k['name'] for k in view['join_keys'])}; TTL "
        f"{_ttl(view['ttl_seconds'])}; source {view['source']['path']}",
        f"{view['rows'] if view['rows'] is not None else '?'} rows, latest event "
        f"{fresh['latest_event'] or '-'}, online through {fresh['materialized_through'] or 'never'}",
    ]
    stats = view.get("statistics") or {}
    rows = []
    for f in view["features"]:
        s = stats.get(f["name"], {})
        rows.append([f["name"], f["dtype"], *(_num(s.get(k)) for k in STAT_HEADERS[2:])])
    table = render("\n".join(lines), STAT_HEADERS, rows)
    head = "".join(f"<th>{escape(h)}</th>" for h in [*STAT_HEADERS, "histogram"])
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row)
        + f"<td>{histogram_svg((stats.get(row[0]) or {}).get('histogram') or {})}</td></tr>"
        for row in rows)
    intro = "".join(f"<p>{escape(line)}</p>" for line in lines)
    return {"text/plain": table["text/plain"],
            "text/html": f"<div class='himalia-table'>{intro}<table><tr>{head}</tr>{body}</table></div>"}


def _ttl(seconds: float) -> str:
    if not seconds:
        return "none"
    days, rest = divmod(int(seconds), 86400)
    return f"{days}d" if not rest else f"{seconds:g}s"


@magics_class
class FeatureMagics(HimaliaMagics):
    """The feature store; configurable as ``c.FeatureMagics``."""

    client_factory = Callable(
        Client.from_env,
        help="Callable returning a himalia.sdk.Client; default reads the kernel's environment.",
    ).tag(config=True)

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self._store = None
        #: What the last ``%%features define`` made: the objects ``%features apply`` sends.
        self.pending: list = []

    def _features(self):
        from himalia.sdk.features import Features

        if self._store is None:
            try:
                self._store = Features(self.client_factory())
            except HimaliaError as e:
                raise UsageError(f"%features: {e}") from None
        return self._store

    @magic_arguments()
    @argument("command", choices=SUBCOMMANDS, help="what to do")
    @argument("words", nargs="*", help="search words; a view; feature refs; views to materialize")
    @argument("--key", action="append", default=[], metavar="JOIN_KEY=V1,V2",
              help="get: entity keys to look up (repeat for composite keys)")
    @argument("--end", metavar="TIME", help="materialize: up to this ISO 8601 time (default now)")
    @argument("--schedule", metavar="CRON", help="materialize: as a platform job on this schedule")
    @argument("--timezone", default="UTC", help="materialize --schedule: the schedule's time zone")
    @line_cell_magic
    def features(self, line: str = "", cell: str | None = None):
        """The feature store: %features search|describe|get|plan|apply|materialize, %%features define."""
        args = self.parse(self.features, line)
        if args is None:
            return None
        if (cell is None) == (args.command == "define"):
            raise UsageError("%features: 'define' is a cell magic (%%features define, then Feast "
                             "objects in the cell); the other commands are line magics")
        try:
            return getattr(self, f"_{args.command}")(args, cell)
        except HimaliaError as e:
            raise UsageError(f"%features {args.command}: {api_message(e)}") from None
        except ValueError as e:  # the engine's input errors say what to fix
            raise UsageError(f"%features {args.command}: {e}") from None

    def _search(self, args, cell):
        found = self._features().search(" ".join(args.words))
        if found.empty:
            print("No feature views match." if args.words else
                  "No feature views yet: define one with %%features define.")
            return None
        return found

    def _describe(self, args, cell):
        if len(args.words) != 1:
            raise UsageError("%features describe: name one feature view")
        display(describe_bundle(self._features().describe(args.words[0])), raw=True)
        return None

    def _get(self, args, cell):
        refs = [r for word in args.words for r in word.split(",") if r]
        if not refs or not args.key:
            raise UsageError("%features get: give feature refs and keys, e.g. %features get "
                             "customer_stats:ltv --key customer_id=1,2")
        return self._features().online(refs, parse_keys(args.key))

    def _define(self, args, cell):
        from feast import Entity, FeatureView

        before = {k: id(v) for k, v in self.shell.user_ns.items()}
        result = self.shell.run_cell(cell, store_history=False, silent=False)
        if not result.success:
            return None
        made = [v for k, v in self.shell.user_ns.items()
                if isinstance(v, (Entity, FeatureView)) and before.get(k) != id(v)]
        if not made:
            raise UsageError("%%features define: the cell made no feast.Entity or feast.FeatureView")
        self.pending = made
        print(f"Defined {', '.join(o.name for o in made)}; the plan:")
        self._show_plan(self._features().plan(made))
        print("Apply it with %features apply.")
        return None

    def _show_plan(self, plan: dict) -> None:
        rows = []
        for change in plan["changes"]:
            detail = "; ".join(f"{c['field']}: {c['before']} -> {c['after']}" for c in change["changes"])
            rows.append([change["action"], change["kind"].replace("_", " "), change["name"], detail])
        summary = plan["summary"]
        title = (f"{summary.get('add', 0)} to add, {summary.get('update', 0)} to change, "
                 f"{summary.get('unchanged', 0)} unchanged")
        display(render(title, ["action", "kind", "name", "changes"], rows), raw=True)

    def _pending(self, command: str) -> list:
        if not self.pending:
            raise UsageError(f"%features {command}: nothing defined yet: run a %%features define cell first")
        return self.pending

    def _plan(self, args, cell):
        self._show_plan(self._features().plan(self._pending("plan")))
        return None

    def _apply(self, args, cell):
        answer = self._features().apply(self._pending("apply"))
        self._show_plan(answer)
        print("Applied.")
        self.pending = []
        return None

    def _materialize(self, args, cell):
        features = self._features()
        views = args.words or None
        if args.schedule:
            made = features.materialize_job(schedule=args.schedule, timezone=args.timezone, views=views)
            print(f"Job {made['job']['name']} materializes {', '.join(views) if views else 'your views'} "
                  f"on '{args.schedule}' ({args.timezone}).")
            return None
        done = features.materialize(args.end, views)
        if not done:
            print("You own no feature views to materialize.")
        for m in done:
            print(f"{m['view']}: {m['rows']} entities online, events up to {m['end']} ({m['state']})")
        return None
