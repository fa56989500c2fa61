"""Fast, loss-free metric logging to MLflow from a training loop.

``log_metric`` only appends the point to an in-memory buffer; one background thread stores the
points with MLflow's batch API (``log-batch``, at most ``MAX_METRICS_PER_BATCH`` metrics per
request, grouped per run). What is guaranteed:

* **Nothing is dropped silently.** While the tracking server is unreachable or answers 5xx/429,
  points stay in memory and are sent again with exponential backoff until it answers; the outage
  is reported once (a ``himalia.sdk.tracking`` logging warning) and so is the recovery.
* **Bad points do not block good ones.** A point MLflow will never accept (an invalid key, a
  value that is not a number, a deleted or unknown run) is moved to :func:`failed` with MLflow's
  error, reported with the count, and the points behind it are stored.
* **Points are stored when you ask and when you stop:** :func:`flush` blocks until everything
  logged before the call is stored (or failed); :func:`end_run` flushes before ending the run;
  at interpreter exit (also a Jupyter kernel's shutdown) the buffer is flushed for up to
  ``MetricBuffer.exit_timeout`` seconds, and whatever the server could not take by then is
  written to a JSON-lines file whose path is logged (one point per line: ``run_id``, ``key``,
  ``value``, ``timestamp``, ``step``, ``tracking_uri``; replay it with :func:`log_metric`).
* **Each point is stored once.** A batch is resent only when its request failed; should a
  request time out after the server stored it, MLflow's SQL store ignores the exact duplicate
  (same key, value, timestamp and step) that the retry sends.

The background requests use their own short timeout and no hidden retries, so an outage is seen
within seconds; the process-wide ``MLFLOW_HTTP_REQUEST_*`` settings that govern your own
synchronous MLflow calls are left alone. Points go to the tracking URI that was current when
their run was first logged to.

Typical use::

    import mlflow
    from himalia.sdk import tracking

    mlflow.start_run()
    for step in range(10_000):
        tracking.log_metric("loss", loss, step=step)
    tracking.end_run()          # flush, then mlflow.end_run()
"""

from __future__ import annotations

import atexit
import json
import logging
import operator
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import mlflow
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.protos.service_pb2 import GetRun, LogBatch, MlflowService
from mlflow.tracking import MlflowClient
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.proto_json_utils import message_to_json
from mlflow.utils.rest_utils import (_REST_API_PATH_PREFIX, extract_api_info_for_service,
                                     http_request, verify_rest_response)
from mlflow.utils.validation import MAX_ENTITIES_PER_BATCH, MAX_METRICS_PER_BATCH, _validate_metric
from urllib3.util.retry import Retry

__all__ = ["FailedPoint", "MetricBuffer", "end_run", "failed", "flush", "last_run_id", "log_metric",
           "log_metrics", "pending", "set_last_run_id"]

logger = logging.getLogger(__name__)

BATCH_SIZE = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH)
NO_ACTIVE_RUN = "no active run: start one with mlflow.start_run() or %track start"
_ENDPOINTS = extract_api_info_for_service(MlflowService, _REST_API_PATH_PREFIX)
_INT64 = 2**63
# 4xx answers that can succeed later: credentials get fixed, rate limits pass.
_RETRYABLE_CLIENT_STATUS = frozenset({401, 403, 408, 429})


@dataclass(frozen=True)
class FailedPoint:
    """A point MLflow refused for good, with MLflow's reason."""

    run_id: str
    key: str
    value: float
    timestamp: int
    step: int
    error: str


class _Unreachable(Exception):
    """The tracking server did not take a batch for a reason that may pass (down, 5xx, timeout)."""


class _RunRefused(Exception):
    """The run itself refuses points (deleted or unknown): none of its points can be stored."""


def _will_never_succeed(error: Exception) -> bool:
    if not isinstance(error, MlflowException):
        return False
    status = error.get_http_status_code()
    return 400 <= status < 500 and status not in _RETRYABLE_CLIENT_STATUS


def _brief(error: Exception, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _outage_reason(error: Exception) -> str:
    """The innermost cause of a failed request, e.g. "Connection refused" rather than MLflow's
    wrapping of requests' wrapping of urllib3's error."""
    while error.__cause__ or error.__context__:
        error = error.__cause__ or error.__context__
    reason = getattr(error.args[0], "reason", None) if error.args else None  # urllib3's MaxRetryError
    return _brief(reason or error)


def _check_point(point: tuple) -> None:
    """Raise ``MlflowException`` for a point MLflow's server would refuse (the same checks)."""
    _, key, value, timestamp, step = point
    _validate_metric(key, value, timestamp, step)
    if not (0 <= timestamp < _INT64 and -_INT64 <= step < _INT64):
        raise MlflowException.invalid_parameter_value(
            f"Metric {key!r}: timestamp {timestamp} or step {step} is outside the 64-bit range")


def _metric_protos(points: list[tuple]) -> list:
    return [Metric(key, value, timestamp, step).to_proto() for _, key, value, timestamp, step in points]


class _RestSender:
    """Talks to an ``http(s)://`` tracking server with a short timeout and no retries of its own:
    the buffer's backoff decides when to try again, and the caller's MLflow settings stay as
    they are."""

    def __init__(self, uri: str, timeout: float):
        self.uri = uri
        self.timeout = timeout

    def _call(self, api, body: dict) -> dict:
        endpoint, method = _ENDPOINTS[api]
        payload = {"params": body} if method == "GET" else {"json": body}
        response = http_request(get_default_host_creds(self.uri), endpoint, method, max_retries=0,
                                timeout=self.timeout, **payload)
        return verify_rest_response(response, endpoint).json()

    def log_batch(self, run_id: str, points: list[tuple]) -> None:
        body = json.loads(message_to_json(LogBatch(run_id=run_id, metrics=_metric_protos(points))))
        self._call(LogBatch, body)

    def run_is_active(self, run_id: str) -> bool:
        return self._call(GetRun, {"run_id": run_id})["run"]["info"].get("lifecycle_stage") == "active"


class _ClientSender:
    """Any other tracking URI (a local ``sqlite:`` or file store, Databricks): MlflowClient."""

    def __init__(self, uri: str):
        self.uri = uri
        self.client = MlflowClient(uri)

    def log_batch(self, run_id: str, points: list[tuple]) -> None:
        metrics = [Metric(key, value, timestamp, step) for _, key, value, timestamp, step in points]
        self.client.log_batch(run_id, metrics=metrics, synchronous=True)

    def run_is_active(self, run_id: str) -> bool:
        return self.client.get_run(run_id).info.lifecycle_stage == "active"


class MetricBuffer:
    """Buffers metric points and stores them from one background daemon thread.

    ``add`` costs a float conversion and an append under a lock; the thread wakes every
    ``interval`` seconds, when a full batch waits, or on :meth:`flush`. While the server is away
    it retries with exponential backoff (``backoff_factor`` doubling up to ``backoff_max``
    seconds; at most ``flush_poll`` seconds apart while someone waits in :meth:`flush`).
    ``request_timeout`` bounds each background request. ``failed`` lists the points MLflow
    refused for good.
    """

    def __init__(self, interval: float = 0.5, request_timeout: float = 5.0, backoff_factor: float = 0.5,
                 backoff_max: float = 30.0, flush_poll: float = 1.0, exit_timeout: float = 10.0,
                 spill_dir: Path | None = None):
        self.interval = interval
        self.request_timeout = request_timeout
        self.backoff_factor = backoff_factor
        self.backoff_max = backoff_max
        self.flush_poll = flush_poll
        self.exit_timeout = exit_timeout
        self.spill_dir = spill_dir or Path.home() / ".himalia" / "unsent-metrics"
        self.failed: list[FailedPoint] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the sender waits here
        self._settled_cond = threading.Condition(self._lock)  # flush() waits here
        self._queue: deque[tuple] = deque()
        self._enqueued = 0  # points ever added
        self._settled = 0  # every point added before this count is stored or failed
        self._inflight = 0  # points taken by the sender, neither stored nor failed yet
        self._flush_requested = False
        self._waiters = 0
        self._stop = False
        self._uris: dict[str, str] = {}  # run id -> tracking URI its points go to
        # Only the sender thread touches these.
        self._work: dict[str, list[tuple]] = {}
        self._senders: dict[str, _RestSender | _ClientSender] = {}
        self._away: dict[str, float] = {}  # tracking URI -> when it stopped answering
        self._active_runs: set[str] = set()  # runs seen active during this cycle
        self._retry: Retry | None = None
        self._thread = threading.Thread(target=self._run, name="himalia-metric-buffer", daemon=True)
        self._thread.start()

    # -- the caller's side -------------------------------------------------------------------
    def add(self, run_id: str, key: str, value, step: int | None = None,
            timestamp: int | None = None) -> None:
        """Queue one point (``timestamp`` in milliseconds, default now; ``step`` default 0).

        Raises ``TypeError``/``ValueError`` at once for a value that is not a number or a step
        that is not an integer; every other check happens in the background.
        """
        point = (run_id, key, float(value), int(time.time() * 1000) if timestamp is None else int(timestamp),
                 0 if step is None else operator.index(step))
        if run_id not in self._uris:
            self._uris[run_id] = mlflow.get_tracking_uri()
        with self._lock:
            self._queue.append(point)
            self._enqueued += 1
            if len(self._queue) == BATCH_SIZE:
                self._wake.notify()

    def add_many(self, run_id: str, metrics: Mapping[str, float], step: int | None = None,
                 timestamp: int | None = None) -> None:
        """Queue one point per ``{key: value}``, all with the same step and timestamp."""
        timestamp = int(time.time() * 1000) if timestamp is None else int(timestamp)
        step = 0 if step is None else operator.index(step)
        points = [(run_id, key, float(value), timestamp, step) for key, value in metrics.items()]
        if run_id not in self._uris:
            self._uris[run_id] = mlflow.get_tracking_uri()
        with self._lock:
            before = len(self._queue)
            self._queue.extend(points)
            self._enqueued += len(points)
            if before < BATCH_SIZE <= len(self._queue):
                self._wake.notify()

    def pending(self) -> int:
        """Points neither stored nor failed yet."""
        with self._lock:
            return len(self._queue) + self._inflight

    def flush(self, timeout: float | None = None) -> int:
        """Block until every point added before the call is stored (or moved to ``failed``), or
        ``timeout`` seconds pass. Returns 0 when done, else the number of points still waiting
        (kept and retried; nothing is dropped)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._enqueued
            if self._settled >= target:
                return 0
            if self._stop:
                return len(self._queue) + self._inflight
            self._waiters += 1
            self._flush_requested = True
            self._wake.notify()
            try:
                while self._settled < target:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    self._settled_cond.wait(remaining)
            finally:
                self._waiters -= 1
            return 0 if self._settled >= target else len(self._queue) + self._inflight

    def close(self, timeout: float | None = None) -> int:
        """Flush (up to ``timeout``) and stop the thread; returns the points left unsent, which
        :meth:`spill` can save."""
        remaining = self.flush(timeout)
        with self._lock:
            self._stop = True
            self._wake.notify()
        self._thread.join(self.request_timeout + 1)
        return remaining

    def spill(self) -> Path | None:
        """Write the points not stored yet to a JSON-lines file (after :meth:`close`); its path,
        or None when there are none."""
        with self._lock:
            points = [p for run in self._work.values() for p in run] + list(self._queue)
        if not points:
            return None
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        path = self.spill_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.jsonl"
        with path.open("w") as out:
            for run_id, key, value, timestamp, step in points:
                out.write(json.dumps({"run_id": run_id, "key": key, "value": value, "timestamp": timestamp,
                                      "step": step, "tracking_uri": self._uris.get(run_id)}) + "\n")
        return path

    # -- the sender thread -------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                delay = self.interval
                if self._retry is not None:
                    delay = max(delay, self._retry.get_backoff_time())
                if self._waiters:
                    delay = min(delay, self.flush_poll)
                deadline = time.monotonic() + delay
                while not (self._stop or self._flush_requested):
                    if self._retry is None and len(self._queue) >= BATCH_SIZE:
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake.wait(remaining)
                if self._stop:
                    return
                self._flush_requested = False
                taken = list(self._queue)
                self._queue.clear()
                self._inflight += len(taken)
                cut = self._enqueued
            try:
                down = self._cycle(taken)
            except Exception as e:  # a bug must not stop the sender: keep the points, retry
                logger.exception("himalia tracking: unexpected error while storing metric points")
                down = {"?": e}
            self._after_cycle(down)
            with self._lock:
                if not self._work:
                    self._settled = cut
                    self._settled_cond.notify_all()

    def _after_cycle(self, down: dict[str, Exception]) -> None:
        waiting = self.pending()
        for uri, error in down.items():
            if uri not in self._away:
                self._away[uri] = time.monotonic()
                logger.warning("himalia tracking: %d metric points waiting, MLflow at %s unreachable (%s); "
                               "retrying", waiting, uri, _outage_reason(error))
        for uri in [uri for uri in self._away if uri not in down]:
            seconds = time.monotonic() - self._away.pop(uri)
            logger.warning("himalia tracking: MLflow at %s reachable again after %.0f s; waiting metric "
                           "points sent", uri, seconds)
        if not down:
            self._retry = None
        else:
            if self._retry is None:
                self._retry = Retry(total=None, backoff_factor=self.backoff_factor, backoff_max=self.backoff_max)
            if self._retry.get_backoff_time() < self.backoff_max:
                self._retry = self._retry.increment(method="POST", url=next(iter(down)))

    def _settle(self, count: int) -> None:
        with self._lock:
            self._inflight -= count

    def _refuse(self, points: list[tuple], error: Exception, refused: dict) -> None:
        message = _brief(error)
        self.failed.extend(FailedPoint(*point, error=message) for point in points)
        key = (points[0][0], message)
        refused[key] = refused.get(key, 0) + len(points)

    def _cycle(self, taken: list[tuple]) -> dict[str, Exception]:
        """Store what is taken plus what earlier cycles could not; the tracking URIs that did not
        answer, with their errors."""
        refused: dict[tuple[str, str], int] = {}
        self._active_runs.clear()
        for point in taken:
            try:
                _check_point(point)
            except Exception as e:
                self._refuse([point], e, refused)
                self._settle(1)
                continue
            self._work.setdefault(point[0], []).append(point)
        down: dict[str, Exception] = {}
        for run_id in list(self._work):
            uri = self._uris[run_id]
            if uri in down:
                continue
            try:
                self._send_run(uri, run_id, self._work[run_id], refused)
            except _Unreachable as e:
                down[uri] = e.__cause__ or e
            if not self._work[run_id]:
                del self._work[run_id]
        for (run_id, message), count in refused.items():
            logger.warning("himalia tracking: MLflow at %s refused %d metric point(s) of run %s: %s; they "
                           "are kept in himalia.sdk.tracking.failed()", self._uris.get(run_id), count,
                           run_id, message)
        return down

    def _sender(self, uri: str) -> _RestSender | _ClientSender:
        if uri not in self._senders:
            web = uri.split("://", 1)[0] in ("http", "https")
            self._senders[uri] = _RestSender(uri, self.request_timeout) if web else _ClientSender(uri)
        return self._senders[uri]

    def _send_run(self, uri: str, run_id: str, points: list[tuple], refused: dict) -> None:
        """Send a run's points batch by batch, removing each from ``points`` once it is settled."""
        try:
            sender = self._sender(uri)
        except Exception as e:  # a tracking URI MLflow cannot use: report it like an outage
            raise _Unreachable() from e
        while points:
            batch = points[:BATCH_SIZE]
            try:
                self._send(sender, run_id, batch, refused)
            except _RunRefused as e:
                self._refuse(points, e.__cause__, refused)
                self._settle(len(points))
                points.clear()
                return
            del points[:len(batch)]
            self._settle(len(batch))

    def _send(self, sender, run_id: str, batch: list[tuple], refused: dict) -> None:
        """Store ``batch``; a batch refused for good is split until the refused points are found
        (they go to ``failed``), unless the run itself refuses everything."""
        try:
            sender.log_batch(run_id, batch)
            return
        except Exception as e:
            if not _will_never_succeed(e):
                raise _Unreachable() from e
            error = e
        if error.error_code == "RESOURCE_DOES_NOT_EXIST" or not self._run_is_active(sender, run_id):
            raise _RunRefused() from error
        if len(batch) == 1:
            self._refuse(batch, error, refused)
            return
        half = len(batch) // 2
        self._send(sender, run_id, batch[:half], refused)
        self._send(sender, run_id, batch[half:], refused)

    def _run_is_active(self, sender, run_id: str) -> bool:
        if run_id in self._active_runs:
            return True
        try:
            if sender.run_is_active(run_id):
                self._active_runs.add(run_id)
                return True
            return False
        except Exception as e:
            if _will_never_succeed(e):
                return False
            raise _Unreachable() from e


# -- the process-wide buffer ---------------------------------------------------------------------
_BUFFER: MetricBuffer | None = None
_BUFFER_LOCK = threading.Lock()
_LAST_RUN_ID: str | None = None


def _buffer() -> MetricBuffer:
    global _BUFFER
    if _BUFFER is None:
        with _BUFFER_LOCK:
            if _BUFFER is None:
                _BUFFER = MetricBuffer()
    return _BUFFER


def _flush_at_exit() -> None:
    buffer = _BUFFER
    if buffer is None:
        return
    # A server that does not answer gets a short try, not the whole exit_timeout: a Jupyter
    # kernel is killed a few seconds after it is asked to shut down.
    first = min(buffer.exit_timeout, 2 * buffer.flush_poll)
    remaining = buffer.flush(first)
    if remaining and not buffer._away:
        remaining = buffer.flush(buffer.exit_timeout - first)
    remaining = buffer.close(0)
    if not remaining:
        return
    try:
        path = buffer.spill()
    except OSError as e:
        logger.error("himalia tracking: %d metric points could not be stored before exit and could not be "
                     "saved (%s)", remaining, e)
        return
    logger.error("himalia tracking: MLflow did not take %d metric points before exit; saved to %s",
                 remaining, path)


def _forget_buffer_in_child() -> None:
    # A forked child must not resend its parent's points, and has no sender thread.
    global _BUFFER, _BUFFER_LOCK
    _BUFFER, _BUFFER_LOCK = None, threading.Lock()


atexit.register(_flush_at_exit)
os.register_at_fork(after_in_child=_forget_buffer_in_child)


def _run_id(run_id: str | None) -> str:
    if run_id is not None:
        return run_id
    run = mlflow.active_run()
    if run is None:
        raise ValueError(NO_ACTIVE_RUN)
    return run.info.run_id


def log_metric(key: str, value: float, step: int | None = None, timestamp: int | None = None,
               run_id: str | None = None) -> None:
    """Log one metric point without waiting for the tracking server.

    ``run_id`` defaults to ``mlflow.active_run()``'s (``ValueError`` when there is none);
    ``timestamp`` is in milliseconds (default now), ``step`` defaults to 0. The point is stored
    in the background; see the module's docstring for what is guaranteed.
    """
    _buffer().add(_run_id(run_id), key, value, step, timestamp)


def log_metrics(metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None,
                run_id: str | None = None) -> None:
    """Log several metrics at one step, like :func:`log_metric` for each ``{key: value}``."""
    _buffer().add_many(_run_id(run_id), metrics, step, timestamp)


def flush(timeout: float | None = None) -> int:
    """Block until every point logged before the call is stored (or refused for good, see
    :func:`failed`), or ``timeout`` seconds pass. Returns 0 when done, else the number of points
    still waiting; those are kept and sent when the server answers."""
    return 0 if _BUFFER is None else _BUFFER.flush(timeout)


def pending() -> int:
    """The number of logged points not stored yet (refused points are in :func:`failed`)."""
    return 0 if _BUFFER is None else _BUFFER.pending()


def failed() -> list[FailedPoint]:
    """The points MLflow refused for good, oldest first, each with MLflow's reason."""
    return [] if _BUFFER is None else list(_BUFFER.failed)


def end_run(status: str = "FINISHED", timeout: float | None = 60.0) -> int:
    """Flush (up to ``timeout`` seconds), then ``mlflow.end_run(status)``; records the run as
    :func:`last_run_id`. Returns the number of points still waiting: they stay buffered and are
    stored when the server answers (MLflow accepts metrics of finished runs)."""
    run = mlflow.active_run()
    remaining = flush(timeout)
    if remaining:
        logger.warning("himalia tracking: %d metric points still waiting for MLflow; ending the run anyway, "
                       "they will be stored when the server answers", remaining)
    mlflow.end_run(status)
    if run is not None:
        set_last_run_id(run.info.run_id)
    return remaining


def last_run_id() -> str | None:
    """The id of the run most recently ended or recorded with :func:`set_last_run_id`."""
    return _LAST_RUN_ID


def set_last_run_id(run_id: str | None) -> None:
    """Record ``run_id`` as the last run (``%track`` does when a run starts or ends)."""
    global _LAST_RUN_ID
    _LAST_RUN_ID = run_id

