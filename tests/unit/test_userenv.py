"""The user overlay (himalia.hub.userenv), the spawner settings that use it, and ``%pip``.

Each test makes its own overlay of the test's environment in a temporary folder and runs its
Python with ``HOME`` set to a temporary home; packages come from wheels built here, never
from an index.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import site
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from jupyterhub.objects import Hub

from himalia.hub.spawners import HimaliaLocalSpawner, SpawnError
from himalia.hub.userenv import (SCRIPT_MARK, UserEnvError, ensure_user_environment,
                                 overlay_location, shared_site_packages)
from himalia.magics.packages import add_user_site, changed, describe

PY = f"python{sys.version_info[0]}.{sys.version_info[1]}"


def make_wheel(folder: Path, name: str, version: str = "1.0") -> Path:
    """A minimal pure-Python wheel with one module package ``name``."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "WHERE = 'user'\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": ("Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                          "Tag: py3-none-any\n"),
    }
    record = []
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, text in files.items():
            data = text.encode()
            wheel.writestr(member, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{member},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        wheel.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture
def overlay(tmp_path):
    return ensure_user_environment(tmp_path / "user-overlay")


@pytest.fixture
def home(tmp_path):
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


def user_site(home: Path) -> Path:
    return home / ".local" / "lib" / PY / "site-packages"


def run(overlay, home: Path, *args: str, executable: str | None = None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "PIP_USER", "PIP_CONFIG_FILE", "VIRTUAL_ENV"))}
    env["HOME"] = str(home)
    return subprocess.run([executable or str(overlay.python), *args], capture_output=True,
                          text=True, env=env, timeout=300)


def sys_path(overlay, home: Path) -> list[str]:
    result = run(overlay, home, "-c", "import json, sys; print(json.dumps(sys.path))")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_overlay_is_made_once_and_a_refresh_changes_nothing(tmp_path):
    env = ensure_user_environment(tmp_path / "user-overlay")
    files = sorted(p for p in env.root.rglob("*") if p.is_file() and not p.is_symlink())
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files}
    again = ensure_user_environment(tmp_path / "user-overlay")
    assert again == env
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files} == before


def test_a_refresh_repairs_what_was_changed(overlay):
    pth = overlay.site_packages / "_himalia_overlay.pth"
    good = pth.read_text()
    pth.write_text("")
    (overlay.bin / "pip").unlink()
    ensure_user_environment(overlay.root)
    assert pth.read_text() == good
    assert (overlay.bin / "pip").exists()


def test_its_pth_points_at_the_shared_site_packages(overlay):
    module = (overlay.site_packages / "_himalia_overlay.py").read_text()
    assert f"SHARED = {shared_site_packages()!r}" in module
    assert "import _himalia_overlay" in (overlay.site_packages / "_himalia_overlay.pth").read_text()


def test_its_python_sees_the_shared_packages_and_not_the_system_ones(overlay, home):
    path = sys_path(overlay, home)
    assert shared_site_packages()[0] in path
    assert not [p for p in path if "dist-packages" in p]
    result = run(overlay, home, "-c", "import importlib.util, sys, himalia.kernels; "
                 "assert importlib.util.find_spec('jupyterhub.singleuser'); print(sys.prefix)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(overlay.root)


def test_the_user_site_comes_first_and_shadows_a_shared_package(overlay, home):
    shadow = user_site(home) / "tqdm"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("WHERE = 'user'\n")
    path = sys_path(overlay, home)
    assert path.count(str(user_site(home))) == 1
    assert path.index(str(user_site(home))) < path.index(shared_site_packages()[0])
    result = run(overlay, home, "-c", "import tqdm; print(tqdm.WHERE)")
    assert result.stdout.strip() == "user", result.stderr


def test_pip_install_user_is_not_refused_and_goes_to_the_home(overlay, home, tmp_path):
    # The base interpreter may be marked externally managed (PEP 668, Debian): pip does not
    # apply that inside a virtual environment, which the overlay is.
    wheel = make_wheel(tmp_path, "himalia_probe")
    result = run(overlay, home, "-m", "pip", "install", "--user", "--no-index", "--no-deps",
                 str(wheel))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (user_site(home) / "himalia_probe" / "__init__.py").exists()
    assert not list(overlay.site_packages.glob("himalia_probe*"))
    result = run(overlay, home, "-c", "import himalia_probe; print(himalia_probe.__file__)")
    assert result.stdout.startswith(str(user_site(home))), result.stderr


def test_plain_pip_install_goes_to_the_home_too(overlay, home, tmp_path):
    # Run as root here, so the overlay is writable: only its pip.conf sends this to the home.
    wheel = make_wheel(tmp_path, "himalia_probe_two")
    result = run(overlay, home, "install", "--no-index", "--no-deps", str(wheel),
                 executable=str(overlay.bin / "pip"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (user_site(home) / "himalia_probe_two").is_dir()
    assert not list(overlay.site_packages.glob("himalia_probe*"))


def test_console_scripts_run_with_the_overlays_python(overlay):
    pip = (overlay.bin / "pip").read_text().splitlines()
    assert pip[0] == f"#!{overlay.python}" and pip[1] == SCRIPT_MARK
    assert (overlay.bin / "jupyter").exists()
    assert not (overlay.bin / "activate").exists()


def test_jupyter_data_and_config_are_the_shared_environments(overlay):
    assert (overlay.root / "share").resolve() == (Path(sys.prefix) / "share").resolve()
    assert (overlay.root / "etc").resolve() == (Path(sys.prefix) / "etc").resolve()


def test_everyone_can_read_it_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        env = ensure_user_environment(tmp_path / "user-overlay")
    finally:
        os.umask(old)
    pth = env.site_packages / "_himalia_overlay.pth"
    for path in [env.root, env.site_packages, pth, env.bin / "pip"]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o005 == (0o005 if path.is_dir() or os.access(path, os.X_OK) else 0o004), path
        assert not mode & 0o022, path


def test_an_overlay_others_can_change_is_refused(overlay):
    os.chmod(overlay.site_packages, 0o777)
    with pytest.raises(UserEnvError, match="cannot be trusted"):
        ensure_user_environment(overlay.root)


def test_an_overlay_from_another_python_is_made_again(overlay):
    cfg = overlay.root / "pyvenv.cfg"
    cfg.write_text(cfg.read_text().replace("include-system-site-packages = true",
                                           "include-system-site-packages = false"))
    ensure_user_environment(overlay.root)
    assert "include-system-site-packages = true" in cfg.read_text()


def test_it_lives_in_the_shared_environment_unless_that_is_not_ours(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    assert overlay_location(tmp_path) == Path(sys.prefix) / "user-overlay"
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert overlay_location(tmp_path) == tmp_path / "user-overlay"


def test_refreshing_an_overlay_of_another_account_writes_nothing(overlay, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    for name in ("chmod", "replace", "unlink", "symlink"):
        monkeypatch.setattr(os, name, refuse)
    assert ensure_user_environment(overlay.root) == overlay


# -- the spawner -------------------------------------------------------------------------

class FakeUser:
    name = "alice"
    id = 1
    url = "/user/alice/"


def local_spawner(tmp_path, **config) -> HimaliaLocalSpawner:
    return HimaliaLocalSpawner(user=FakeUser(), hub=Hub(), system_users=False,
                               shared_home_root=str(tmp_path / "users"), **config)


def test_servers_get_the_overlay_and_their_own_scripts_first_on_path(tmp_path, overlay):
    spawner = local_spawner(tmp_path, user_environment=str(overlay.root))
    env = spawner.user_env({"PATH": "/usr/bin:/bin"})
    home = tmp_path / "users" / "alice"
    assert env["PATH"].split(os.pathsep) == [str(home / ".local" / "bin"), str(overlay.bin),
                                              str(Path(sys.prefix) / "bin"), "/usr/bin", "/bin"]
    assert env["VIRTUAL_ENV"] == str(overlay.root)
    assert "PIP_USER" not in env  # the overlay's pip.conf does it, for installs only


def test_without_an_overlay_the_environment_is_left_alone(tmp_path):
    env = local_spawner(tmp_path).user_env({"PATH": "/usr/bin"})
    assert env["PATH"] == "/usr/bin" and "VIRTUAL_ENV" not in env


def test_a_missing_overlay_is_a_spawn_error_for_the_admin(tmp_path):
    import asyncio

    spawner = local_spawner(tmp_path, user_environment=str(tmp_path / "missing"))
    with pytest.raises(SpawnError, match="himalia up"):
        asyncio.run(spawner.start())


def test_server_command_runs_the_overlays_python(overlay):
    assert overlay.server_command() == [str(overlay.python), "-m", "himalia.kernels.singleuser"]


# -- %pip ----------------------------------------------------------------------------------

def test_describe_says_where_each_package_went():
    text = describe({"humanize": ("4.9", "/home/a/.local/lib/site-packages")},
                    "/home/a/.local/lib/site-packages", imported=set())
    assert "Installed humanize 4.9 into your own packages, /home/a/.local/lib/site-packages" in text
    assert "the shared environment is unchanged" in text
    assert "Importable now" in text


def test_changed_lists_new_and_upgraded_packages_only():
    before = {"a": ("1", "/s"), "b": ("1", "/s")}
    after = {"a": ("1", "/s"), "b": ("2", "/u"), "c": ("1", "/u")}
    assert changed(before, after) == {"b": ("2", "/u"), "c": ("1", "/u")}


def test_add_user_site_puts_it_before_the_site_packages(monkeypatch, home):
    folder = user_site(home)
    folder.mkdir(parents=True)
    monkeypatch.setattr(site, "USER_SITE", str(folder))
    monkeypatch.setattr(site, "ENABLE_USER_SITE", True)
    monkeypatch.setattr(sys, "path", ["/lib/python", *site.getsitepackages(), "/elsewhere"])
    assert add_user_site() is True
    assert sys.path[:2] == ["/lib/python", str(folder)]
    assert add_user_site() is False


def test_pip_magic_installs_for_the_user_says_where_and_imports_at_once(
        monkeypatch, overlay, home, tmp_path, capfd):
    wheel = make_wheel(tmp_path, "himalia_magic_probe")
    folder = user_site(home)
    monkeypatch.setenv("HOME", str(home))
    for key in ("PIP_USER", "PIP_CONFIG_FILE", "PYTHONNOUSERSITE", "PYTHONUSERBASE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(sys, "executable", str(overlay.python))
    monkeypatch.setattr(site, "USER_SITE", str(folder))
    monkeypatch.setattr(site, "ENABLE_USER_SITE", True)
    monkeypatch.setattr(sys, "path", list(sys.path))
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "himalia.magics")
    ip.run_line_magic("pip", f"install --no-index --no-deps {wheel}")
    out = capfd.readouterr().out
    assert f"Installed himalia-magic-probe 1.0 into your own packages, {folder}" in out, out
    import himalia_magic_probe

    assert himalia_magic_probe.__file__.startswith(str(folder))
    sys.modules.pop("himalia_magic_probe")
