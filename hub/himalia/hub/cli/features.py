"""``himalia features ...``: the feature store from a terminal, through
:mod:`himalia.sdk.features`.

``list``/``search``, ``describe VIEW``, ``get REFS --key K=V,...``, ``plan FILE``/``apply FILE``
(a Python file defining Feast objects, run here as you), ``materialize [VIEW ...]`` (here, or as
a platform job with ``--job``/``--schedule``), ``delete VIEW``. Whose token: as for
``himalia jobs`` (see :func:`.jobs.client_from`); the admin token is no scientist's, so the
catalog needs a token of yours.
"""

from __future__ import annotations

import argparse
import json
import runpy
from pathlib import Path

from himalia.sdk.features import Features, parse_keys

from .common import CLIError
from .jobs import _one_line, client_from, platform_errors, table, token_options


def _features(args: argparse.Namespace) -> Features:
    client, _ = client_from(args)
    return Features(client)


def _definitions(path: str) -> list:
    """The Feast entities and feature views a Python file defines (run as a script, as you)."""
    from feast import Entity, FeatureView

    file = Path(path)
    if not file.is_file():
        raise CLIError(f"{path}: no such file; give a Python file that defines Feast objects")
    try:
        namespace = runpy.run_path(str(file), run_name="__himalia_features__")
    except Exception as e:
        raise CLIError(f"{path}: {type(e).__name__}: {_one_line(str(e))}") from None
    found = [v for v in namespace.values() if isinstance(v, (Entity, FeatureView))]
    if not found:
        raise CLIError(f"{path} defines no feast.Entity or feast.FeatureView")
    return found


def _plan_table(plan: dict) -> str:
    rows = [[c["action"], c["kind"].replace("_", " "), c["name"],
             _one_line("; ".join(f"{d['field']}: {d['before']} -> {d['after']}" for d in c["changes"]), 80)]
            for c in plan["changes"]]
    return table(["ACTION", "KIND", "NAME", "CHANGES"], rows)


def cmd_list(args: argparse.Namespace) -> int:
    features = _features(args)
    with platform_errors():
        catalog = features.catalog(" ".join(getattr(args, "words", []) or []))
    if args.json:
        print(json.dumps(catalog, indent=2, sort_keys=True))
        return 0
    views = catalog["views"]
    if not views:
        print("No feature views match." if getattr(args, "words", None) else
              "No feature views yet: define them in a notebook with %%features define.")
        return 0
    print(table(["VIEW", "OWNER", "ENTITIES", "FEATURES", "ROWS", "LATEST EVENT", "ONLINE THROUGH"],
                [[v["name"], v["owner"], ",".join(v["entities"]), len(v["features"]),
                  v["rows"] if v["rows"] is not None else "-",
                  (v["freshness"]["latest_event"] or "-")[:19],
                  (v["freshness"]["materialized_through"] or "never")[:19]] for v in views]))
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    features = _features(args)
    with platform_errors():
        view = features.describe(args.view)
    if args.json:
        print(json.dumps(view, indent=2, sort_keys=True))
        return 0
    fresh = view["freshness"]
    print(f"{view['name']} (owner {view['owner']}): {view['description'] or 'no description'}")
    print(f"  entities {', '.join(view['entities'])}; source {view['source']['path']}")
    print(f"  {view['rows']} rows; latest event {fresh['latest_event'] or '-'}; "
          f"online through {fresh['materialized_through'] or 'never'}")
    stats = view.get("statistics") or {}

    def num(value):
        return "" if value is None else (f"{value:.4g}" if isinstance(value, float) else value)

    print(table(["FEATURE", "TYPE", "COUNT", "NULLS", "MEAN", "STD", "MIN", "MAX"],
                [[f["name"], f["dtype"], *(num(stats.get(f["name"], {}).get(k))
                                           for k in ("count", "nulls", "mean", "std", "min", "max"))]
                 for f in view["features"]]))
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    try:
        keys = parse_keys(args.key)
    except ValueError as e:
        raise CLIError(str(e)) from None
    refs = [r for word in args.refs for r in word.split(",") if r]
    features = _features(args)
    with platform_errors():
        try:
            frame = features.online(refs, keys)
        except ValueError as e:
            raise CLIError(_one_line(str(e))) from None
    print(frame.to_json(orient="records") if args.json else frame.to_string(index=False))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    features = _features(args)
    objects = _definitions(args.file)
    with platform_errors():
        plan = features.plan(objects)
    print(_plan_table(plan))
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    features = _features(args)
    objects = _definitions(args.file)
    with platform_errors():
        result = features.apply(objects)
    print(_plan_table(result))
    summary = result["summary"]
    print(f"Applied: {summary.get('add', 0)} added, {summary.get('update', 0)} changed.")
    return 0


def cmd_materialize(args: argparse.Namespace) -> int:
    features = _features(args)
    views = args.views or None
    with platform_errors():
        if args.job or args.schedule:
            made = features.materialize_job(schedule=args.schedule, timezone=args.timezone, views=views)
            when = f"on '{args.schedule}' ({args.timezone})" if args.schedule else \
                f"now: run {made['run']['id']}"
            print(f"Job {made['job']['name']} materializes {', '.join(views) if views else 'your views'} {when}.")
            return 0
        done = features.materialize(args.end, views)
    for m in done:
        print(f"{m['view']}: {m['rows']} entities online, events up to {m['end']} ({m['state']})")
    if not done:
        print("You own no feature views to materialize.")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    features = _features(args)
    with platform_errors():
        features.delete(args.view)
    print(f"Deleted the feature view {args.view} and its online values.")
    return 0


def add_commands(sub) -> None:
    common = token_options()
    group = sub.add_parser("features", help="the feature store: catalog, definitions, online values")
    verbs = group.add_subparsers(dest="verb", metavar="VERB", required=True)

    listing = verbs.add_parser("list", parents=[common], help="the feature views")
    listing.add_argument("--json", action="store_true", help="print JSON for programs")
    listing.set_defaults(func=cmd_list)
    search = verbs.add_parser("search", parents=[common], help="feature views matching every word")
    search.add_argument("words", nargs="+", help="words in names, descriptions, owners, tags, features")
    search.add_argument("--json", action="store_true", help="print JSON for programs")
    search.set_defaults(func=cmd_list)
    describe = verbs.add_parser("describe", parents=[common], help="a view with statistics and freshness")
    describe.add_argument("view")
    describe.add_argument("--json", action="store_true", help="print JSON for programs")
    describe.set_defaults(func=cmd_describe)
    get = verbs.add_parser("get", parents=[common], help="online values for entity keys")
    get.add_argument("refs", nargs="+", help="feature refs VIEW:FEATURE (or comma-separated)")
    get.add_argument("--key", action="append", required=True, metavar="JOIN_KEY=V1,V2",
                     help="the keys to look up (repeat for composite keys)")
    get.add_argument("--json", action="store_true", help="print JSON records")
    get.set_defaults(func=cmd_get)
    for verb, func, text in (("plan", cmd_plan, "what applying a file of Feast definitions would change"),
                             ("apply", cmd_apply, "apply a file of Feast definitions (all or nothing)")):
        parser = verbs.add_parser(verb, parents=[common], help=text)
        parser.add_argument("file", help="a Python file defining feast.Entity and feast.FeatureView objects")
        parser.set_defaults(func=func)
    materialize = verbs.add_parser("materialize", parents=[common],
                                   help="load your views' latest values into the online store")
    materialize.add_argument("views", nargs="*", help="these views (default: all of yours)")
    materialize.add_argument("--end", metavar="TIME", help="up to this ISO 8601 time with a zone (default now)")
    materialize.add_argument("--job", action="store_true", help="as a platform job, now")
    materialize.add_argument("--schedule", metavar="CRON", help="as a platform job on this schedule")
    materialize.add_argument("--timezone", default="UTC", help="the schedule's time zone (default UTC)")
    materialize.set_defaults(func=cmd_materialize)
    delete = verbs.add_parser("delete", parents=[common], help="delete one of your views")
    delete.add_argument("view")
    delete.set_defaults(func=cmd_delete)
