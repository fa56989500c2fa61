"""The ``himalia`` command: one module per verb group, each adding its subcommands here."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .._version import __version__
from .common import CLIError, free_port, port_free
from .platform import _migrate, _prepare_state, unreadable_by_others
from . import clusters, dashboards, deployments, features, jobs, labels, platform, users

__all__ = ["CLIError", "build_parser", "free_port", "main", "port_free", "_migrate",
           "_prepare_state", "unreadable_by_others"]

GROUPS = (platform, users, jobs, deployments, features, labels, dashboards, clusters)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="himalia", description="A Jupyter-centric ML platform.")
    parser.add_argument("--version", action="version", version=f"himalia {__version__}")
    parser.add_argument("--log-level", default="WARNING", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None, env: dict | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The environment is read here, at the edge, and handed to the commands.
    args.env = dict(os.environ if env is None else env)
    logging.basicConfig(level=args.log_level.upper(), format="[himalia] %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except CLIError as e:
        print(f"himalia: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
