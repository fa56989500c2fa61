"""A kernel that dies is explained in JupyterLab, in headless Chromium: the server extension
sees the death, emits it on the server's event bus and the Lab extension shows the reason.
(The out-of-memory reason needs a memory limit: tests/integration/test_docker.py.)"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest
from himalia_testing import OFFLINE_LAB, jupyter_app, wait_for
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser



def test_a_dead_kernel_is_explained(page: Page, tmp_path: Path) -> None:
    with jupyter_app(tmp_path, "jupyterlab", OFFLINE_LAB) as app:
        notebook = tmp_path / "root" / "work.ipynb"
        notebook.write_text(json.dumps({
            "cells": [], "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}))
        page.goto(f"{app.url}lab/tree/work.ipynb?token={app.token}")
        expect(page.locator(".jp-NotebookPanel")).to_be_visible(timeout=60_000)
        expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=60_000)
        server = next(p for p in psutil.process_iter(["cmdline"])
                      if "jupyterlab" in " ".join(p.info["cmdline"] or []) and str(tmp_path) in " ".join(p.info["cmdline"] or []))
        kernel = wait_for(lambda: next((c for c in server.children(recursive=True)
                                         if "ipykernel" in " ".join(c.cmdline())), None), 60, what="the kernel process")
        os.kill(kernel.pid, signal.SIGKILL)
        expect(page.get_by_text("The kernel stopped unexpectedly")).to_be_visible(timeout=60_000)
        exits = app.get("himalia/kernel-exits", app.token).json()["exits"]
        assert [e["reason"] for e in exits] == ["exited"]
