"""The welcome notebook: placed once in a new home, never overwritten, never restored after
the user deletes it, and never written through a symbolic link planted in the home."""

from __future__ import annotations

import os
import site
import subprocess
import sys

import nbformat

from himalia.hub.userenv import ensure_user_environment
from himalia.kernels.singleuser import prepare_home
from himalia.kernels.welcome import MARKER, STATE_DIR, WELCOME_NAME, place_welcome, welcome_notebook


def test_the_shipped_notebook_is_valid_and_opens_in_the_himalia_kernel():
    nb = nbformat.reads(welcome_notebook().decode(), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "himalia"
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    for shown in ("%himalia", "%himalia --help", "import pandas", "import matplotlib",
                  "%pip install"):
        assert shown in code, shown
    text = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")
    for mentioned in ("features", "labels", "tracking", "deploy", "jobs", "dashboards",
                      "clusters", "himalia documentation", "user-environment.md"):
        assert mentioned in text, mentioned


def test_a_new_home_gets_the_notebook_and_a_marker(tmp_path):
    placed = place_welcome(tmp_path)
    assert placed == tmp_path / WELCOME_NAME
    assert placed.read_bytes() == welcome_notebook()
    assert (tmp_path / STATE_DIR / MARKER).is_file()


def test_it_is_placed_once_and_not_restored_after_deletion(tmp_path):
    place_welcome(tmp_path)
    (tmp_path / WELCOME_NAME).unlink()
    assert place_welcome(tmp_path) is None
    assert not (tmp_path / WELCOME_NAME).exists()


def test_an_existing_file_of_that_name_is_not_overwritten(tmp_path):
    (tmp_path / WELCOME_NAME).write_text("mine")
    assert place_welcome(tmp_path) is None
    assert (tmp_path / WELCOME_NAME).read_text() == "mine"
    assert (tmp_path / STATE_DIR / MARKER).exists()


def test_a_symlink_in_the_notebooks_place_is_not_followed(tmp_path):
    home, target = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    (home / WELCOME_NAME).symlink_to(target)
    assert place_welcome(home) is None
    assert not target.exists()


def test_a_symlinked_state_folder_is_not_followed(tmp_path):
    home, target = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    target.mkdir()
    (home / STATE_DIR).symlink_to(target)
    assert place_welcome(home) is None
    assert list(target.iterdir()) == []
    assert not (home / WELCOME_NAME).exists()


def test_a_symlinked_marker_counts_as_welcomed_and_is_not_followed(tmp_path):
    home, target = tmp_path / "home", tmp_path / "elsewhere"
    (home / STATE_DIR).mkdir(parents=True)
    (home / STATE_DIR / MARKER).symlink_to(target)
    assert place_welcome(home) is None
    assert not target.exists()


def test_preparing_a_home_never_fails_the_server(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(site, "ENABLE_USER_SITE", False)
    prepare_home(tmp_path / "missing")
    assert "could not place the welcome notebook" in capsys.readouterr().err


def test_a_server_start_in_the_overlay_makes_the_users_site_packages(tmp_path):
    overlay = ensure_user_environment(tmp_path / "user-overlay")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["HOME"] = str(home)
    script = "from himalia.kernels.singleuser import prepare_home; prepare_home(%r)" % str(home)
    out = subprocess.run([str(overlay.python), "-c", script], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (home / WELCOME_NAME).exists()
    assert (home / ".local" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
            / "site-packages").is_dir()
