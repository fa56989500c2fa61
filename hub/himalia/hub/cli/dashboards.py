"""``himalia dashboards ...``: dashboards from a terminal, through :class:`himalia.sdk.Dashboards`.

``list``, ``publish NAME NOTEBOOK`` (or ``--path`` in your home), ``share NAME --users a,b
--viewers``, ``unpublish NAME``, ``versions NAME``. Whose token: as for ``himalia jobs`` (see
:func:`.jobs.client_from`).
"""

from __future__ import annotations

import argparse
import json

from himalia.sdk import Dashboards
from himalia.sdk.dashboards import audience, freshness

from .common import CLIError
from .jobs import client_from, platform_errors, table, token_options


def _dashboards(args: argparse.Namespace) -> Dashboards:
    return Dashboards(client_from(args)[0])


def _words(value: str | None) -> list[str] | None:
    """A comma-separated option as a list; None when the option was not given."""
    if value is None:
        return None
    return [w.strip() for w in value.split(",") if w.strip()]


def _shown(dashboard: dict) -> str:
    return (f"{dashboard['name']} v{dashboard['version']} at {dashboard['url']}\n"
            f"shared with {audience(dashboard.get('share') or {})}; {freshness(dashboard)}")


def cmd_list(args: argparse.Namespace) -> int:
    with platform_errors():
        found = _dashboards(args).list(mine=args.mine)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print("No dashboards yet: himalia dashboards publish NAME NOTEBOOK.ipynb")
        return 0
    print(table(["NAME", "TITLE", "OWNER", "VERSION", "VIEWS", "DATA", "URL"],
                [[d["name"], d.get("title") or "", d["owner"], d["version"], d["views"],
                  freshness(d), d["url"]] for d in found]))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    if (args.notebook is None) == (args.path is None):
        raise CLIError("Give the notebook file to upload, or --path of one in your home folder "
                       "(one of them).")
    sharing = args.users is not None or args.groups is not None or args.viewers
    with platform_errors():
        dashboard = _dashboards(args).publish(
            args.name, args.notebook, path=args.path, title=args.title,
            description=args.description, job=args.job,
            share_users=(_words(args.users) or []) if sharing else None,
            share_groups=(_words(args.groups) or []) if sharing else None,
            viewers=bool(args.viewers) if sharing else None)
    print(f"Published {_shown(dashboard)}")
    return 0


def cmd_share(args: argparse.Namespace) -> int:
    if args.users is None and args.groups is None and args.viewers is None:
        raise CLIError("Say who may open it: --users, --groups, --viewers or --no-viewers.")
    with platform_errors():
        dashboard = _dashboards(args).share(args.name, _words(args.users), _words(args.groups),
                                            args.viewers)
    print(_shown(dashboard))
    return 0


def cmd_unpublish(args: argparse.Namespace) -> int:
    with platform_errors():
        _dashboards(args).unpublish(args.name)
    print(f"Unpublished {args.name}: its link no longer opens.")
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    with platform_errors():
        found = _dashboards(args).versions(args.name)
    print(table(["VERSION", "SHA256", "CREATED"],
                [[v["version"], v["sha256"][:12], v["created"]] for v in found]))
    return 0


def add_commands(sub) -> None:
    common = token_options()
    group = sub.add_parser("dashboards", help="dashboards: publish notebooks for viewers, share them")
    verbs = group.add_subparsers(dest="verb", metavar="VERB", required=True)

    listing = verbs.add_parser("list", parents=[common], help="the dashboards you may open")
    listing.add_argument("--mine", action="store_true", help="only yours")
    listing.add_argument("--json", action="store_true", help="print JSON for programs")
    listing.set_defaults(func=cmd_list)

    publish = verbs.add_parser("publish", parents=[common],
                               help="publish a notebook as a dashboard (again: its next version)")
    publish.add_argument("name", help="lowercase letters, digits and '-'")
    publish.add_argument("notebook", nargs="?", help="the .ipynb file to upload")
    publish.add_argument("--path", help="instead: a notebook in your home folder, read by the platform")
    publish.add_argument("--title", help="what the gallery calls it")
    publish.add_argument("--description", help="a line about it for the gallery")
    publish.add_argument("--job", help="the job (id or name) whose latest outputs it shows")
    publish.add_argument("--users", help="people who may open it, comma-separated")
    publish.add_argument("--groups", help="hub groups who may open it, comma-separated")
    publish.add_argument("--viewers", action="store_true",
                         help="everyone with the viewer role may open it")
    publish.set_defaults(func=cmd_publish)

    share = verbs.add_parser("share", parents=[common],
                             help="who may open it (a list given replaces that list)")
    share.add_argument("name")
    share.add_argument("--users", help="comma-separated; '' for nobody")
    share.add_argument("--groups", help="comma-separated; '' for none")
    share.add_argument("--viewers", action=argparse.BooleanOptionalAction, default=None,
                       help="open it to everyone with the viewer role, or not")
    share.set_defaults(func=cmd_share)

    unpublish = verbs.add_parser("unpublish", parents=[common], help="stop serving a dashboard")
    unpublish.add_argument("name")
    unpublish.set_defaults(func=cmd_unpublish)

    versions = verbs.add_parser("versions", parents=[common], help="a dashboard's publications")
    versions.add_argument("name")
    versions.set_defaults(func=cmd_versions)
