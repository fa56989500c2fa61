"""``%%deploy``: serve an MLflow model (by default the one ``%train`` just logged) as a new version
of a deployment; ``%deployments``: yours, with their versions' state and traffic.

Names, canary rules, building and health checks are the platform's, through
:class:`himalia.sdk.Deployments`; this module parses, waits and shows.
"""

from __future__ import annotations

import sys

from IPython.core.error import UsageError
from IPython.core.magic import line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Callable, Float

from himalia.sdk import Client, Deployments, HimaliaError
from himalia.sdk.deployments import deploy_lineage

from .base import HimaliaMagics, render
from .jobs import api_message

VERSION_HEADERS = ["version", "state", "traffic", "replicas", "model", "created", "reason"]


def last_trained_model() -> tuple[str | None, str | None]:
    """``(run_id, model_uri)`` of this kernel's last run (``%train`` tags its model's URI);
    ``(None, None)`` without a run, ``(run_id, None)`` when that run logged no model."""
    # Runs are recorded by himalia.sdk.tracking: when it was never imported, this kernel has no
    # run, and importing it here would load MLflow for nothing.
    tracking = sys.modules.get("himalia.sdk.tracking")
    run_id = tracking.last_run_id() if tracking is not None else None
    if not run_id:
        return None, None
    from mlflow.tracking import MlflowClient

    return run_id, MlflowClient().get_run(run_id).data.tags.get("himalia.model_uri")


def live_versions(deployment: dict) -> str:
    """``v3 serving 90%, v2 serving 10%``: the versions not retired (else the newest one)."""
    versions = deployment.get("versions") or []
    live = [v for v in versions if v["state"] != "retired"] or versions[:1]
    return ", ".join(f"v{v['version']} {v['state']} {v['traffic']}%" for v in live) or "-"


def version_row(v: dict) -> list:
    return [v["version"], v["state"], f"{v['traffic']}%", v["replicas"], v["model_uri"],
            (v.get("created_at") or "")[:16].replace("T", " "), " ".join((v.get("reason") or "").split())]


@magics_class
class DeployMagics(HimaliaMagics):
    """Model deployments; configurable as ``c.DeployMagics``."""

    client_factory = Callable(
        Client.from_env,
        help="Callable returning a himalia.sdk.Client; default reads the kernel's environment.",
    ).tag(config=True)
    wait_timeout = Float(
        900.0, help="Seconds %%deploy waits for the new version to serve; the version goes on after.",
    ).tag(config=True)
    poll_interval = Float(1.0, help="Seconds between two looks at a deploying version.").tag(config=True)

    def _deployments(self, magic: str) -> Deployments:
        try:
            return Deployments(self.client_factory())
        except HimaliaError as e:
            raise UsageError(f"{magic}: {e}") from None

    def _model(self, magic: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            run_id, model_uri = last_trained_model()
        except MlflowException as e:
            raise UsageError(f"{magic}: cannot read the last run from MLflow ({e.message}): "
                             "pass --model URI") from None
        if run_id is None:
            raise UsageError(f"{magic}: which model? Pass --model URI (runs:/..., models:/...) or "
                             "run %train first")
        if model_uri is None:
            raise UsageError(f"{magic}: the last run ({run_id}) logged no model: pass --model URI "
                             "or run %train first")
        return model_uri

    # -- %%deploy ----------------------------------------------------------------------------
    @magic_arguments()
    @argument("name", help="the deployment: lowercase letters, digits and '-', served at /models/NAME/")
    @argument("--model", metavar="URI",
              help="the MLflow model (runs:/..., models:/...); default: this kernel's last %%train")
    @argument("--canary", type=int, default=0, metavar="PCT",
              help="give the new version PCT%% of the traffic (1-99) beside the current one; "
                   "default 0: all of it once it is healthy")
    @argument("--replicas", type=int, default=1, metavar="N", help="model servers (1-8, default 1)")
    @argument("--features", metavar="REFS",
              help="comma-separated feature refs view:feature filled in by entity key (callers "
                   "send the keys); they must be those the model's training run read")
    @argument("--allow-skew", action="store_true",
              help="deploy even when --features differ from the training run's")
    @argument("--no-wait", action="store_true", help="return once the version is accepted")
    @line_cell_magic
    def deploy(self, line: str = "", cell: str | None = None):
        """Serve an MLflow model at /models/NAME/; the cell, if any, is its BentoML service code."""
        args = self.parse(self.deploy, line)
        if args is None:
            return None
        magic = "%deploy" if cell is None else "%%deploy"
        model_uri = args.model or self._model(magic)
        deployments = self._deployments(magic)
        try:
            answer = deployments.deploy(args.name, model_uri, canary_percent=args.canary,
                                        replicas=args.replicas, service_code=(cell or "").strip() or None,
                                        lineage=deploy_lineage(self._cell),
                                        features=[r for r in (args.features or "").split(",") if r] or None,
                                        allow_skew=args.allow_skew)
        except HimaliaError as e:
            raise UsageError(f"{magic}: {api_message(e)}") from None
        name, number = answer["deployment"]["name"], answer["version"]["version"]
        print(f"{name} version {number} ({model_uri}): {answer['version']['state']}")
        if args.no_wait:
            print(f"Follow it with %deployments {name}.")
            return None
        shown = [answer["version"]["state"]]

        def show(version: dict) -> None:
            if version["state"] != shown[-1]:
                shown.append(version["state"])
                print(f"{name} version {number}: {version['state']}")

        try:
            version = deployments.wait(name, number, timeout=self.wait_timeout,
                                       poll=self.poll_interval, on_progress=show)
        except HimaliaError as e:
            raise UsageError(f"{magic}: {api_message(e)} (the logs: Deployments().logs({name!r}, "
                             f"{number}) or himalia logs {name} --version {number})") from None
        except KeyboardInterrupt:
            print(f"Stopped waiting: version {number} goes on (%deployments {name} shows it).",
                  file=sys.stderr)
            return None
        if version["state"] == "retired":
            print(f"{name} version {number} was retired before it served (a newer version replaced it).")
            return None
        canary = (f" beside the current version: promote it with himalia promote {name}"
                  if version["traffic"] < 100 else "")
        print(f"{name} version {number} serves {version['traffic']}% of the traffic{canary}.\n"
              f"POST {deployments.url(name)}")
        return None

    # -- %deployments ------------------------------------------------------------------------
    @magic_arguments()
    @argument("name", nargs="?", help="one deployment, with all its versions")
    @line_magic
    def deployments(self, line: str = ""):
        """Your deployments with their versions' state and traffic: %deployments [NAME]."""
        args = self.parse(self.deployments, line)
        if args is None:
            return None
        deployments = self._deployments("%deployments")
        try:
            found = [deployments.get(args.name)] if args.name else deployments.list()
        except HimaliaError as e:
            raise UsageError(f"%deployments: {api_message(e)}") from None
        if not found:
            print("No deployments yet: serve a model with %%deploy NAME after %train.")
        elif args.name:
            d = found[0]
            shared = f", shared with {', '.join(d['shared_with'])}" if d.get("shared_with") else ""
            title = f"{d['name']} ({d['health']}, owner {d['owner']}{shared}): POST {deployments.url(d['name'])}"
            display(render(title, VERSION_HEADERS, [version_row(v) for v in d["versions"]]), raw=True)
        else:
            rows = [[d["name"], d["health"], live_versions(d), d["owner"], d["url"]] for d in found]
            display(render(f"{len(found)} deployment{'s' if len(found) > 1 else ''}",
                           ["name", "health", "versions", "owner", "url"], rows), raw=True)
        return None
