"""A new user's environment on the real platform: the data-science stack in a spawned himalia
kernel, packages of one's own with ``%pip`` and ``pip install --user``, and the welcome
notebook. Servers run as per-user Unix accounts when the tests run as root.

Installing needs the machine's package index (PyPI or its mirror in pip's configuration).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from himalia.hub.userenv import overlay_location, shared_site_packages, user_environment
from himalia.kernels.welcome import WELCOME_NAME
from himalia_testing import Kernel, Platform

STACK = ["numpy", "pandas", "scipy", "sklearn", "matplotlib", "torch", "dask", "distributed",
         "ipywidgets", "seaborn", "pyarrow"]
#: Small pure-Python packages from the index that the shared environment does not have.
PIP_PACKAGE, PIP_USER_PACKAGE = "simpleeval", "asteval"


@pytest.fixture(scope="module")
def env_platform(request, proxy_bin) -> Platform:
    platform = Platform(None, proxy_bin)
    request.addfinalizer(platform.close)
    platform.start()
    # `himalia up` made the overlay (local backend), where the hub's configuration points.
    platform.overlay = user_environment(overlay_location(platform.state_dir))
    assert platform.overlay.exists()
    return platform


@pytest.fixture(scope="module")
def overlay(env_platform):
    return env_platform.overlay


class User:
    """A logged-in user with a running server and a hub token for its API."""

    def __init__(self, platform: Platform, name: str):
        self.platform = platform
        self.name = name
        self.session = platform.login(name, platform.create_user(name))
        self.server = platform.spawn(self.session)
        self.token = platform.user_token(self.session)["token"]
        self.headers = {"Authorization": f"token {self.token}"}

    def kernel(self) -> Kernel:
        return Kernel(self.server, self.token)

    def contents(self) -> list[str]:
        r = requests.get(f"{self.server}api/contents/", headers=self.headers, timeout=30)
        r.raise_for_status()
        return [item["name"] for item in r.json()["content"]]

    def restart_server(self) -> None:
        self.platform.stop_server(self.name)
        self.server = self.platform.spawn(self.session)


def run(kernel: Kernel, code: str, timeout: float = 240) -> str:
    out = kernel.execute(code, timeout=timeout)
    assert out["error"] is None, f"{out['error']}\n{out['stdout']}"
    return out["stdout"]


def test_the_stack_is_importable_in_a_new_kernel_which_runs_in_the_overlay(env_platform, overlay,
                                                                            unique_name):
    user = User(env_platform, unique_name("st"))
    with user.kernel() as kernel:
        out = run(kernel, f"import {', '.join(STACK)}, sys; print(sys.executable)")
        assert out.strip() == str(overlay.python)
        out = run(kernel, "import pandas as pd, matplotlib; matplotlib.use('agg'); "
                          "ax = pd.Series([1, 3, 2]).plot(); "
                          "print(type(ax).__name__, pd.__version__)")
        assert out.startswith("Axes 2."), out


def test_pip_installs_into_the_users_home_for_that_user_only(env_platform, overlay, unique_name):
    if importlib.util.find_spec(PIP_PACKAGE):
        pytest.fail(f"{PIP_PACKAGE} is in the shared environment: pick another one for this test")
    alice, bob = User(env_platform, unique_name("pa")), User(env_platform, unique_name("pb"))
    with alice.kernel() as kernel:
        home, user_site = run(kernel, "import os, site; print(os.path.expanduser('~')); "
                                      "print(site.getusersitepackages())").split()
        out = run(kernel, f"%pip install {PIP_PACKAGE}")
        assert f"into your own packages, {user_site}" in out, out
        assert user_site.startswith(home + "/") and home != str(Path.home())
        out = run(kernel, f"import {PIP_PACKAGE}; print({PIP_PACKAGE}.__file__)")
        assert out.startswith(user_site), out
    with alice.kernel() as again:
        out = run(again, f"import {PIP_PACKAGE}; print({PIP_PACKAGE}.__file__)")
        assert out.startswith(user_site), out
    with bob.kernel() as other:
        out = other.execute(f"import {PIP_PACKAGE}")
        assert out["error"] == f"ModuleNotFoundError: No module named '{PIP_PACKAGE}'", out
    for folder in [*shared_site_packages(), overlay.site_packages]:
        assert not list(Path(folder).glob(f"{PIP_PACKAGE}*")), folder


def test_pip_install_user_in_a_terminal_works_too(env_platform, overlay, unique_name):
    user = User(env_platform, unique_name("pt"))
    with user.kernel() as kernel:
        out = run(kernel, "import shutil; print(shutil.which('pip'))")
        assert out.strip() == str(overlay.bin / "pip")
        out = run(kernel, f"!pip install --user {PIP_USER_PACKAGE}")
        assert f"Successfully installed {PIP_USER_PACKAGE}" in out, out
        out = run(kernel, f"import {PIP_USER_PACKAGE}, site; print({PIP_USER_PACKAGE}.__file__); "
                          "print(site.getusersitepackages())")
        module, user_site = out.split()
        assert module.startswith(user_site + "/"), out
    assert not list(overlay.site_packages.glob(f"{PIP_USER_PACKAGE}*"))


def test_a_new_user_is_welcomed_once(env_platform, unique_name):
    user = User(env_platform, unique_name("we"))
    assert WELCOME_NAME in user.contents()
    r = requests.delete(f"{user.server}api/contents/{quote(WELCOME_NAME)}", headers=user.headers,
                        timeout=30)
    assert r.status_code == 204, r.text
    user.restart_server()
    assert WELCOME_NAME not in user.contents()
