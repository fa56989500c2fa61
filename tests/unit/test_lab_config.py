"""JupyterLab as users get it: the page config himalia ships turns off Jupyter's news feed.

The announcements plugin asks "Would you like to get notified about official Jupyter news?"
even with ``LabApp.news_url=None``; ``extension/jupyter-config/labconfig`` disables it for
every server whose Jupyter config path holds it (the wheel installs it under
``etc/jupyter/labconfig``). It also locks it: JupyterLab copies ``disabledExtensions`` into
``lockedExtensions`` in the shared ``page_config.json`` whenever the latter is missing, and the
first process that could write there (with its own umask) would decide who can read it.
"""

from __future__ import annotations

import json
from pathlib import Path

from jupyterlab_server.config import get_page_config

REPO = Path(__file__).resolve().parents[2]
LABCONFIG = REPO / "extension" / "jupyter-config" / "labconfig"
ANNOUNCEMENTS = "@jupyterlab/apputils-extension:announcements"


def test_the_shipped_page_config_disables_jupyter_news(monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(LABCONFIG.parent))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "user-config"))
    monkeypatch.setenv("JUPYTER_NO_CONFIG", "")

    page_config = get_page_config([str(tmp_path / "no-extensions")])

    assert ANNOUNCEMENTS in page_config["disabledExtensions"]


def test_it_disables_nothing_else():
    files = sorted(LABCONFIG.rglob("*.json"))
    assert [f.relative_to(LABCONFIG).as_posix() for f in files] == ["page_config.d/himalia.json"]
    assert json.loads(files[0].read_text()) == {"disabledExtensions": {ANNOUNCEMENTS: True},
                                                "lockedExtensions": {ANNOUNCEMENTS: True}}


def test_jupyterlab_never_rewrites_the_shared_page_config(monkeypatch, tmp_path):
    import jupyter_core.paths
    from jupyterlab import commands

    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(LABCONFIG.parent))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "user-config"))
    monkeypatch.setattr(jupyter_core.paths, "ENV_CONFIG_PATH", [str(LABCONFIG.parent)])
    writes = []
    monkeypatch.setattr(commands, "write_page_config", lambda config, level: writes.append(level))

    migrated = commands._AppHandler(commands.AppOptions(app_dir=str(tmp_path / "app")))

    assert migrated.info is not None
    assert writes == [], "JupyterLab wrote page_config.json: ship lockedExtensions with the disabled ones"
