"""``%schedule``: make the current notebook (or another one in your home) a scheduled job.

The platform reads the *saved* notebook from your home folder, so save before scheduling.
Everything else (validation, parameters, schedules) is the platform API's, through
:class:`himalia.sdk.Jobs`.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from html import escape
from pathlib import PurePosixPath
from typing import Iterable, Mapping

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Callable

from himalia.sdk import Client, HimaliaError, Jobs
from himalia.sdk.lineage import notebook_path

from .base import HimaliaMagics


def parse_parameters(pairs: Iterable[str] | None) -> dict:
    """``["n=4", "label=x", 'tags=["a"]']`` as ``{"n": 4, "label": "x", "tags": ["a"]}``: each
    value is JSON when it parses as JSON, else the text itself. ``ValueError`` names a bad pair."""
    found: dict = {}
    for pair in pairs or ():
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--param takes NAME=VALUE, got {pair!r}")
        try:
            # NaN and Infinity are not JSON the API accepts: they stay text.
            found[name] = json.loads(text, parse_constant=_not_json)
        except ValueError:
            found[name] = text
    return found


def _not_json(constant: str):
    raise ValueError(constant)


def server_path(path: str, env: Mapping[str, str]) -> str:
    """``path`` as the platform reads it: relative to your home (the server's root), as
    JupyterLab's "Copy Path" gives it; an absolute path inside the home becomes relative."""
    return notebook_path({**env, "JPY_SESSION_NAME": path})


def job_name(path: str) -> str:
    """A job name from a notebook's file name: ``reports/Churn report.ipynb`` -> ``Churn-report``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", PurePosixPath(path).stem).strip("-.")
    return stem[:100] or "notebook"


def _when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).strftime("%a %Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(iso)


def _value(value) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def render_text(job: dict, run: dict | None = None) -> str:
    lines = [f"Job {job['name']!r} (id {job['id']}, version {job['version']})"
             + (f" from {job['source_path']}" if job.get("source_path") else "")]
    if job.get("schedule"):
        state = " (paused)" if job.get("paused") else ""
        lines.append(f"schedule: {job['schedule']} in {job['timezone']}{state}")
        if job.get("next_runs"):
            lines.append(f"next runs ({job['timezone']}): "
                         + ", ".join(_when(t) for t in job["next_runs"]))
    else:
        lines.append("schedule: none (it runs when you start it)")
    params = job.get("parameters") or {}
    if params:
        lines.append("parameters:")
        lines += [f"  {name}: {p.get('type') or '?'} = {_value(p.get('default'))}"
                  for name, p in params.items()]
    else:
        lines.append("parameters: none (tag a cell 'parameters' to have some)")
    if run is not None:
        lines.append(f"run {run['id']} {run['state']}")
    return "\n".join(lines)


def render_html(job: dict, run: dict | None = None) -> str:
    title = (f"<b>{escape(job['name'])}</b> · job {job['id']} · version {job['version']}"
             + (f" · <code>{escape(job['source_path'])}</code>" if job.get("source_path") else ""))
    if job.get("schedule"):
        schedule = (f"<code>{escape(job['schedule'])}</code> in {escape(job['timezone'])}"
                    + (" (paused)" if job.get("paused") else ""))
        upcoming = "".join(f"<li>{escape(_when(t))}</li>" for t in job.get("next_runs") or [])
        schedule += f"<br>Next runs ({escape(job['timezone'])}):<ul>{upcoming}</ul>" if upcoming else ""
    else:
        schedule = "none: it runs when you start it"
    params = job.get("parameters") or {}
    rows = "".join(f"<tr><td><code>{escape(name)}</code></td><td>{escape(str(p.get('type') or '?'))}</td>"
                   f"<td><code>{escape(_value(p.get('default')))}</code></td></tr>"
                   for name, p in params.items())
    table = (f"<table><tr><th>parameter</th><th>type</th><th>default</th></tr>{rows}</table>"
             if rows else "<p>No parameters (tag a cell <code>parameters</code> to have some).</p>")
    ran = f"<p>Run {run['id']}: {escape(run['state'])}</p>" if run is not None else ""
    return f"<div class='himalia-job'>{title}<p>Schedule: {schedule}</p>{table}{ran}</div>"


def api_message(error: HimaliaError) -> str:
    """The platform's own message ("schedule: ..."), without the request path the SDK adds."""
    text = str(error)
    head, sep, rest = text.partition(": ")
    if error.status and sep and head.startswith("/"):
        text = rest
    return " ".join(text.split())


@magics_class
class JobMagics(HimaliaMagics):
    """Scheduled notebook jobs; configurable as ``c.JobMagics``."""

    client_factory = Callable(
        Client.from_env,
        help="Callable returning a himalia.sdk.Client; default reads the kernel's environment.",
    ).tag(config=True)

    @magic_arguments()
    @argument("path", nargs="?",
              help="the notebook, relative to your home as JupyterLab's Copy Path gives it "
                   "(default: this notebook)")
    @argument("--name", help="the job's name (default: the notebook's file name)")
    @argument("--cron", help="when it runs, e.g. '0 2 * * *' (every day at 02:00); "
                             "without it the job runs only when started")
    @argument("--tz", help="time zone of the schedule, e.g. Europe/Paris (default UTC)")
    @argument("--param", action="append", metavar="NAME=VALUE",
              help="a parameter's default (JSON values, else text); repeat for more")
    @argument("--profile", help="the profile (image and resources) it runs with")
    @argument("--timeout", type=int, metavar="SECONDS", help="stop a run after this long")
    @argument("--retries", type=int, help="retries of a failed run")
    @argument("--input", action="append", metavar="PATH",
              help="a file the notebook reads, relative to its folder; repeat for more")
    @argument("--now", action="store_true", help="also start a run now")
    @line_magic
    def schedule(self, line: str = ""):
        """Make a notebook a job (saved file): %schedule [PATH] --cron '0 2 * * *' --param n=5 --now."""
        args = self.parse(self.schedule, line)
        if args is None:
            return None
        env = os.environ
        try:
            parameters = parse_parameters(args.param)
        except ValueError as e:
            raise UsageError(f"%schedule: {e}") from None
        if args.path:
            path = server_path(args.path, env)
        else:
            path = notebook_path(env)
            if not path:
                raise UsageError("%schedule: this kernel does not know its notebook (no "
                                 "JPY_SESSION_NAME): give the notebook's PATH relative to your home")
        spec = {"parameters": parameters or None, "schedule": args.cron, "timezone": args.tz,
                "profile": args.profile, "timeout_seconds": args.timeout,
                "max_retries": args.retries, "inputs": args.input}
        try:
            jobs = Jobs(self.client_factory())
            job = jobs.create(args.name or job_name(path), path=path, **spec)
        except HimaliaError as e:
            raise UsageError(f"%schedule: {api_message(e)}") from None
        try:
            run = jobs.run(job["id"]) if args.now else None
        except HimaliaError as e:
            raise UsageError(f"%schedule: job {job['name']!r} was created but its run was "
                             f"refused: {api_message(e)}") from None
        note = (f"The job runs {path} as saved when you scheduled it: save the notebook before "
                "%schedule to include your latest changes.")
        display({"text/plain": render_text(job, run) + "\n" + note,
                 "text/html": render_html(job, run) + f"<p><i>{escape(note)}</i></p>"}, raw=True)
        return None
