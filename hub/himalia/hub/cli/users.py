"""``himalia users ...``: invite people (single-use links that set a password), revoke
invitations, and change platform roles."""

from __future__ import annotations

import argparse

import httpx

from ..config import ROLES
from .common import CLIError, Running, error_message


def _call(running: Running, method: str, path: str, **kwargs) -> httpx.Response:
    try:
        with running.hub_client() as client:
            response = client.request(method, path, **kwargs)
    except httpx.HTTPError as e:
        raise CLIError(f"the hub at {running.hub_api} does not answer ({type(e).__name__}): is "
                       "himalia up running?") from e
    if response.status_code >= 400:
        raise CLIError(error_message(response))
    return response


def cmd_invite(args: argparse.Namespace) -> int:
    running = Running.load(args.state_dir)
    body = {"username": args.name}
    if args.role:
        body["role"] = args.role
    if args.expires_in:
        body["expires_in"] = args.expires_in
    invitation = _call(running, "POST", "/invitations", json=body).json()
    public = running.runtime.get("url", "").rstrip("/")
    print(f"Invitation for {invitation['username']} ({invitation['role']}), single use, valid "
          f"until {invitation['expires_at']}:")
    print(f"{public}{invitation['url']}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    running = Running.load(args.state_dir)
    _call(running, "DELETE", f"/invitations/{args.name}")
    print(f"Revoked the pending invitation of {args.name}.")
    return 0


def cmd_role(args: argparse.Namespace) -> int:
    running = Running.load(args.state_dir)
    role = None if args.role == "none" else args.role
    _call(running, "PUT", f"/users/{args.name}/role", json={"role": role})
    print(f"{args.name} is now a {role}." if role else f"{args.name} has no platform role now.")
    return 0


def add_commands(sub) -> None:
    users = sub.add_parser("users", help="invite people and manage invitations")
    verbs = users.add_subparsers(dest="verb", metavar="VERB", required=True)

    invite = verbs.add_parser(
        "invite", help="make a single-use, expiring link with which a person sets their password "
                       "(also resets a forgotten or expired one)")
    invite.add_argument("name", help="hub user name")
    invite.add_argument("--role", choices=ROLES,
                        help="platform role (default: the person's current role, or the default role)")
    invite.add_argument("--expires-in", type=int, metavar="SECONDS",
                        help="validity in seconds (default: the hub's invitation lifetime, 7 days)")
    invite.add_argument("--state-dir", default=".himalia", help="state directory (default ./.himalia)")
    invite.set_defaults(func=cmd_invite)

    role = verbs.add_parser("role", help="give a person a platform role (none: take it away)")
    role.add_argument("name", help="hub user name")
    role.add_argument("role", choices=[*ROLES, "none"], help="the new role")
    role.add_argument("--state-dir", default=".himalia", help="state directory (default ./.himalia)")
    role.set_defaults(func=cmd_role)

    revoke = verbs.add_parser("revoke", help="revoke a person's pending invitation")
    revoke.add_argument("name", help="hub user name")
    revoke.add_argument("--state-dir", default=".himalia", help="state directory (default ./.himalia)")
    revoke.set_defaults(func=cmd_revoke)
