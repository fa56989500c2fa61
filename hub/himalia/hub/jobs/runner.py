"""The job runner: the hub-managed service that schedules and executes job runs.

One asyncio process (root when the platform runs as root, so that kernels run as each run's
owner). It queues scheduled runs (one per slot), claims queued runs, executes each with
papermill on a started kernel from :mod:`.pool`, stores the outputs, retries with backoff and
notifies. It needs no user's server: a person logged out or culled still gets their runs.

Crash safety: on start it kills the kernels an earlier runner left, marks that runner's
``running`` runs failed and queues their retries by policy; scheduled slots are unique in the
database, so none runs twice.

Configuration comes from ``HIMALIA_JOBS_RUNNER`` (JSON of :class:`RunnerConfig`), set by
hubconfig.py; the hub gives the service its token (``JUPYTERHUB_API_TOKEN``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path

import httpx
import nbformat
import papermill
from papermill.exceptions import PapermillExecutionError
from sqlalchemy import select

from ..profiles import ProfileError, local_overrides, parse_profiles
from ..owners import Account, Owners
from ..storage import Database
from ..supervisor import control_socket, keep_running, kill_leftovers
from ..unixusers import AccountError
from ..userenv import user_environment
from . import service
from .models import (CANCELLED, FAILED, RUNNING, SUCCEEDED, TIMED_OUT, Job, JobRun)
from .pool import KernelPool, KernelRecipe, forget, kernel_pid

log = logging.getLogger("himalia.jobs")
KERNEL_MODULE = "himalia.kernels"
#: Scopes of the hub token a run's kernel gets: the platform API and MLflow, as its owner.
RUN_TOKEN_SCOPES = [
    "access:services!service=himalia",
    "access:services!service=mlflow",
    "access:services!service=himalia-models",
    "access:services!service=dask-gateway",
    "read:users:name!user",
    "read:users:groups!user",
    "read:roles:users!user",
]


@dataclass
class RunnerConfig:
    state_dir: str
    db_url: str
    jobs_dir: str
    socket: str
    api_url: str = ""
    tracking_url: str = ""
    system_users: bool = False
    user_prefix: str = "jupyter-"
    home_root: str = "/home"
    account_registry: str = ""
    user_environment: str = ""
    profiles: list = field(default_factory=list)
    pool_sizes: dict = field(default_factory=dict)
    kernel_idle_seconds: int = 600
    max_parallel: int = 2
    misfire_grace_seconds: int = 3600
    poll_seconds: float = 5.0
    smtp: dict = field(default_factory=dict)
    #: The API's account, which must own run folders and may connect to the socket.
    files_uid: int | None = None
    files_gid: int | None = None
    public_url: str = ""


@dataclass
class Active:
    """A run being executed: its kernel (once taken) and why it must stop, if it must."""

    run_id: int
    deadline: float
    km: object = None
    stop_reason: str = ""
    stop_state: str = ""

    def kill(self, state: str, reason: str) -> None:
        if self.stop_state:
            return
        self.stop_state, self.stop_reason = state, reason
        pid = getattr(getattr(self.km, "provisioner", None), "pid", None)
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Runner:
    def __init__(self, config: RunnerConfig, hub_api_url: str, hub_token: str):
        self.config = config
        self.db = Database(config.db_url)
        self.jobs_dir = Path(config.jobs_dir)
        self.blobs = service.BlobStore(self.jobs_dir / "blobs")
        self.hub_api_url = hub_api_url.rstrip("/")
        self.hub_token = hub_token
        self.wakeup = asyncio.Event()
        self.active: dict[int, Active] = {}
        self.tasks: set[asyncio.Task] = set()
        self.profiles = {p.name: p for p in parse_profiles(config.profiles)} if config.profiles else {}
        self.default_profile = next((p.name for p in self.profiles.values() if p.default),
                                    next(iter(self.profiles), ""))
        self.pids_dir = self.jobs_dir / "kernel-pids"
        self.pool: KernelPool | None = None
        self.scratch = Path(tempfile.gettempdir())
        self.http: httpx.AsyncClient | None = None
        self.stopping = False
        self.owners: Owners | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    async def main(self) -> None:
        # Outputs are readable by the API's account (which owns the folders they are in).
        os.umask(0o022)
        runs = self.jobs_dir / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        self._give(runs)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        self.pids_dir.mkdir(parents=True, exist_ok=True)
        left = kill_leftovers(self.pids_dir)
        if left:
            log.warning("killed %d kernel(s) an earlier runner left behind", left)
        connection_dir = self.scratch = self._connection_dir()
        self.pool = KernelPool(loop, connection_dir, pids_dir=self.pids_dir,
                               sizes=self.config.pool_sizes,
                               idle_seconds=self.config.kernel_idle_seconds)
        self.http = httpx.AsyncClient(timeout=30, transport=httpx.AsyncHTTPTransport(retries=3))
        cfg = self.config
        self.owners = Owners(self.http, self.hub_api_url, self.hub_token, state_dir=cfg.state_dir,
                             system_users=cfg.system_users, user_prefix=cfg.user_prefix,
                             account_registry=cfg.account_registry, home_root=cfg.home_root)
        self.recover()
        server = await self.serve_control()
        try:
            await self.loop()
        finally:
            server.close()
            for active in self.active.values():
                active.kill(FAILED, "the job runner was stopped while this run was running")
            if self.tasks:
                await asyncio.wait(self.tasks, timeout=30)
            await self.pool.close()
            await self.http.aclose()
            shutil.rmtree(connection_dir, ignore_errors=True)
            self.db.close()

    def stop(self) -> None:
        self.stopping = True
        self.wakeup.set()

    def _connection_dir(self) -> Path:
        """Where kernels' connection files and runs' working folders go: a folder every account
        may pass through (the state directory is private), made fresh on each start (the one
        an earlier runner left is removed)."""
        record = self.jobs_dir / "kernels-dir"
        if record.exists():
            shutil.rmtree(record.read_text().strip(), ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix="himalia-job-kernels-"))
        os.chmod(folder, 0o711)
        record.write_text(str(folder))
        return folder

    def recover(self) -> None:
        """Runs an earlier runner left ``running`` failed, and retried by their job's policy."""
        now = service.utcnow()
        with self.db.session() as db:
            for run in service.orphaned_runs(db, os.getpid()):
                service.finish(db, run, FAILED, "the job runner stopped while this run was running")
                job = db.get(Job, run.job_id)
                retry = service.retry_of(db, job, run, now) if job else None
                log.warning("run %s was left running; failed%s", run.id,
                            f", retried as run {retry.id}" if retry else "")

    async def loop(self) -> None:
        while not self.stopping:
            self.wakeup.clear()
            try:
                wait = self.tick()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the runner
                log.exception("scheduler tick failed")
                wait = self.config.poll_seconds
            try:
                await asyncio.wait_for(self.wakeup.wait(), timeout=max(wait, 0.01))
            except asyncio.TimeoutError:
                pass

    def tick(self) -> float:
        """One pass: queue due slots, check cancellations, start runs; seconds to sleep."""
        now = service.utcnow()
        with self.db.session() as db:
            service.schedule_due(db, now, self.config.misfire_grace_seconds)
        if self.active:
            with self.db.session() as db:
                cancelled = db.scalars(select(JobRun.id).where(JobRun.id.in_(list(self.active)),
                                                               JobRun.cancel_requested.is_(True)))
                for run_id in cancelled:
                    self.active[run_id].kill(CANCELLED, "cancelled")
        for active in list(self.active.values()):
            if time.monotonic() > active.deadline:
                active.kill(TIMED_OUT, "it ran longer than its timeout")
        free = self.config.max_parallel - len(self.active)
        if free > 0:
            with self.db.session() as db:
                candidates = service.runnable(db, now, free)
                claimed = [r.id for r in candidates if service.claim(db, r.id, os.getpid())]
            for run_id in claimed:
                self._spawn(self.execute(run_id))
        self._spawn(self.pool.expire())
        with self.db.session() as db:
            upcoming = [t for t in (service.next_slot(db), service.next_queued_time(db)) if t]
        wait = self.config.poll_seconds
        for t in upcoming:
            wait = min(wait, (t - service.utcnow()).total_seconds())
        if self.active:
            wait = min(wait, 1.0)
        return wait

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- accounts and kernels ------------------------------------------------------------------
    async def account(self, owner: str) -> Account:
        """The Unix account runs of ``owner`` use (owners.py)."""
        return await self.owners.account(owner)

    def recipe(self, account: Account, owner: str, profile_name: str) -> KernelRecipe:
        cfg = self.config
        python = sys.executable
        env = {
            "HOME": account.home, "USER": account.name, "SHELL": "/bin/bash", "LANG": "C.UTF-8",
            "PATH": os.environ.get("PATH", os.defpath), "JUPYTERHUB_USER": owner,
            "HIMALIA_API_URL": cfg.api_url, "MLFLOW_TRACKING_URI": cfg.tracking_url,
            "MLFLOW_EXPERIMENT_NAME": f"users/{owner}", "MLFLOW_DISABLE_TELEMETRY": "true",
            "PYTHONUNBUFFERED": "1",
        }
        if cfg.user_environment:
            overlay = user_environment(cfg.user_environment)
            python = str(overlay.python)
            env["PATH"] = os.pathsep.join([*overlay.search_path(account.home), env["PATH"]])
            env["VIRTUAL_ENV"] = str(overlay.root)
        profile = self.profiles.get(profile_name)
        if profile is not None:
            if profile.gpus:
                raise ProfileError(f"profile {profile_name!r} needs {profile.gpus} GPU(s); the local "
                                   "job runner gives jobs no GPUs: choose a CPU profile")
            overrides = local_overrides(profile)
            env.update(overrides["environment"])
            if "mem_limit" in overrides:
                env["MEM_LIMIT"] = str(overrides["mem_limit"])
            if "cpu_limit" in overrides:
                env["CPU_LIMIT"] = str(overrides["cpu_limit"])
        argv = (python, "-m", KERNEL_MODULE, "-f", "{connection_file}")
        return KernelRecipe(key=(account.name, profile_name), argv=argv,
                            env=tuple(sorted(env.items())), cwd=account.home,
                            uid=account.uid, gid=account.gid)

    async def prewarm(self, owner: str, profile: str) -> None:
        """Have a kernel waiting for this owner's next run."""
        try:
            account = await self.account(owner)
            await self.pool.fill(self.recipe(account, owner, profile))
        except Exception as e:  # noqa: BLE001 - a run reports the same problem when it starts
            log.info("no warm kernel for %s/%s: %s", owner, profile, e)

    # -- tokens ----------------------------------------------------------------------------------
    async def mint_token(self, owner: str, run_id: int, seconds: int) -> tuple[str, str]:
        return await self.owners.mint_token(owner, f"himalia job run {run_id}", seconds,
                                            RUN_TOKEN_SCOPES)

    async def revoke_token(self, owner: str, token_id: str) -> None:
        if not await self.owners.revoke_token(owner, token_id):
            log.warning("could not revoke the token of a run of %s", owner)

    # -- one run ---------------------------------------------------------------------------------
    def run_dir(self, run_id: int) -> Path:
        folder = self.jobs_dir / "runs" / str(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        self._give(folder)
        return folder

    def _give(self, path: Path) -> None:
        """Files of runs belong to the API's account, which serves and removes them."""
        if self.config.files_uid is not None and os.geteuid() == 0:
            os.chown(path, self.config.files_uid, self.config.files_gid)

    async def execute(self, run_id: int) -> None:
        with self.db.session() as db:
            run = db.get(JobRun, run_id)
            job = db.get(Job, run.job_id)
            version = service.job_version(db, job, run.version)
            params = service.run_parameters(version, run.parameters)
            owner, profile = job.owner, job.profile or self.default_profile
            job_id = job.id
            timeout, name = job.timeout_seconds, job.name
            notebook_blob, inputs = version.notebook, dict(version.inputs)
            total = sum(1 for c in nbformat.reads(self.blobs.get(notebook_blob).decode(), 4).cells
                        if c.cell_type == "code") + (1 if params else 0)
            run.cells_total = total
        active = Active(run_id, time.monotonic() + timeout)
        self.active[run_id] = active
        folder = self.run_dir(run_id)
        runner_log = open(folder / "runner.log", "a")
        token_id = ""
        minting: asyncio.Future | None = None
        work = None
        state, reason, error = FAILED, "", {}

        began = time.monotonic()

        def note(message: str) -> None:
            elapsed = (time.monotonic() - began) * 1000
            runner_log.write(f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} "
                             f"+{elapsed:.0f}ms {message}\n")
            runner_log.flush()

        try:
            note(f"run {run_id} of job {name!r} v{run.version} as {owner}, profile {profile or '-'}")
            account = await self.account(owner)
            recipe = self.recipe(account, owner, profile)
            self.pool.recipes[recipe.key] = recipe
            # The token is made while the kernel is taken and papermill prepares the notebook.
            loop = asyncio.get_running_loop()
            minting = asyncio.ensure_future(self.mint_token(owner, run_id, timeout + 600))
            work = self.workdir(account, inputs)
            note(f"account {account.name} and working folder ready")

            def setup() -> str:
                token, _ = asyncio.run_coroutine_threadsafe(_wait(minting), loop).result(60)
                return _setup_code(token, run_id, job_id=job_id, job_name=name, cwd=work)

            input_path = self.blobs.path(notebook_blob)
            progress = Progress(self.db, run_id, total)

            def on_kernel(km) -> None:
                active.km = km
                note("kernel taken from the pool")
                if active.stop_state:  # cancelled while the kernel was being taken
                    active.stop_state, state_ = "", active.stop_state
                    active.kill(state_, active.stop_reason)

            with open(folder / "stdout.log", "w") as out, open(folder / "stderr.log", "w") as err:
                await asyncio.to_thread(
                    papermill.execute_notebook, str(input_path), str(folder / "output.ipynb"),
                    parameters=params, engine_name="himalia", kernel_name="himalia",
                    kernel_pool=self.pool, pool_key=recipe.key, setup_code=setup,
                    on_kernel=on_kernel, on_cell=progress.cell, progress_bar=False,
                    stdout_file=out, stderr_file=err, start_timeout=60, log_output=False)
            state, reason = SUCCEEDED, ""
        except PapermillExecutionError as e:
            first_line = next((line for line in (e.source or "").splitlines() if line.strip()), "")
            state, reason = FAILED, (f"{e.ename}: {e.evalue} (in the cell that starts "
                                     f"{first_line[:80]!r}, In [{e.exec_count}])")
            error = {"cell": e.cell_index, "execution_count": e.exec_count, "ename": e.ename,
                     "evalue": e.evalue, "traceback": e.traceback}
        except (AccountError, ProfileError) as e:
            state, reason = FAILED, str(e)
        except httpx.HTTPError as e:
            state, reason = FAILED, f"the hub did not give the run a token ({type(e).__name__})"
        except Exception as e:  # noqa: BLE001 - the kernel died, or papermill could not run it
            state, reason = FAILED, f"{type(e).__name__}: {e}"
        if active.stop_state:
            state, reason, error = active.stop_state, active.stop_reason, {}
        note(f"{state}{': ' + reason if reason else ''}")
        del self.active[run_id]
        forget(self.pids_dir, kernel_pid(active.km))
        token = ""
        if minting is not None:
            try:
                token, token_id = await minting
            except Exception:  # noqa: BLE001 - no token was made; the run says why it failed
                token, token_id = "", ""
        if token:
            await self.close_clusters(run_id, token)
        await self.conclude(run_id, state, reason, error)
        runner_log.close()
        if token_id:
            await self.revoke_token(owner, token_id)
        if work:
            shutil.rmtree(work, ignore_errors=True)
        await asyncio.to_thread(self.render_html, folder)
        for path in folder.iterdir():
            self._give(path)
        self.wakeup.set()

    async def close_clusters(self, run_id: int, token: str) -> None:
        """Stop the Dask clusters the run started (the gateway knows them by their ``job_run``
        option), with the run's own token."""
        if "/services/" not in self.config.api_url:
            return
        base = self.config.api_url.split("/services/", 1)[0] + "/services/dask-gateway/api/v1/clusters/"
        headers = {"Authorization": f"jupyterhub {token}"}
        try:
            r = await self.http.get(base, headers=headers, timeout=10)
            r.raise_for_status()
            for name, cluster in r.json().items():
                if str((cluster.get("options") or {}).get("job_run", "")) == str(run_id):
                    await self.http.delete(base + name, headers=headers, timeout=10)
        except (httpx.HTTPError, ValueError) as e:
            log.warning("could not stop the Dask clusters of run %s: %s", run_id, e)

    def workdir(self, account: Account, inputs: dict[str, str]) -> str:
        """A private folder of the owner's with the run's input files; the kernel's cwd."""
        work = Path(tempfile.mkdtemp(prefix="run-", dir=self.scratch))
        for rel, digest in inputs.items():
            target = work / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.blobs.path(digest), target)
        if account.uid is not None and os.geteuid() == 0:
            for folder, dirs, files in os.walk(work):
                for entry in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
                    os.chown(entry, account.uid, account.gid)
        os.chmod(work, 0o700)
        return str(work)

    async def conclude(self, run_id: int, state: str, reason: str, error: dict) -> None:
        """Record the end of a run, queue its retry, apply retention, notify."""
        now = service.utcnow()
        with self.db.session() as db:
            run = db.get(JobRun, run_id)
            job = db.get(Job, run.job_id)
            service.finish(db, run, state, reason, error)
            retry = service.retry_of(db, job, run, now) if job else None
            expired = service.expired_outputs(db, job) if job else []
            for old in expired:
                old.outputs_removed = True
            message = _notification(job, run, retry, self.config.public_url)
            notify = dict(job.notify or {}) if job else {}
            owner, profile = run.owner, job.profile or self.default_profile
        for old in expired:
            shutil.rmtree(self.jobs_dir / "runs" / str(old.id), ignore_errors=True)
        event = "success" if state == SUCCEEDED else "failure"
        if event in notify.get("on", ["failure"]):
            self._spawn(self.notify(notify, message))
        if retry is not None:
            self._spawn(self.prewarm(owner, profile))

    def render_html(self, folder: Path) -> None:
        source = folder / "output.ipynb"
        if not source.is_file():
            return
        from nbconvert import HTMLExporter

        try:
            body, _ = HTMLExporter().from_notebook_node(nbformat.read(source, as_version=4))
            tmp = folder / ".output.html"
            tmp.write_text(body)
            tmp.replace(folder / "output.html")
        except Exception as e:  # noqa: BLE001 - the notebook stays; the HTML is a convenience
            log.warning("no HTML for %s: %s", folder.name, e)

    async def notify(self, notify: dict, message: dict) -> None:
        if notify.get("webhook"):
            try:
                response = await self.http.post(notify["webhook"], json=message, timeout=10)
                if response.status_code >= 400:
                    log.warning("webhook of job %s answered %s", message["job"], response.status_code)
            except httpx.HTTPError as e:
                log.warning("webhook of job %s failed: %s", message["job"], type(e).__name__)
        if notify.get("email"):
            try:
                await asyncio.to_thread(send_email, self.config.smtp, notify["email"], message)
            except (OSError, smtplib.SMTPException, ValueError) as e:
                log.warning("e-mail for job %s failed: %s", message["job"], e)

    # -- control socket --------------------------------------------------------------------------
    async def serve_control(self) -> asyncio.AbstractServer:
        # Snapshot replies carry whole notebooks: lines up to 256 MB (control.MAX_LINE).
        return await control_socket(Path(self.config.socket), self.handle,
                                    self.config.files_gid if self.config.files_uid is not None else None)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                message = json.loads(line or b"{}")
            except ValueError:
                message = {}
            op = message.get("op")
            if op == "wake":
                self.wakeup.set()
                for owner, profile in self.owners_with_jobs():
                    self._spawn(self.prewarm(owner, profile))
                reply = {"ok": True}
            elif op == "snapshot":
                reply = await self.snapshot(message)
            else:
                reply = {"ok": False, "message": f"unknown op {op!r}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def owners_with_jobs(self) -> list[tuple[str, str]]:
        with self.db.session() as db:
            rows = db.execute(select(Job.owner, Job.profile).where(Job.paused.is_(False)).distinct())
            return [(owner, profile or self.default_profile) for owner, profile in rows]

    async def snapshot(self, message: dict) -> dict:
        """Read a notebook and input files from the owner's home, as the owner."""
        try:
            account = await self.account(str(message.get("owner")))
        except (AccountError, httpx.HTTPError) as e:
            return {"ok": False, "status": 422, "field": "path", "message": str(e)}
        argv = [sys.executable, "-m", "himalia.hub.jobs.snapshot", account.home,
                json.dumps({"path": message.get("path"), "inputs": message.get("inputs") or [],
                            "max_bytes": int(message.get("max_bytes") or 0)})]
        kw = {}
        if account.uid is not None and os.geteuid() == 0:
            kw = {"user": account.uid, "group": account.gid, "extra_groups": []}
        proc = await asyncio.to_thread(subprocess.run, argv, capture_output=True, timeout=60,
                                       cwd="/", **kw)
        try:
            return json.loads(proc.stdout)
        except ValueError:
            return {"ok": False, "status": 500, "field": "path",
                    "message": f"reading the files failed: {proc.stderr.decode()[-300:]}"}


class Progress:
    """Writes cells done (and each cell's seconds) to the run, at most a few times a second."""

    def __init__(self, db: Database, run_id: int, total: int):
        self.db, self.run_id, self.total = db, run_id, total
        self.seconds: list[float] = []
        self.last = time.monotonic()

    def cell(self, done: int, total: int, seconds: float) -> None:
        self.seconds.append(round(seconds, 4))
        now = time.monotonic()
        if done < total and now - self.last < 0.25:
            return
        self.last = now
        with self.db.session() as db:
            run = db.get(JobRun, self.run_id)
            if run is not None and run.state == RUNNING:
                run.cells_done, run.cells_total = done, total
                run.cell_seconds = list(self.seconds)


async def _wait(future):
    return await future


def _setup_code(token: str, run_id: int, *, job_id: int, job_name: str, cwd: str) -> str:
    """What the kernel runs, silently, before the notebook: the run's identity and folder."""
    env = {"JUPYTERHUB_API_TOKEN": token, "MLFLOW_TRACKING_TOKEN": token,
           "HIMALIA_JOB_RUN_ID": str(run_id), "HIMALIA_JOB_ID": str(job_id),
           "HIMALIA_JOB_NAME": job_name}
    return (f"import os as _os\n_os.environ.update({json.dumps(env)})\n"
            f"_os.chdir({json.dumps(cwd)})\ndel _os\n")


def _notification(job: Job | None, run: JobRun, retry: JobRun | None, public_url: str) -> dict:
    base = public_url.rstrip("/")
    return {
        "event": "success" if run.state == SUCCEEDED else "failure",
        "job": job.name if job else "", "job_id": run.job_id, "owner": run.owner,
        "run": run.id, "state": run.state, "reason": run.reason, "attempt": run.attempt,
        "retry": retry.id if retry else None,
        "output": f"{base}/services/himalia/api/v1/runs/{run.id}/output?format=html",
    }


def send_email(smtp: dict, to: list[str], message: dict) -> None:
    if not smtp.get("host"):
        raise ValueError("no SMTP server is configured (c.HimaliaConfig.smtp)")
    mail = EmailMessage()
    mail["Subject"] = f"[himalia] job {message['job']} run {message['run']}: {message['state']}"
    mail["From"] = smtp.get("sender") or "himalia@localhost"
    mail["To"] = ", ".join(to)
    lines = [f"Job {message['job']} (owner {message['owner']}), run {message['run']} "
             f"attempt {message['attempt']}: {message['state']}."]
    if message["reason"]:
        lines.append(f"Reason: {message['reason']}")
    if message["retry"]:
        lines.append(f"It will be retried as run {message['retry']}.")
    lines.append(f"Output: {message['output']}")
    mail.set_content("\n".join(lines) + "\n")
    with smtplib.SMTP(smtp["host"], int(smtp.get("port", 25)), timeout=30) as client:
        if smtp.get("starttls"):
            client.starttls()
        if smtp.get("username"):
            password = Path(smtp["password_file"]).read_text().strip() if smtp.get("password_file") else ""
            client.login(smtp["username"], password)
        client.send_message(mail)


def main() -> None:
    logging.basicConfig(level=os.environ.get("HIMALIA_LOG_LEVEL", "INFO").upper(),
                        format="[%(asctime)s %(name)s %(levelname)s] %(message)s")
    if "--supervised" not in sys.argv[1:]:
        sys.exit(keep_running([sys.executable, "-m", "himalia.hub.jobs.runner", "--supervised"],
                              "the job runner"))
    config = RunnerConfig(**json.loads(os.environ["HIMALIA_JOBS_RUNNER"]))
    runner = Runner(config, os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
    asyncio.run(runner.main())


if __name__ == "__main__":
    main()
