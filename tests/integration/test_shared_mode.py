"""One account for everyone, what a start by an unprivileged account gets, and idle culling.

As root the test creates an unprivileged account and runs ``himalia up`` as that account:
a root start never puts users' servers under one account (see test_cli), so this mode is
only reachable without root.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess

import pytest

from himalia_testing import Kernel, Platform, wait_for


@pytest.fixture(scope="module")
def shared_platform(request, proxy_bin) -> Platform:
    platform = Platform(None, proxy_bin)
    request.addfinalizer(platform.close)
    if os.geteuid() == 0:
        operator = platform.user_prefix + "op"
        subprocess.run(["useradd", "--create-home", "--", operator], check=True)
        platform.run_as = operator
    platform.write_config(cull_idle_timeout=8)
    return platform.start()


def test_without_root_servers_share_one_account_with_a_loud_warning(shared_platform, unique_name):
    platform = shared_platform
    assert any("WARNING" in line and "read each other's files" in line for line in platform.output)
    operator_uid = pwd.getpwnam(platform.run_as).pw_uid if platform.run_as else os.getuid()
    name = unique_name("sh")
    session = platform.login(name, platform.create_user(name))
    server = platform.spawn(session)
    kernel = Kernel(server, platform.user_token(session)["token"])
    try:
        out = kernel.execute("import os, getpass; print(os.environ['HOME']); print(os.getuid())")
        home, uid = out["stdout"].split()
        assert home == str(platform.state_dir.resolve() / "users" / name)
        assert int(uid) == operator_uid != 0
        assert [a for a in platform.unix_accounts() if a != platform.run_as] == []
    finally:
        kernel.close()


def test_idle_servers_are_culled(shared_platform, unique_name):
    platform = shared_platform
    name = unique_name("id")
    session = platform.login(name, platform.create_user(name))
    platform.spawn(session)
    assert f"Culling server {name}" not in platform.hub_log()
    # Nothing runs in the server: the idle culler must stop it on its own.
    wait_for(lambda: not platform.api("GET", f"/users/{name}").json()["servers"], 90, interval=1,
             what="the idle culler to stop the server")
    assert re.search(rf"Culling server {name} \(inactive for", platform.hub_log())
