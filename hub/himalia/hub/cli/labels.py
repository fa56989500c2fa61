"""``himalia labels ...``: label sets from a terminal, through :mod:`himalia.sdk.labels`.

``list``, ``status SET`` (progress per person, agreement), ``create NAME --classes a,b``,
``add SET FILE`` (a CSV/Parquet/JSONL of items, or image files), ``share SET --users a,b``,
``export SET --out labels.csv|.parquet|.jsonl`` (a frozen snapshot), ``snapshots SET``. Whose
token: as for ``himalia jobs`` (see :func:`.jobs.client_from`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from himalia.sdk import HimaliaError
from himalia.sdk.labels import EXPORT_FORMATS, LabelSet, Labels

from .common import CLIError
from .jobs import client_from, platform_errors, table, token_options

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"}


def _labels(args: argparse.Namespace) -> Labels:
    return Labels(client_from(args)[0])


def _set(args: argparse.Namespace) -> LabelSet:
    with platform_errors():
        return _labels(args).get(args.set)


def _words(value: str | None) -> list[str]:
    return [w.strip() for w in (value or "").split(",") if w.strip()]


def cmd_list(args: argparse.Namespace) -> int:
    with platform_errors():
        sets = _labels(args).list()
    if args.json:
        print(json.dumps([s.data for s in sets], indent=2))
        return 0
    if not sets:
        print("No label sets yet: himalia labels create NAME --classes a,b")
        return 0
    print(table(["ID", "NAME", "OWNER", "TASK", "K", "DONE", "LABELS"],
                [[s.id, s.name, s.data["owner"], s.data["task"], s.data["k"],
                  f"{s.data['progress']['done']}/{s.data['progress']['items']}",
                  s.data["progress"]["labels"]] for s in sets]))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    ls = _set(args)
    p = ls.data["progress"]
    print(f"{ls.name} (#{ls.id}, owner {ls.data['owner']}): {p['done']}/{p['items']} items done, "
          f"{p['labels']} labels, k={ls.data['k']}")
    if p["annotators"]:
        print(table(["ANNOTATOR", "LABELS"], sorted(p["annotators"].items())))
    try:
        a = ls.agreement()
    except HimaliaError as e:
        if e.status == 403:  # only its owner sees agreement
            return 0
        with platform_errors():
            raise
    if a["method"]:
        kappa = "n/a" if a["kappa"] is None else f"{a['kappa']:.3f}"
        print(f"agreement: {a['method']}'s kappa {kappa} over {a['items']} items")
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    classes = _words(args.classes)
    if not classes:
        raise CLIError("--classes: give the classes, comma-separated, e.g. --classes billing,bug")
    with platform_errors():
        ls = _labels(args).create(args.name, classes, k=args.k, task=args.task,
                                  instructions=args.instructions, users=_words(args.users),
                                  groups=_words(args.groups))
    print(f"Created label set {ls.name} (#{ls.id}).")
    return 0


def _read_items(path: Path):
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True)
    except (OSError, ValueError) as e:
        raise CLIError(f"{path}: cannot read it: {e}") from None
    raise CLIError(f"{path}: give a .csv, .parquet or .jsonl file of items, or image files")


def cmd_add(args: argparse.Namespace) -> int:
    ls = _set(args)
    paths = [Path(p) for p in args.files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise CLIError(f"No such file: {', '.join(missing)}")
    with platform_errors():
        if all(p.suffix.lower() in IMAGE_SUFFIXES for p in paths):
            added = ls.add(images=paths)
        elif len(paths) == 1:
            frame = _read_items(paths[0])
            if args.text or args.image:
                added = ls.add(frame, text=args.text, image=args.image, id=args.id)
            else:
                added = ls.add(rows=frame.drop(columns=[args.id]) if args.id else frame)
        else:
            raise CLIError("Give one table of items (.csv, .parquet, .jsonl) or image files")
    print(f"Added {added} items to {ls.name}.")
    return 0


def cmd_share(args: argparse.Namespace) -> int:
    ls = _set(args)
    with platform_errors():
        ls.share(_words(args.users), _words(args.groups))
    print(f"{ls.name} is labeled by {', '.join([ls.data['owner'], *ls.data['shared_users']])}"
          + (f" and the groups {', '.join(ls.data['shared_groups'])}" if ls.data["shared_groups"] else ""))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    ls = _set(args)
    out = args.out or f"{ls.name}.{args.format or 'csv'}"
    with platform_errors():
        path = ls.export(out, args.format, args.version)
    print(f"Wrote {path}")
    return 0


def cmd_snapshots(args: argparse.Namespace) -> int:
    ls = _set(args)
    with platform_errors():
        snaps = ls.snapshots()
    print(table(["VERSION", "ITEMS", "LABELS", "KAPPA", "SHA256", "CREATED"],
                [[s["version"], s["items"], s["annotations"], s["agreement"].get("kappa"),
                  s["sha256"][:12], s["created_at"]] for s in snaps]))
    return 0


def add_commands(sub) -> None:
    common = token_options()
    group = sub.add_parser("labels", help="label sets: create, add items, share, export labels")
    verbs = group.add_subparsers(dest="verb", metavar="VERB", required=True)

    listing = verbs.add_parser("list", parents=[common], help="label sets you own or label")
    listing.add_argument("--json", action="store_true", help="print JSON for programs")
    listing.set_defaults(func=cmd_list)
    status = verbs.add_parser("status", parents=[common], help="progress per person and agreement")
    status.add_argument("set", help="the set's id, or your set's name")
    status.set_defaults(func=cmd_status)
    create = verbs.add_parser("create", parents=[common], help="a new label set")
    create.add_argument("name")
    create.add_argument("--classes", required=True, help="the classes, comma-separated")
    create.add_argument("--k", type=int, default=1, help="different people per item (default 1)")
    create.add_argument("--task", choices=("single", "multi"), default="single")
    create.add_argument("--instructions", default="")
    create.add_argument("--users", help="who labels it too, comma-separated")
    create.add_argument("--groups", help="hub groups who label it too, comma-separated")
    create.set_defaults(func=cmd_create)
    add = verbs.add_parser("add", parents=[common], help="add items from a table or image files")
    add.add_argument("set")
    add.add_argument("files", nargs="+", help="a .csv/.parquet/.jsonl of items, or image files")
    add.add_argument("--text", metavar="COLUMN", help="the column of texts")
    add.add_argument("--image", metavar="COLUMN", help="the column of image paths")
    add.add_argument("--id", metavar="COLUMN", help="the column of item ids (default: row numbers)")
    add.set_defaults(func=cmd_add)
    share = verbs.add_parser("share", parents=[common], help="who labels the set (replaces the lists)")
    share.add_argument("set")
    share.add_argument("--users", help="comma-separated")
    share.add_argument("--groups", help="comma-separated")
    share.set_defaults(func=cmd_share)
    export = verbs.add_parser("export", parents=[common], help="the labels as CSV, Parquet or JSON Lines")
    export.add_argument("set")
    export.add_argument("--out", metavar="PATH", help="default: SET.csv")
    export.add_argument("--format", choices=EXPORT_FORMATS, help="default: from --out's suffix")
    export.add_argument("--version", type=int, help="this snapshot (default: a snapshot of the labels now)")
    export.set_defaults(func=cmd_export)
    snapshots = verbs.add_parser("snapshots", parents=[common], help="the set's frozen versions")
    snapshots.add_argument("set")
    snapshots.set_defaults(func=cmd_snapshots)
