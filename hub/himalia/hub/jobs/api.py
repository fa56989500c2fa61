"""``/api/v1/jobs`` and ``/api/v1/runs``: thin routes over :mod:`.service`.

Who may do what (authz.py): scientists create and run their own jobs; admins see and act on
all; a viewer (or any role) reads the outputs and values of jobs their owner published.
Anything else answers 404, so nobody learns which jobs other people have.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..services.api.authz import ADMIN, allow, require_owner_or_admin
from ..services.api.identity import Identity
from ..storage import Database
from . import control, service
from .models import RUNNING, TERMINAL, Job, JobRun, RunValue
from .service import BlobStore, JobError, Limits, NotFound, Snapshot

PARQUET = "application/vnd.apache.parquet"
SPEC_KEYS = {"name", "notebook", "path", "inputs", "parameters", "schedule", "timezone", "profile",
             "timeout_seconds", "max_retries", "retry_backoff_seconds", "concurrency", "notify",
             "keep_runs", "paused", "published"}


@dataclass
class JobsSettings:
    """Where jobs keep their files and how the API reaches the runner."""

    root: Path
    runner_socket: Path
    limits: Limits = field(default_factory=Limits)

    @property
    def blobs(self) -> BlobStore:
        return BlobStore(self.root / "blobs")

    def run_dir(self, run_id: int) -> Path:
        return self.root / "runs" / str(run_id)


def iso(when: datetime | None) -> str | None:
    when = service.aware(when)
    return when.isoformat() if when else None


def job_json(db: Session, job: Job) -> dict:
    version = service.job_version(db, job)
    upcoming = []
    if job.schedule and not job.paused:
        upcoming = [t.isoformat() for t in service.next_times(job.schedule, job.timezone,
                                                               service.utcnow(), 3)]
    return {
        "id": job.id, "name": job.name, "owner": job.owner, "version": job.version,
        "schedule": job.schedule, "timezone": job.timezone, "profile": job.profile,
        "timeout_seconds": job.timeout_seconds, "max_retries": job.max_retries,
        "retry_backoff_seconds": job.retry_backoff_seconds, "concurrency": job.concurrency,
        "notify": job.notify, "keep_runs": job.keep_runs, "paused": job.paused,
        "published": job.published, "parameters": version.parameters,
        "inputs": sorted(version.inputs), "source_path": version.source_path,
        "next_runs": upcoming, "created_at": iso(job.created_at), "updated_at": iso(job.updated_at),
    }


def run_json(run: JobRun, job: Job, settings: JobsSettings) -> dict:
    folder = settings.run_dir(run.id)
    return {
        "id": run.id, "job_id": run.job_id, "job": job.name, "owner": run.owner,
        "version": run.version, "slot": iso(run.slot), "trigger": run.trigger,
        "attempt": run.attempt, "retry_of": run.retry_of, "parameters": run.parameters,
        "state": run.state, "reason": run.reason, "error": run.error or None,
        "progress": {"cells_done": run.cells_done, "cells_total": run.cells_total,
                     "fraction": service.progress(run)},
        "cell_seconds": run.cell_seconds, "created_at": iso(run.created_at),
        "started_at": iso(run.started_at), "finished_at": iso(run.finished_at),
        "not_before": iso(run.not_before), "duration_seconds": run.duration_seconds,
        "cancel_requested": run.cancel_requested,
        "outputs": {
            "ipynb": not run.outputs_removed and (folder / "output.ipynb").is_file(),
            "html": not run.outputs_removed and (folder / "output.html").is_file(),
        },
    }


def make_router(prefix: str, db: Database, settings: JobsSettings) -> APIRouter:
    router = APIRouter(prefix=prefix + "/api/v1", dependencies=[Depends(allow())], tags=["jobs"])
    blobs = settings.blobs

    def wake() -> None:
        control.wake(settings.runner_socket)

    def find_job(session: Session, who: Identity, ref: str, owner: str | None = None, *,
                 published_ok: bool = False) -> Job:
        """The job ``ref`` (id, or name of the caller's or ``owner``'s job) if ``who`` may see it."""
        if ref.isdigit():
            job = session.get(Job, int(ref))
        else:
            job = session.scalar(select(Job).where(Job.owner == (owner or who.name), Job.name == ref))
        if job is None:
            raise NotFound(f"Job {ref!r}")
        if who.name == job.owner or ADMIN in who.roles or (published_ok and job.published):
            return job
        raise NotFound(f"Job {ref!r}")

    def find_run(session: Session, who: Identity, run_id: int, *, published_ok: bool = False
                 ) -> tuple[JobRun, Job]:
        run = session.get(JobRun, run_id)
        job = session.get(Job, run.job_id) if run else None
        if run is None or job is None or not (
                who.name == run.owner or ADMIN in who.roles or (published_ok and job.published)):
            raise NotFound(f"Run {run_id}")
        return run, job

    async def snapshot_from(who: Identity, owner: str, spec: dict) -> Snapshot | None:
        """The notebook and inputs a request names: inline JSON, or paths in the owner's home
        that the runner reads as the owner."""
        inputs = spec.get("inputs") or []
        if not isinstance(inputs, list) or not all(isinstance(p, str) for p in inputs):
            raise JobError("must be a list of paths in your home folder", field="inputs")
        notebook, path = spec.get("notebook"), spec.get("path")
        if notebook is not None and path is not None:
            raise JobError("give either 'notebook' (its JSON) or 'path', not both", field="notebook")
        if notebook is None and path is None and not inputs:
            return None
        limit = settings.limits.max_notebook_bytes
        files: dict[str, bytes] = {}
        source = ""
        if path is not None or inputs:
            if path is not None and not isinstance(path, str):
                raise JobError("must be a path in your home folder", field="path")
            try:
                reply = await control.request(settings.runner_socket, {
                    "op": "snapshot", "owner": owner, "path": path, "inputs": inputs,
                    "max_bytes": limit})
            except control.RunnerUnavailable as e:
                raise HTTPException(503, f"Cannot read files from your home now: {e}. "
                                         "Send the notebook's JSON instead, or try again.") from None
            if not reply.get("ok"):
                raise JobError(reply.get("message", "cannot read it"),
                                     status=reply.get("status", 422), field=reply.get("field", "path"))
            files = {p: base64.b64decode(d) for p, d in reply.get("inputs", {}).items()}
            if path is not None:
                notebook = base64.b64decode(reply["notebook"])
                source = reply.get("source_path", path)
        if notebook is None:
            return Snapshot(None, files, source)  # type: ignore[arg-type]
        nb = service.read_notebook(notebook, max_bytes=limit)
        return Snapshot(nb, files, source)

    def check_keys(spec: Any) -> dict:
        if not isinstance(spec, dict):
            raise JobError("the body must be a JSON object")
        unknown = set(spec) - SPEC_KEYS
        if unknown:
            raise JobError(f"unknown field(s) {sorted(unknown)}; the fields are "
                                 f"{', '.join(sorted(SPEC_KEYS))}", field=sorted(unknown)[0])
        return spec

    @router.post("/jobs", status_code=201, summary="Create a job from a notebook (JSON or a path)",
                 dependencies=[Depends(allow("scientist"))])
    async def create_job(request: Request, spec: Any = Body(...),
                         who: Identity = Depends(allow("scientist"))) -> dict:
        spec = check_keys(spec)
        if who.kind != "user":
            raise HTTPException(403, f"Jobs run as the person who owns them; '{who.name}' is a "
                                     "service: create the job with that person's token.")
        if spec.get("notebook") is None and spec.get("path") is None:
            raise JobError("give the notebook's JSON ('notebook') or its path in your "
                                 "home folder ('path')", field="notebook")
        snapshot = await snapshot_from(who, who.name, spec)
        with db.session() as session:
            job = service.create_job(session, blobs, who.name, spec, snapshot, settings.limits)
            answer = job_json(session, job)
        db.audit(who.name, "job.create", f"job:{answer['id']}", name=answer["name"])
        wake()
        return answer

    @router.get("/jobs", summary="Your jobs (an admin: everyone's)")
    def list_jobs(offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=500),
                  who: Identity = Depends(allow())) -> dict:
        with db.session() as session:
            jobs = service.visible_jobs(session, who.name, ADMIN in who.roles, offset=offset, limit=limit)
            return {"jobs": [job_json(session, j) for j in jobs], "offset": offset, "limit": limit}

    @router.get("/jobs/schedule-preview", summary="The next times a cron expression fires")
    def schedule_preview(cron: str, timezone: str = "UTC", count: int = Query(5, ge=1, le=20),
                         who: Identity = Depends(allow())) -> dict:
        expr = service.check_schedule(cron)
        tz = service.check_timezone(timezone)
        if expr is None:
            return {"next": []}
        return {"next": [t.isoformat() for t in service.next_times(expr, tz, service.utcnow(), count)]}

    @router.post("/jobs/inspect", summary="The typed parameters of a notebook (JSON or a path)",
                 dependencies=[Depends(allow("scientist"))])
    async def inspect(spec: Any = Body(...), who: Identity = Depends(allow("scientist"))) -> dict:
        """What a job made from this notebook would take: ``{"parameters": {name: {"type",
        "default", "help"}}}``, read from its cell tagged ``parameters``. Nothing is stored."""
        if not isinstance(spec, dict) or set(spec) - {"notebook", "path"} or len(spec) != 1:
            raise JobError("the body is {\"notebook\": <JSON>} or {\"path\": <path in your "
                                 "home folder>}", field="notebook")
        snapshot = await snapshot_from(who, who.name, spec)
        return {"parameters": service.notebook_parameters(snapshot.notebook)}

    @router.get("/jobs/{ref}", summary="One job, by id or name")
    def get_job(ref: str, owner: str | None = None, who: Identity = Depends(allow())) -> dict:
        with db.session() as session:
            return job_json(session, find_job(session, who, ref, owner, published_ok=True))

    @router.patch("/jobs/{ref}", summary="Change a job; a new notebook or defaults make a new version")
    async def update_job(ref: str, spec: Any = Body(...), who: Identity = Depends(allow("scientist"))) -> dict:
        spec = check_keys(spec)
        if "name" in spec:
            raise JobError("a job keeps its name; create a new job instead", field="name")
        with db.session() as session:
            owner = find_job(session, who, ref).owner
        snapshot = await snapshot_from(who, owner, spec)
        with db.session() as session:
            job = find_job(session, who, ref)
            if snapshot is not None and snapshot.notebook is None:
                current = service.job_version(session, job)
                nb = nbformat.reads(blobs.get(current.notebook).decode(), as_version=4)
                snapshot = Snapshot(nb, snapshot.inputs, current.source_path)
            job = service.update_job(session, blobs, job, spec, snapshot, settings.limits)
            answer = job_json(session, job)
        db.audit(who.name, "job.update", f"job:{answer['id']}", fields=sorted(spec))
        wake()
        return answer

    @router.delete("/jobs/{ref}", status_code=204, summary="Delete a job, its runs and outputs")
    def delete_job(ref: str, who: Identity = Depends(allow("scientist"))) -> Response:
        with db.session() as session:
            job = find_job(session, who, ref)
            running = session.scalar(select(JobRun.id).where(JobRun.job_id == job.id,
                                                             JobRun.state == RUNNING))
            if running:
                raise HTTPException(409, f"Run {running} of this job is running: cancel it first.")
            job_id = job.id
            runs = service.delete_job(session, job)
        for run_id in runs:
            _remove_tree(settings.run_dir(run_id))
        db.audit(who.name, "job.delete", f"job:{job_id}")
        wake()
        return Response(status_code=204)

    @router.get("/jobs/{ref}/runs", summary="A job's runs, newest first")
    def list_runs(ref: str, offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=500),
                  who: Identity = Depends(allow())) -> dict:
        with db.session() as session:
            job = find_job(session, who, ref, published_ok=True)
            runs = session.scalars(select(JobRun).where(JobRun.job_id == job.id)
                                   .order_by(JobRun.id.desc()).offset(offset).limit(limit))
            return {"runs": [run_json(r, job, settings) for r in runs], "offset": offset, "limit": limit}

    @router.post("/jobs/{ref}/runs", status_code=201, summary="Run a job now, with parameter overrides")
    def submit_run(ref: str, body: Any = Body(None), who: Identity = Depends(allow("scientist"))) -> dict:
        body = body or {}
        if not isinstance(body, dict) or set(body) - {"parameters"}:
            raise JobError("the body is {\"parameters\": {name: value}}")
        with db.session() as session:
            job = find_job(session, who, ref)
            run = service.submit_run(session, job, body.get("parameters"))
            answer = run_json(run, job, settings)
        db.audit(who.name, "run.submit", f"run:{answer['id']}", job=answer["job_id"])
        wake()
        return answer

    @router.get("/jobs/{ref}/values/{name}", summary="The latest successful value of a job")
    def latest_value(ref: str, name: str, owner: str | None = None,
                     who: Identity = Depends(allow())) -> Response:
        with db.session() as session:
            job = find_job(session, who, ref, owner, published_ok=True)
            found = service.latest_value(session, job, name)
            if found is None:
                raise HTTPException(404, f"No succeeded run of job {job.name!r} recorded {name!r}.")
            run, value = found
            return _value_response(value, run)

    @router.get("/runs/{run_id}", summary="A run: state, progress, error, timings")
    def get_run(run_id: int, who: Identity = Depends(allow())) -> dict:
        with db.session() as session:
            run, job = find_run(session, who, run_id, published_ok=True)
            return run_json(run, job, settings)

    @router.post("/runs/{run_id}/cancel", summary="Cancel a queued or running run")
    def cancel_run(run_id: int, who: Identity = Depends(allow("scientist"))) -> dict:
        with db.session() as session:
            run, job = find_run(session, who, run_id)
            service.cancel_run(session, run)
            answer = run_json(run, job, settings)
        db.audit(who.name, "run.cancel", f"run:{run_id}")
        wake()
        return answer

    @router.post("/runs/{run_id}/rerun", status_code=201,
                 summary="Run again exactly: the same version, parameters and inputs")
    def rerun(run_id: int, who: Identity = Depends(allow("scientist"))) -> dict:
        with db.session() as session:
            run, job = find_run(session, who, run_id)
            new = service.rerun(session, job, run)
            answer = run_json(new, job, settings)
        db.audit(who.name, "run.rerun", f"run:{answer['id']}", of=run_id)
        wake()
        return answer

    @router.delete("/runs/{run_id}", status_code=204, summary="Delete an ended run and its outputs")
    def delete_run(run_id: int, who: Identity = Depends(allow("scientist"))) -> Response:
        with db.session() as session:
            run, _ = find_run(session, who, run_id)
            if run.state not in TERMINAL:
                raise HTTPException(409, f"Run {run_id} is {run.state}: cancel it first.")
            session.execute(RunValue.__table__.delete().where(RunValue.run_id == run_id))
            session.delete(run)
        _remove_tree(settings.run_dir(run_id))
        db.audit(who.name, "run.delete", f"run:{run_id}")
        return Response(status_code=204)

    @router.get("/runs/{run_id}/output", summary="The executed notebook (ipynb) or its HTML")
    def output(run_id: int, format: str = "ipynb", who: Identity = Depends(allow())) -> Response:
        if format not in ("ipynb", "html"):
            raise HTTPException(422, "format: use ipynb or html")
        with db.session() as session:
            run, _ = find_run(session, who, run_id, published_ok=True)
            removed = run.outputs_removed
            state = run.state
        path = settings.run_dir(run_id) / f"output.{format}"
        if removed:
            raise HTTPException(410, f"The outputs of run {run_id} were removed by the job's "
                                     "retention (keep_runs).")
        if not path.is_file():
            when = "when the run starts" if format == "ipynb" else "shortly after the run ends"
            raise HTTPException(404, f"Run {run_id} ({state}) has no {format} output yet; it "
                                     f"appears {when}.")
        media = "application/x-ipynb+json" if format == "ipynb" else "text/html"
        return FileResponse(path, media_type=media, filename=f"run-{run_id}.{format}",
                            content_disposition_type="inline")

    @router.get("/runs/{run_id}/logs", summary="The run's stdout, stderr and runner log")
    def logs(run_id: int, who: Identity = Depends(allow("scientist"))) -> PlainTextResponse:
        with db.session() as session:
            find_run(session, who, run_id)
        folder = settings.run_dir(run_id)
        parts = []
        for name in ("runner.log", "stdout.log", "stderr.log"):
            path = folder / name
            if path.is_file():
                parts.append(f"==> {name} <==\n{path.read_text(errors='replace')}")
        return PlainTextResponse("\n".join(parts))

    @router.get("/runs/{run_id}/values", summary="Values the run recorded")
    def values(run_id: int, who: Identity = Depends(allow())) -> dict:
        with db.session() as session:
            find_run(session, who, run_id, published_ok=True)
            rows = session.scalars(select(RunValue).where(RunValue.run_id == run_id).order_by(RunValue.id))
            return {"values": {r.name: ({"kind": "json", "value": r.value} if r.kind == "json"
                                        else {"kind": "parquet", "sha256": r.blob}) for r in rows}}

    @router.get("/runs/{run_id}/values/{name}", summary="One recorded value (Parquet for tables)")
    def value(run_id: int, name: str, who: Identity = Depends(allow())) -> Response:
        with db.session() as session:
            run, _ = find_run(session, who, run_id, published_ok=True)
            row = session.scalar(select(RunValue).where(RunValue.run_id == run_id, RunValue.name == name))
            if row is None:
                raise HTTPException(404, f"Run {run_id} recorded no value {name!r}.")
            return _value_response(row, run)

    @router.put("/runs/{run_id}/values/{name}", summary="Record a value from the running notebook")
    async def put_value(run_id: int, name: str, request: Request,
                        who: Identity = Depends(allow("scientist"))) -> dict:
        body = await request.body()
        with db.session() as session:
            run, _ = find_run(session, who, run_id)
            require_owner_or_admin(who, run.owner, f"run {run_id}")
            if request.headers.get("content-type", "").startswith(PARQUET):
                row = service.record_value(session, blobs, run, name, parquet=body)
            else:
                try:
                    payload = json.loads(body or b"null")
                except ValueError:
                    raise JobError("the body must be JSON {\"value\": ...} or Parquet "
                                   f"(Content-Type: {PARQUET})", field="body") from None
                if not isinstance(payload, dict) or "value" not in payload:
                    raise JobError("the body is {\"value\": <JSON>}", field="body")
                row = service.record_value(session, blobs, run, name, value=payload["value"])
            answer = {"run": run_id, "name": row.name, "kind": row.kind}
        db.audit(who.name, "run.value", f"run:{run_id}", name=answer["name"], kind=answer["kind"])
        return answer

    def _value_response(row: RunValue, run: JobRun) -> Response:
        headers = {"X-Himalia-Run": str(run.id)}
        if row.kind == "parquet":
            return Response(blobs.get(row.blob), media_type=PARQUET, headers=headers)
        return JSONResponse({"run": run.id, "name": row.name, "value": row.value,
                             "finished_at": iso(run.finished_at)}, headers=headers)

    return router


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
