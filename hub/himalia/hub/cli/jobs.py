"""``himalia jobs ...``: scheduled notebook jobs from a terminal, through :class:`himalia.sdk.Jobs`.

Whose jobs: in a terminal of your JupyterLab the environment has ``HIMALIA_API_URL`` and
``JUPYTERHUB_API_TOKEN``, so the commands act as you. On the machine that runs ``himalia up``
they use the state directory's admin token instead (``--state-dir``), which sees and acts on
everyone's jobs (name another person's job as ``OWNER/NAME``) but cannot own one.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

from himalia.magics.jobs import api_message, parse_parameters
from himalia.sdk import Client, HimaliaError, Jobs

from ..hubconfig import API_SERVICE
from .common import CLIError, Running

DEFAULT_STATE_DIR = ".himalia"
#: Seconds between two looks at a followed run.
FOLLOW_INTERVAL = 0.5


# -- where the client comes from ---------------------------------------------------------------
def api_url(runtime: dict) -> str:
    """The platform API as this machine reaches it, from ``runtime.json``: its own port on
    loopback (no proxy in between), else through the proxy's local or public address."""
    if runtime.get("api_port"):
        return f"http://127.0.0.1:{runtime['api_port']}/services/{API_SERVICE}/"
    base = runtime.get("local_url") or runtime.get("url")
    if not base:
        raise CLIError("runtime.json does not say where the platform API listens: restart himalia up.")
    return f"{base.rstrip('/')}/services/{API_SERVICE}/"


def token_options() -> argparse.ArgumentParser:
    """The ``--state-dir`` option of every command that calls the platform API (a parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", default=None,
                        help="use this platform's admin token (default: your token from "
                             "HIMALIA_API_URL and JUPYTERHUB_API_TOKEN, else ./.himalia)")
    return common


def client_from(args: argparse.Namespace) -> tuple[Client, bool]:
    """The SDK client and whether it holds the admin token: the environment's (a user's
    terminal or kernel) unless ``--state-dir`` is given or the environment lacks it."""
    env = getattr(args, "env", {}) or {}
    state_dir = getattr(args, "state_dir", None)
    if state_dir is None and env.get("HIMALIA_API_URL") and env.get("JUPYTERHUB_API_TOKEN"):
        return Client.from_env(env), False
    running = Running.load(state_dir or DEFAULT_STATE_DIR)
    if not running.admin_token:
        raise CLIError(f"No admin token in {running.paths.admin_token}: run this as the account "
                       "that runs himalia up, or in a terminal of your JupyterLab.")
    return Client(api_url(running.runtime), running.admin_token), True


@contextmanager
def platform_errors() -> Iterator[None]:
    """The platform's refusals as one-line :class:`CLIError`s."""
    try:
        yield
    except HimaliaError as e:
        message = api_message(e)
        if not e.status:
            message += " (is himalia up running?)"
        raise CLIError(message) from None


def _jobs(args: argparse.Namespace) -> Jobs:
    return Jobs(client_from(args)[0])


def _job_ref(jobs: Jobs, ref: str) -> str:
    """``ID``, ``NAME`` (yours) or ``OWNER/NAME`` as what the API's routes take."""
    owner, slash, name = ref.partition("/")
    if slash:
        return str(jobs.get(name, owner=owner)["id"])
    return ref


def _params(args: argparse.Namespace) -> dict:
    try:
        return parse_parameters(args.param)
    except ValueError as e:
        raise CLIError(str(e)) from None


# -- showing things ----------------------------------------------------------------------------
def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _local(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _in_zone(iso: str) -> str:
    """A next-run time as the job's own zone has it (the API gives it with that offset)."""
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")


def _one_line(text: str | None, width: int = 0) -> str:
    text = " ".join((text or "").split())
    return text[: width - 1] + "…" if width and len(text) > width else text


def _schedule(job: dict, none: str = "-") -> str:
    if not job.get("schedule"):
        return none
    return f"{job['schedule']} ({job['timezone']})"


def _status(job: dict) -> str:
    if job.get("paused"):
        return "paused"
    return "scheduled" if job.get("schedule") else "manual"


def _progress(run: dict) -> str:
    p = run.get("progress") or {}
    return f"{p.get('cells_done', 0)}/{p.get('cells_total', 0)}" if p.get("cells_total") else "-"


def _duration(run: dict) -> str:
    seconds = run.get("duration_seconds")
    return "-" if seconds is None else f"{seconds:.1f}s"


def runs_table(runs: list[dict]) -> str:
    return table(["RUN", "STATE", "TRIGGER", "STARTED", "DURATION", "CELLS", "REASON"],
                 [[r["id"], r["state"], r["trigger"], _local(r.get("started_at")), _duration(r),
                   _progress(r), _one_line(r.get("reason"), 60)] for r in runs])


def describe(job: dict) -> str:
    lines = [f"Job {job['name']} (id {job['id']}, owner {job['owner']}, version {job['version']})"]
    if job.get("source_path"):
        lines.append(f"  notebook:   {job['source_path']}")
    lines.append(f"  schedule:   {_schedule(job, 'none (it runs when started)')}"
                 f"{' (paused)' if job.get('paused') else ''}")
    if job.get("next_runs"):
        lines.append(f"  next runs:  {', '.join(_in_zone(t) for t in job['next_runs'])} "
                     f"({job['timezone']})")
    lines.append(f"  profile:    {job.get('profile') or 'default'}")
    lines.append(f"  timeout:    {job['timeout_seconds']}s; retries: {job['max_retries']} "
                 f"(backoff {job['retry_backoff_seconds']}s); concurrency: {job['concurrency']}; "
                 f"keeps {job['keep_runs']} runs")
    notify = job.get("notify") or {}
    if notify.get("webhook") or notify.get("email"):
        to = [t for t in [notify.get("webhook"), *(notify.get("email") or [])] if t]
        lines.append(f"  notify:     {', '.join(to)} on {', '.join(notify.get('on') or [])}")
    if job.get("inputs"):
        lines.append(f"  inputs:     {', '.join(job['inputs'])}")
    if job.get("published"):
        lines.append("  published:  viewers read its outputs and values")
    params = job.get("parameters") or {}
    if params:
        lines.append("  parameters:")
        for name, p in params.items():
            lines.append(f"    {name}: {p.get('type') or '?'} = {json.dumps(p.get('default'))}")
    else:
        lines.append("  parameters: none")
    return "\n".join(lines)


def _print_json(value) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


# -- following a run ---------------------------------------------------------------------------
def follow(jobs: Jobs, run: dict) -> int:
    """Show the run's cells done as a progress bar until it ends; 0 when it succeeded, else a
    one-line :class:`CLIError` with why (the failing cell for a notebook error)."""
    from tqdm import tqdm

    bar = tqdm(total=0, unit="cell", desc=f"run {run['id']}", file=sys.stderr, leave=True)

    def show(info: dict) -> None:
        progress = info.get("progress") or {}
        if progress.get("cells_total") and bar.total != progress["cells_total"]:
            bar.total = progress["cells_total"]
        bar.n = progress.get("cells_done") or 0
        bar.set_postfix_str(info["state"], refresh=False)
        bar.refresh()

    try:
        with platform_errors():
            done = jobs.wait(run["id"], timeout=float("inf"), interval=FOLLOW_INTERVAL, on_progress=show)
    except KeyboardInterrupt:
        bar.close()
        print(f"Stopped following; run {run['id']} goes on (himalia jobs cancel {run['id']} stops it).",
              file=sys.stderr)
        raise
    bar.close()
    if done["state"] == "succeeded":
        print(f"Run {done['id']} of {done['job']} succeeded in {_duration(done)}.")
        return 0
    reason = _one_line(done.get("reason")) or "no reason given"
    raise CLIError(f"run {done['id']} of {done['job']} {done['state']}: {reason} "
                   f"(himalia jobs logs {done['id']})")


# -- commands ----------------------------------------------------------------------------------
def cmd_create(args: argparse.Namespace) -> int:
    source = Path(args.notebook)
    try:
        notebook = json.loads(source.read_text(encoding="utf-8"))
    except OSError as e:
        raise CLIError(f"{source}: {e.strerror or e}") from None
    except ValueError as e:
        raise CLIError(f"{source}: not a notebook's JSON ({e})") from None
    parameters = _params(args)
    notify = None
    if args.webhook or args.email:
        notify = {"webhook": args.webhook, "email": args.email or [],
                  "on": args.notify_on or ["failure"]}
    client, admin = client_from(args)
    if admin:
        raise CLIError("a job belongs to the person who creates it, and the admin token is no "
                       "person's: run this in a terminal of your JupyterLab, or set "
                       "HIMALIA_API_URL and JUPYTERHUB_API_TOKEN (a token of yours)")
    with platform_errors():
        job = Jobs(client).create(
            args.name, notebook=notebook, parameters=parameters or None, schedule=args.cron,
            timezone=args.timezone, profile=args.profile, timeout_seconds=args.timeout,
            max_retries=args.retries, retry_backoff_seconds=args.backoff,
            inputs=args.input, notify=notify, paused=True if args.paused else None)
    print(f"Created job {job['name']} (id {job['id']}).")
    print(describe(job))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with platform_errors():
        jobs = _jobs(args).list(limit=args.limit)
    if args.json:
        _print_json(jobs)
        return 0
    if not jobs:
        print("No jobs yet: create one with 'himalia jobs create NAME NOTEBOOK.ipynb'.")
        return 0
    print(table(["ID", "NAME", "OWNER", "SCHEDULE", "STATUS", "NEXT RUN", "VERSION"],
                [[j["id"], j["name"], j["owner"], _schedule(j), _status(j),
                  _in_zone(j["next_runs"][0]) if j.get("next_runs") else "-", j["version"]]
                 for j in jobs]))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    jobs = _jobs(args)
    with platform_errors():
        job = jobs.get(_job_ref(jobs, args.job))
        runs = jobs.runs(job["id"], limit=args.runs)
    if args.json:
        _print_json({"job": job, "runs": runs})
        return 0
    print(describe(job))
    print()
    if runs:
        print(f"Last {len(runs)} run{'s' if len(runs) > 1 else ''}:")
        print(runs_table(runs))
    else:
        print(f"No runs yet: start one with 'himalia jobs run {job['id']}'.")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    parameters = _params(args)
    jobs = _jobs(args)
    with platform_errors():
        run = jobs.run(_job_ref(jobs, args.job), parameters)
    print(f"Run {run['id']} of {run['job']} queued.")
    if args.follow:
        return follow(jobs, run)
    print(f"Follow it with 'himalia jobs show {run['job_id']}' or 'himalia jobs logs {run['id']}'.")
    return 0


def cmd_rerun(args: argparse.Namespace) -> int:
    jobs = _jobs(args)
    with platform_errors():
        run = jobs.rerun(args.run)
    print(f"Run {run['id']} of {run['job']} queued: run {args.run} again (version {run['version']}, "
          "the same parameters and inputs).")
    if args.follow:
        return follow(jobs, run)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    with platform_errors():
        text = _jobs(args).logs(args.run)
    if not text.strip():
        print(f"Run {args.run} has no logs yet (it has not started).", file=sys.stderr)
        return 0
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with platform_errors():
        run = _jobs(args).cancel(args.run)
    if run["state"] == "cancelled":
        print(f"Run {run['id']} cancelled.")
    else:
        print(f"Run {run['id']} is being cancelled: the runner stops its kernel.")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    jobs = _jobs(args)
    with platform_errors():
        job = jobs.pause(_job_ref(jobs, args.job))
    print(f"Paused job {job['name']}: no scheduled runs until 'himalia jobs resume {job['id']}' "
          "(runs you start still run).")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    jobs = _jobs(args)
    with platform_errors():
        job = jobs.resume(_job_ref(jobs, args.job))
    after = (f"; next run {_in_zone(job['next_runs'][0])} ({job['timezone']})" if job.get("next_runs")
             else " (it has no schedule: it runs when started)")
    print(f"Resumed job {job['name']}{after}.")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    jobs = _jobs(args)
    with platform_errors():
        ref = _job_ref(jobs, args.job)
        jobs.delete(ref)
    print(f"Deleted job {args.job} with its runs and their outputs.")
    return 0


def add_commands(sub) -> None:
    group = sub.add_parser("jobs", help="scheduled notebook jobs: create, run, follow, inspect")
    verbs = group.add_subparsers(dest="verb", metavar="VERB", required=True)
    common = token_options()
    job_help = "the job: its id, its name, or OWNER/NAME"

    create = verbs.add_parser("create", parents=[common],
                              help="make a job from a local notebook (its parameters cell gives "
                                   "the parameters)")
    create.add_argument("name", help="the job's name (letters, digits, '.', '_', '-')")
    create.add_argument("notebook", help="the .ipynb file to upload")
    create.add_argument("--param", action="append", metavar="NAME=VALUE",
                        help="a parameter's default; the value is JSON when it parses, else text")
    create.add_argument("--cron", metavar="EXPR",
                        help="when it runs, e.g. '0 2 * * *' (02:00 every day); default: only "
                             "when started")
    create.add_argument("--timezone", metavar="ZONE", help="time zone of --cron (default UTC)")
    create.add_argument("--profile", help="the profile (image, resources) runs use")
    create.add_argument("--timeout", type=int, metavar="SECONDS", help="stop a run after this long")
    create.add_argument("--retries", type=int, metavar="N", help="retries of a failed run")
    create.add_argument("--backoff", type=int, metavar="SECONDS",
                        help="wait before the first retry (doubling after each)")
    create.add_argument("--input", action="append", metavar="PATH",
                        help="a file of your home folder the notebook reads (copied now)")
    create.add_argument("--webhook", metavar="URL", help="POST each run's outcome here")
    create.add_argument("--email", action="append", metavar="ADDRESS", help="e-mail the outcome")
    create.add_argument("--notify-on", action="append", choices=["failure", "success"],
                        help="which outcomes notify (default: failure)")
    create.add_argument("--paused", action="store_true", help="create it paused")
    create.set_defaults(func=cmd_create)

    listing = verbs.add_parser("list", parents=[common], help="your jobs (an admin: everyone's)")
    listing.add_argument("--json", action="store_true", help="print JSON for programs")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    listing.set_defaults(func=cmd_list)

    show = verbs.add_parser("show", parents=[common], help="a job's definition and its last runs")
    show.add_argument("job", help=job_help)
    show.add_argument("--runs", type=int, default=5, metavar="N", help="last runs to show (default 5)")
    show.add_argument("--json", action="store_true", help="print JSON for programs")
    show.set_defaults(func=cmd_show)

    run = verbs.add_parser("run", parents=[common], help="run a job now")
    run.add_argument("job", help=job_help)
    run.add_argument("--param", action="append", metavar="NAME=VALUE",
                     help="a parameter for this run; the value is JSON when it parses, else text")
    run.add_argument("--follow", action="store_true",
                     help="show its progress until it ends; exit 1 unless it succeeded")
    run.set_defaults(func=cmd_run)

    rerun = verbs.add_parser("rerun", parents=[common],
                             help="run a run again: the same version, parameters and inputs")
    rerun.add_argument("run", type=int, help="the run's id")
    rerun.add_argument("--follow", action="store_true",
                       help="show its progress until it ends; exit 1 unless it succeeded")
    rerun.set_defaults(func=cmd_rerun)

    logs = verbs.add_parser("logs", parents=[common], help="a run's runner log, stdout and stderr")
    logs.add_argument("run", type=int, help="the run's id")
    logs.set_defaults(func=cmd_logs)

    cancel = verbs.add_parser("cancel", parents=[common], help="cancel a queued or running run")
    cancel.add_argument("run", type=int, help="the run's id")
    cancel.set_defaults(func=cmd_cancel)

    for verb, func, text in (("pause", cmd_pause, "stop a job's scheduled runs"),
                             ("resume", cmd_resume, "start a paused job's schedule again")):
        parser = verbs.add_parser(verb, parents=[common], help=text)
        parser.add_argument("job", help=job_help)
        parser.set_defaults(func=func)

    delete = verbs.add_parser("delete", parents=[common], help="delete a job with its runs and outputs")
    delete.add_argument("job", help=job_help)
    delete.set_defaults(func=cmd_delete)
