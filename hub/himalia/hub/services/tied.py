"""Run a Python module as a hub-managed service that exits when the hub that started it does.

A hub killed without its clean-up (or crashing) leaves its managed services running, and the
next hub could not bind their ports. ``python -m himalia.hub.services.tied MODULE ARGS...``
runs MODULE as ``__main__`` and sends itself SIGTERM once its parent process is gone.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time

POLL_SECONDS = 0.5


def exit_with_parent(interval: float = POLL_SECONDS) -> threading.Thread:
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: python -m himalia.hub.services.tied MODULE [ARGS...]")
    module, *args = argv
    sys.argv = [module, *args]
    exit_with_parent()
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
