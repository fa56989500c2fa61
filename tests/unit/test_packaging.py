"""The wheel: one distribution, PEP 420 namespace `himalia` from four source roots, shared data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_holds_every_subpackage_and_the_shared_data(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("himalia-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("himalia/hub/cli/__init__.py", "himalia/hub/chp/package-lock.json",
                   "himalia/hub/storage/migrations/env.py", "himalia/hub/templates/login.html", "himalia/magics/__init__.py",
                   "himalia/sdk/client.py", "himalia/kernels/__main__.py",
                   "himalia/kernels/welcome.ipynb", "himalia/kernels/singleuser.py",
                   "himalia/extension/__init__.py"):
        assert module in names, module
    # A namespace package: no himalia/__init__.py may shadow the other source roots.
    assert "himalia/__init__.py" not in names
    data = [n for n in names if ".data/data/" in n]
    for shared in ("share/jupyter/labextensions/himalia/package.json",
                   "share/jupyter/kernels/himalia/kernel.json",
                   "etc/jupyter/jupyter_server_config.d/himalia.json",
                   "etc/jupyter/labconfig/page_config.d/himalia.json",
                   "share/himalia/docs/index.md", "share/himalia/docs/user-environment.md"):
        assert any(n.endswith(shared) for n in data), shared
    assert any(n.endswith("entry_points.txt") for n in names)
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "himalia = himalia.hub.cli:main" in entry_points
