"""A managed service started through the `tied` wrapper ends when its parent process does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from himalia_testing import alive, wait_for



def test_service_exits_when_its_parent_dies(tmp_path):
    pidfile = tmp_path / "service.pid"
    # The "hub" starts the service through the wrapper, reports its pid, then waits forever.
    hub = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import subprocess, sys, time
            child = subprocess.Popen([sys.executable, "-m", "himalia.hub.services.tied",
                                      "http.server", "--bind", "127.0.0.1", "0"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
            open({str(pidfile)!r}, "w").write(str(child.pid))
            time.sleep(600)
        """)],
        start_new_session=True,
    )
    service = 0
    try:
        service = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), 30, what="pid file"))
        assert alive(service)
        os.killpg(hub.pid, signal.SIGKILL)
        hub.wait(10)
        wait_for(lambda: not alive(service), 30, what="the orphaned service to exit")
    finally:
        for pgid in (hub.pid, service):
            try:
                if pgid:
                    os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
