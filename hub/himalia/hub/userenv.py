"""The user overlay: the environment users' servers, kernels and terminals run in.

The shared environment (the one himalia runs from) is read-only for users. Beside it, inside
its prefix, ``himalia up`` keeps a small root-owned virtual environment with no packages of its
own (:func:`ensure_user_environment`). It is made from the same base interpreter with
``--system-site-packages``, which is what lets pip do ``--user`` installs and Python enable
each user's site-packages, and a ``.pth`` file in it puts, on every start of its Python::

    ~/.local/lib/pythonX.Y/site-packages   the user's own packages (may shadow shared ones)
    <shared>/lib/pythonX.Y/site-packages   the shared environment and its .pth entries

and none of the base interpreter's own site-packages (Debian's dist-packages). Its
``pip.conf`` makes every ``pip install`` a ``--user`` install, whoever runs it, so packages land
in the home of the person who asked (also when all users share one Unix account: their HOMEs
differ). Its ``share`` and ``etc`` are the shared environment's, so Jupyter finds the same
kernelspecs, lab extensions and server configuration; its ``bin`` has the shared environment's
console scripts (``pip``, ``jupyter``, ``ipython``, ...) rewritten to run with its own Python.
"""

from __future__ import annotations

import os
import stat
import sys
import sysconfig
import venv
from dataclasses import dataclass
from pathlib import Path

from .trust import UntrustedPath, check_tree_trusted

#: The overlay's folder name (where: :func:`overlay_location`).
OVERLAY_NAME = "user-overlay"
#: The module (and .pth file) in the overlay's site-packages that arranges sys.path.
PATH_MODULE = "_himalia_overlay"
#: A line in each file himalia writes into the overlay's bin and config.
SCRIPT_MARK = "# written by himalia.hub.userenv"
#: What users' servers run: the welcome and user-site set-up, then jupyterhub-singleuser.
SERVER_MODULE = "himalia.kernels.singleuser"
#: The running Python's version, as in ``lib/python3.11``.
PY_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"

_PATH_MODULE_SOURCE = '''"""Written by himalia (himalia.hub.userenv), again by every `himalia up`.

Runs at each start of this environment's Python (from {module}.pth): puts the user's own
site-packages before the shared environment's and leaves out the base interpreter's.
"""

import os
import site
import sys

SHARED = {shared!r}


def _user_site():
    enabled = site.ENABLE_USER_SITE
    if enabled is None:  # site.main() has not decided yet
        enabled = site.check_enableusersite()
    path = site.getusersitepackages() if enabled else None
    return path if path and os.path.isdir(path) else None


def activate():
    """Idempotent: site.py processes this environment's .pth files twice."""
    site.PREFIXES[:] = [sys.prefix]
    user = _user_site()
    for folder in ([user] if user else []) + SHARED:
        if folder not in sys.path:
            site.addsitedir(folder)
    if user:
        while user in sys.path:
            sys.path.remove(user)
        sys.path.insert(sys.path.index(SHARED[0]), user)
'''

_PIP_CONF = f"""{SCRIPT_MARK}
# Every `pip install` with this environment's Python goes to the user's own site-packages.
[install]
user = true
"""


class UserEnvError(Exception):
    """The overlay cannot be made or trusted; the message says what to do."""


class _OverlayBuilder(venv.EnvBuilder):
    def setup_scripts(self, context):
        """No activate scripts: nobody activates the overlay, servers are started in it."""


@dataclass(frozen=True)
class UserEnvironment:
    """Where the overlay is, and what a server started in it needs."""

    root: Path
    shared_prefix: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    @property
    def site_packages(self) -> Path:
        return self.root / "lib" / f"python{PY_VERSION}" / "site-packages"

    def server_command(self) -> list[str]:
        """``c.Spawner.cmd`` for servers that run in the overlay."""
        return [str(self.python), "-m", SERVER_MODULE]

    def search_path(self, home: str | os.PathLike) -> list[str]:
        """Folders put first on a server's PATH: the user's own scripts, then the overlay's."""
        return [str(Path(home) / ".local" / "bin"), str(self.bin), str(self.shared_prefix / "bin")]

    def exists(self) -> bool:
        return (self.site_packages / f"{PATH_MODULE}.pth").is_file() and self.python.exists()


def overlay_location(state_dir: str | os.PathLike) -> Path:
    """Where the overlay of the running (shared) environment lives.

    Inside the shared environment when this account may write there (as root, always), so
    it goes and comes with it; else in the state directory: himalia runs as an account that
    does not own the shared environment, and all servers run as that account.
    """
    prefix = Path(sys.prefix)
    return (prefix if os.access(prefix, os.W_OK) else Path(state_dir).absolute()) / OVERLAY_NAME


def user_environment(location: str | os.PathLike) -> UserEnvironment:
    """The overlay at ``location`` over the running environment, whether or not it exists yet."""
    return UserEnvironment(Path(location).absolute(), Path(sys.prefix))


def shared_site_packages() -> list[str]:
    """The running environment's site-packages folders (pure and platform-specific)."""
    folders = []
    for key in ("purelib", "platlib"):
        folder = sysconfig.get_path(key)
        if folder not in folders:
            folders.append(folder)
    return folders


def _read_cfg(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def _is_current(env: UserEnvironment) -> bool:
    """Made from this base interpreter, of this version, with user site-packages."""
    cfg = env.root / "pyvenv.cfg"
    if not cfg.is_file() or not env.python.exists():
        return False
    values = _read_cfg(cfg)
    base = Path(getattr(sys, "_base_executable", sys.executable))
    return (values.get("include-system-site-packages") == "true"
            and values.get("home") == str(base.parent)
            and values.get("version", "").startswith(f"{PY_VERSION}."))


def _chmod(path: Path, mode: int) -> None:
    """Only when it differs: refreshing a current overlay writes nothing."""
    if stat.S_IMODE(path.stat().st_mode) != mode:
        os.chmod(path, mode)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` by ``text`` (atomically: running servers may be reading it)."""
    if path.is_file() and not path.is_symlink() and path.read_text() == text:
        _chmod(path, mode)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _link(path: Path, target: Path) -> None:
    if path.is_symlink() and os.readlink(path) == str(target):
        return
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        raise UserEnvError(f"{path} is in the way of the user overlay: remove it")
    path.symlink_to(target)


def _console_script(script: Path, shared_bin: Path) -> str | None:
    """The body of a console script run by the shared environment's Python, else None."""
    try:
        with script.open("rb") as f:
            first, rest = f.readline(300), f.read(64 * 1024)
    except OSError:
        return None
    pythons = {str(shared_bin / name) for name in ("python", "python3", f"python{PY_VERSION}")}
    if not first.startswith(b"#!") or first[2:].strip().decode(errors="replace") not in pythons:
        return None
    try:
        return rest.decode()
    except UnicodeDecodeError:
        return None


def _write_scripts(env: UserEnvironment) -> None:
    """The shared environment's console scripts (pip, jupyter, ipython, ...) with this Python.

    Copies with the interpreter line rewritten, as pip would have written them here: ``pip``
    installs for the user, and ``jupyter <command>`` finds its sibling commands here too.
    """
    wanted: dict[str, str] = {}
    shared_bin = env.shared_prefix / "bin"
    for script in sorted(shared_bin.iterdir()) if shared_bin.is_dir() else []:
        if script.name.startswith(("python", "activate", "Activate")) or not script.is_file():
            continue
        body = _console_script(script, shared_bin)
        if body is not None:
            wanted[script.name] = f"#!{env.python}\n{SCRIPT_MARK}\n{body}"
    for name, text in wanted.items():
        _write(env.bin / name, text, 0o755)
    for script in env.bin.iterdir():
        if script.name in wanted or script.is_symlink() or not script.is_file():
            continue
        with script.open("rb") as f:
            ours = SCRIPT_MARK.encode() in f.read(400)
        if ours:  # the shared environment no longer has it
            script.unlink()


def _open_up(root: Path) -> None:
    """Readable and runnable by every account, writable by its owner only (whatever the umask)."""
    for folder, dirs, files in os.walk(root):
        _chmod(Path(folder), 0o755)
        for name in files:
            path = Path(folder) / name
            if path.is_symlink():
                continue
            _chmod(path, 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644)


def ensure_user_environment(location: str | os.PathLike) -> UserEnvironment:
    """Create the overlay of the running environment, or bring it up to date; idempotent.

    ``himalia up`` calls this (local backend, at :func:`overlay_location`) before it starts
    the hub. Remade from scratch only when the base interpreter changed; otherwise only files
    that differ are rewritten, so servers running in it are not disturbed.
    """
    env = user_environment(location)
    try:
        if env.root.exists():
            check_tree_trusted(env.root, "The user overlay")
        if not _is_current(env):
            _OverlayBuilder(system_site_packages=True, clear=True, symlinks=True,
                            with_pip=False).create(env.root)
        site_packages = env.site_packages
        site_packages.mkdir(parents=True, exist_ok=True)
        _write(site_packages / f"{PATH_MODULE}.py",
               _PATH_MODULE_SOURCE.format(module=PATH_MODULE, shared=shared_site_packages()))
        _write(site_packages / f"{PATH_MODULE}.pth",
               f"import {PATH_MODULE}; {PATH_MODULE}.activate()\n")
        _write(env.root / "pip.conf", _PIP_CONF)
        for name in ("share", "etc"):
            if (env.shared_prefix / name).is_dir():
                _link(env.root / name, env.shared_prefix / name)
        _write_scripts(env)
        _open_up(env.root)
    except UntrustedPath as e:
        raise UserEnvError(str(e)) from e
    except OSError as e:
        raise UserEnvError(f"Cannot create the user overlay {env.root}: {e.strerror or e} "
                           "(run himalia up as the account that owns the environment it is "
                           "installed in, or as root)") from e
    return env
