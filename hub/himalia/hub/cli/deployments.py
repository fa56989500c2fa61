"""``himalia deploy|promote|rollback|undeploy|deployments|logs|deploy-key``: model deployments from
a terminal, through :class:`himalia.sdk.Deployments`.

Whose token: as for ``himalia jobs`` (see :func:`.jobs.client_from`). ``himalia status NAME``
(platform.py) shows one deployment as ``himalia deployments NAME`` does.
"""

from __future__ import annotations

import argparse
import json
import sys

from himalia.sdk import Deployments, HimaliaError
from himalia.sdk.deployments import DeploymentFailed, models_base_url

from .common import CLIError, Running
from .jobs import DEFAULT_STATE_DIR, _one_line, client_from, platform_errors, table, token_options

#: Seconds between two looks at a deploying version.
WAIT_INTERVAL = 1.0


def _deployments(args: argparse.Namespace) -> tuple[Deployments, bool]:
    """The SDK and whether it holds the admin token. With the admin token the models' address is
    the platform's public one from ``runtime.json`` (the API's own port serves no models)."""
    client, admin = client_from(args)
    if admin:
        runtime = Running.load(args.state_dir or DEFAULT_STATE_DIR).runtime
        base = runtime.get("url") or runtime.get("local_url") or ""
        return Deployments(client, models_url=f"{base.rstrip('/')}/models/"), True
    try:
        return Deployments(client, models_url=models_base_url(client.api_url, args.env)), False
    except HimaliaError as e:
        raise CLIError(str(e)) from None


def versions_table(versions: list[dict]) -> str:
    return table(["VERSION", "STATE", "TRAFFIC", "REPLICAS", "MODEL", "CREATED BY", "REASON"],
                 [[v["version"], v["state"], f"{v['traffic']}%", v["replicas"], v["model_uri"],
                   v.get("created_by"), _one_line(v.get("reason"), 60)] for v in versions])


def describe(deployment: dict, url: str) -> str:
    shared = ", ".join(deployment.get("shared_with") or []) or "nobody"
    return (f"Deployment {deployment['name']} (owner {deployment['owner']}, {deployment['health']}; "
            f"shared with {shared})\n  POST {url}\n" + versions_table(deployment["versions"]))


def traffic(deployment: dict) -> str:
    live = [v for v in deployment["versions"] if v["traffic"]]
    return ", ".join(f"v{v['version']} {v['traffic']}%" for v in live) or "none"


def follow(deployments: Deployments, name: str, number: int) -> dict:
    """Show the version's state and the time spent until it settles; a failure is a one-line
    :class:`CLIError` with its reason."""
    from tqdm import tqdm

    bar = tqdm(total=None, file=sys.stderr, bar_format="{desc} [{elapsed}]")

    def show(version: dict) -> None:
        bar.set_description_str(f"{name} version {number}: {version['state']}")

    try:
        with platform_errors():
            try:
                return deployments.wait(name, number, timeout=float("inf"), poll=WAIT_INTERVAL,
                                        on_progress=show)
            except DeploymentFailed as e:
                raise CLIError(f"{_one_line(str(e))} (himalia logs {name} --version {number})") from None
    except KeyboardInterrupt:
        print(f"Stopped waiting; version {number} goes on (himalia deployments {name} shows it).",
              file=sys.stderr)
        raise
    finally:
        bar.close()


# -- commands ----------------------------------------------------------------------------------
def cmd_deploy(args: argparse.Namespace) -> int:
    deployments, admin = _deployments(args)
    if admin:
        raise CLIError("a deployment belongs to the person who makes it, and the admin token is no "
                       "person's: run this in a terminal of your JupyterLab, or set "
                       "HIMALIA_API_URL and JUPYTERHUB_API_TOKEN (a token of yours)")
    with platform_errors():
        answer = deployments.deploy(args.name, args.model, canary_percent=args.canary,
                                    replicas=args.replicas,
                                    features=[r for r in (args.features or "").split(",") if r] or None,
                                    allow_skew=args.allow_skew)
    name, version = answer["deployment"]["name"], answer["version"]
    print(f"{name} version {version['version']} ({args.model}): {version['state']}")
    if not args.wait:
        print(f"Follow it with 'himalia deployments {name}'.")
        return 0
    version = follow(deployments, name, version["version"])
    if version["state"] == "retired":
        print(f"{name} version {version['version']} was retired before it served.")
        return 0
    print(f"{name} version {version['version']} serves {version['traffic']}% of the traffic: "
          f"POST {deployments.url(name)}")
    return 0


def _changed(args: argparse.Namespace, verb: str) -> int:
    deployments, _ = _deployments(args)
    with platform_errors():
        deployment = getattr(deployments, verb)(args.name)
    print(f"{deployment['name']}: traffic {traffic(deployment)}.")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    return _changed(args, "promote")


def cmd_rollback(args: argparse.Namespace) -> int:
    return _changed(args, "rollback")


def cmd_undeploy(args: argparse.Namespace) -> int:
    deployments, _ = _deployments(args)
    with platform_errors():
        deployments.delete(args.name)
    print(f"Undeployed {args.name}: its versions are stopped and its URL answers no more.")
    return 0


def cmd_deployments(args: argparse.Namespace) -> int:
    deployments, _ = _deployments(args)
    with platform_errors():
        found = deployments.get(args.name) if args.name else deployments.list(limit=args.limit)
    if args.json:
        print(json.dumps(found, indent=2, sort_keys=True))
    elif args.name:
        print(describe(found, deployments.url(found["name"])))
    elif not found:
        print("No deployments yet: make one with 'himalia deploy NAME --model URI'.")
    else:
        print(table(["NAME", "OWNER", "HEALTH", "TRAFFIC", "URL"],
                    [[d["name"], d["owner"], d["health"], traffic(d), d["url"]] for d in found]))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    deployments, _ = _deployments(args)
    with platform_errors():
        text = deployments.logs(args.name, version=args.version, lines=args.lines)
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return 0


def cmd_key_create(args: argparse.Namespace) -> int:
    deployments, _ = _deployments(args)
    with platform_errors():
        key = deployments.create_key(args.name, args.label)
    print(key["key"])
    print(f"Key {key['id']} ({key['prefix']}, {key['label']}) for {args.name}: it is shown only "
          "now; callers send it as 'Authorization: Bearer KEY'.", file=sys.stderr)
    return 0


def cmd_key_list(args: argparse.Namespace) -> int:
    deployments, _ = _deployments(args)
    with platform_errors():
        keys = deployments.keys(args.name)
    if not keys:
        print(f"No keys for {args.name}: make one with 'himalia deploy-key create {args.name} --label L'.")
        return 0
    print(table(["ID", "PREFIX", "LABEL", "CREATED BY", "CREATED", "LAST USED", "REVOKED"],
                [[k["id"], k["prefix"], k["label"], k.get("created_by"), k.get("created_at"),
                  k.get("last_used_at") or "-", k.get("revoked_at") or "-"] for k in keys]))
    return 0


def cmd_key_revoke(args: argparse.Namespace) -> int:
    deployments, _ = _deployments(args)
    with platform_errors():
        deployments.revoke_key(args.name, args.key_id)
    print(f"Revoked key {args.key_id} of {args.name}.")
    return 0


def add_commands(sub) -> None:
    common = token_options()
    name_help = "the deployment's name"

    deploy = sub.add_parser("deploy", parents=[common],
                            help="serve an MLflow model as a new version of a deployment")
    deploy.add_argument("name", help="lowercase letters, digits and '-'; served at /models/NAME/")
    deploy.add_argument("--model", required=True, metavar="URI",
                        help="the MLflow model: runs:/RUN/model, models:/NAME/VERSION, ...")
    deploy.add_argument("--canary", type=int, default=0, metavar="PCT",
                        help="give the new version PCT%% of the traffic (1-99) beside the current "
                             "one; default 0: all of it once it is healthy")
    deploy.add_argument("--replicas", type=int, default=1, metavar="N", help="model servers (1-8, default 1)")
    deploy.add_argument("--features", metavar="REFS",
                        help="comma-separated feature refs VIEW:FEATURE filled in by entity key; "
                             "they must be those the model's training run read")
    deploy.add_argument("--allow-skew", action="store_true",
                        help="deploy even when --features differ from the training run's")
    deploy.add_argument("--wait", action="store_true",
                        help="show its state until it serves; exit 1 when it fails")
    deploy.set_defaults(func=cmd_deploy)

    for verb, func, text in (("promote", cmd_promote, "give the canary all traffic, retire the old version"),
                             ("rollback", cmd_rollback, "retire the canary, or bring the previous version back"),
                             ("undeploy", cmd_undeploy, "stop all versions of a deployment and delete it")):
        parser = sub.add_parser(verb, parents=[common], help=text)
        parser.add_argument("name", help=name_help)
        parser.set_defaults(func=func)

    listing = sub.add_parser("deployments", parents=[common],
                             help="your deployments, or one with its versions")
    listing.add_argument("name", nargs="?", help="one deployment (default: all of yours)")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    listing.add_argument("--json", action="store_true", help="print JSON for programs")
    listing.set_defaults(func=cmd_deployments)

    logs = sub.add_parser("logs", parents=[common], help="a deployment's build and serving log")
    logs.add_argument("name", help=name_help)
    logs.add_argument("--version", type=int, metavar="N", help="that version (default: the newest)")
    logs.add_argument("--lines", type=int, default=200, metavar="N", help="last lines (default 200)")
    logs.set_defaults(func=cmd_logs)

    keys = sub.add_parser("deploy-key", help="API keys for callers without a hub account")
    verbs = keys.add_subparsers(dest="verb", metavar="VERB", required=True)
    create = verbs.add_parser("create", parents=[common], help="make a key; it is printed once")
    create.add_argument("name", help=name_help)
    create.add_argument("--label", required=True, help="what the key is for, e.g. the caller")
    create.set_defaults(func=cmd_key_create)
    listing = verbs.add_parser("list", parents=[common], help="a deployment's keys (never the keys themselves)")
    listing.add_argument("name", help=name_help)
    listing.set_defaults(func=cmd_key_list)
    revoke = verbs.add_parser("revoke", parents=[common], help="revoke a key at once")
    revoke.add_argument("name", help=name_help)
    revoke.add_argument("key_id", type=int, metavar="ID", help="the key's id (see 'list')")
    revoke.set_defaults(func=cmd_key_revoke)
