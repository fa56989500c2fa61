"""papermill's ``himalia`` engine: execute on a kernel that is already running.

Registered under the ``papermill.engine`` entry point, so ``papermill.execute_notebook(...,
engine_name="himalia", kernel_pool=pool, pool_key=key)`` takes a started kernel from ``pool``
instead of starting one (most of a short notebook's time). Each kernel serves one run and is
shut down after it; papermill's own behaviour (the injected-parameters cell, the error cell of a
failed run, the saved output) is unchanged.

Extra keyword arguments: ``kernel_pool`` (with ``take(key, timeout) -> KernelManager`` and
``retire(km)``, which shuts a used kernel down),
``pool_key``, ``setup_code`` (run silently before the first cell: the run's environment; or a
callable returning it, called once the kernel answers),
``on_kernel(km)`` (called with the kernel taken) and ``on_cell(done, total, seconds)``.
"""

from __future__ import annotations

import queue
import time

from jupyter_core.utils import run_sync
from nbclient.util import ensure_async, run_hook
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args


#: How often the output notebook is written while a run goes.
SAVE_EVERY_SECONDS = 1.0


class SetupError(RuntimeError):
    """The run's setup code failed in the kernel."""


class PooledNotebookClient(PapermillNotebookClient):
    """papermill's client on a kernel that is already running.

    nbclient's own start waits for the kernel's IOPub channel to stay quiet for 0.2 s, as a
    guard against subscribing late; here a ``kernel_info`` request is repeated until its
    ``idle`` status arrives on IOPub, which proves the subscription is live, in a few
    milliseconds. Then ``setup_code`` runs silently.
    """

    def __init__(self, nb_man, km=None, setup_code="", **kw):
        super().__init__(nb_man, km=km, **kw)
        self.setup_code = setup_code

    async def async_start_new_kernel_client(self):
        self.kc = self.km.client()
        await ensure_async(self.kc.start_channels())
        await _until_iopub_answers(self.kc, self.startup_timeout)
        self.kc.allow_stdin = False
        code = self.setup_code() if callable(self.setup_code) else self.setup_code
        if code:
            msg_id = self.kc.execute(code, silent=True, store_history=False)
            content = (await _reply_while_alive(self.kc, msg_id, self.startup_timeout))["content"]
            if content.get("status") != "ok":
                raise SetupError(f"{content.get('ename')}: {content.get('evalue')}")
        await run_hook(self.on_notebook_start, notebook=self.nb)
        return self.kc

    start_new_kernel_client = run_sync(async_start_new_kernel_client)


async def _reply_while_alive(kc, msg_id: str, timeout: float) -> dict:
    """The shell reply to ``msg_id``; an error as soon as the kernel is gone (a run cancelled
    or timed out while it is being set up) instead of waiting out ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reply = await ensure_async(kc.get_shell_msg(timeout=0.2))
        except queue.Empty:
            if not await ensure_async(kc.is_alive()):
                raise RuntimeError("Kernel died while the run was being set up") from None
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply
    raise RuntimeError(f"the kernel did not answer within {timeout:g} s")


async def _until_iopub_answers(kc, timeout: float) -> None:
    """Send ``kernel_info`` until the kernel's ``idle`` for one of them is seen on IOPub."""
    deadline = time.monotonic() + timeout
    sent: set[str] = set()
    while time.monotonic() < deadline:
        sent.add(kc.kernel_info())
        until = min(deadline, time.monotonic() + 0.25)
        while time.monotonic() < until:
            try:
                msg = await ensure_async(kc.get_iopub_msg(timeout=max(until - time.monotonic(), 0.001)))
            except queue.Empty:
                break
            if (msg["header"]["msg_type"] == "status" and msg["content"].get("execution_state") == "idle"
                    and msg["parent_header"].get("msg_id") in sent):
                # (Shell replies to these requests may follow; nbclient skips replies that are
                # not to its own requests.)
                return
        if not await ensure_async(kc.is_alive()):
            raise RuntimeError("Kernel died before replying to kernel_info")
    raise RuntimeError(f"the kernel did not answer within {timeout:g} s")


class PooledKernelEngine(NBClientEngine):
    """An nbclient engine whose kernel comes from a pool of started kernels."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                 stderr_file=None, start_timeout=60, execution_timeout=None,
                                 kernel_pool=None, pool_key=None, setup_code="", on_kernel=None,
                                 on_cell=None, **kwargs):
        if kernel_pool is None:
            raise ValueError("The himalia engine runs notebooks on started kernels: pass "
                             "kernel_pool= (and pool_key=) to papermill.execute_notebook.")
        km = kernel_pool.take(pool_key, timeout=start_timeout)
        if on_kernel is not None:
            on_kernel(km)
        if on_cell is not None:
            _report_cells(nb_man, on_cell)
        kwargs = remove_args(["input_path", "timeout", "startup_timeout", "km"], **kwargs)
        final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout,
                             kernel_name=kernel_name, log=logger, log_output=log_output,
                             stdout_file=stdout_file, stderr_file=stderr_file,
                             shutdown_kernel="immediate")
        client = PooledNotebookClient(nb_man, km=km, setup_code=setup_code, **final)
        # papermill writes the whole output notebook before and after every cell; while the
        # notebook runs, once a second is enough to follow it (progress is reported per cell
        # by on_cell). Its final save, after the last cell, is untouched.
        save = nb_man.save
        nb_man.save = _at_most_every(SAVE_EVERY_SECONDS, save)
        try:
            return client.execute(cleanup_kc=False)
        finally:
            nb_man.save = save
            # One kernel per run: the pool shuts it down, after papermill has saved the output.
            if client.kc is not None:
                client.kc.stop_channels()
            kernel_pool.retire(km)


def _at_most_every(seconds: float, save):
    last = [0.0]

    def throttled(**kwargs):
        now = time.monotonic()
        if now - last[0] >= seconds:
            last[0] = now
            return save(**kwargs)
        return None

    return throttled


def _report_cells(nb_man, on_cell) -> None:
    """Call ``on_cell(done, total, seconds)`` after each code cell papermill completes."""
    total = sum(1 for c in nb_man.nb.cells if c.cell_type == "code")
    state = {"done": 0, "started": 0.0}
    cell_start, cell_complete = nb_man.cell_start, nb_man.cell_complete

    def start(cell, cell_index=None, **kw):
        state["started"] = time.monotonic()
        return cell_start(cell, cell_index, **kw)

    def complete(cell, cell_index=None, **kw):
        result = cell_complete(cell, cell_index, **kw)
        if cell.cell_type == "code":
            state["done"] += 1
            on_cell(state["done"], total, time.monotonic() - state["started"])
        return result

    nb_man.cell_start, nb_man.cell_complete = start, complete
