"""Single-account mode (what a non-root install gets) and idle culling, on a real platform."""

from __future__ import annotations

import os

import pytest

from himalia_testing import Kernel, Platform, wait_for


@pytest.fixture(scope="module")
def shared_platform(request, tmp_path_factory, proxy_bin) -> Platform:
    platform = Platform(tmp_path_factory.mktemp("shared") / "state", proxy_bin)
    platform.write_config(system_users=False, cull_idle_timeout=8)
    request.addfinalizer(platform.stop)
    return platform.start()


def test_without_system_users_servers_share_one_account_with_a_loud_warning(shared_platform, unique_name):
    platform = shared_platform
    assert any("WARNING" in line and "read each other's files" in line for line in platform.output)
    name = unique_name("sh")
    session = platform.login(name, platform.create_user(name))
    server = platform.spawn(session)
    kernel = Kernel(server, platform.user_token(session)["token"])
    try:
        out = kernel.execute("import os, getpass; print(os.environ['HOME']); print(os.getuid())")
        home, uid = out["stdout"].split()
        assert home == str(platform.state_dir.resolve() / "users" / name)
        assert int(uid) == os.getuid()
        assert platform.unix_accounts() == []
    finally:
        kernel.close()


def test_idle_servers_are_culled(shared_platform, unique_name):
    platform = shared_platform
    name = unique_name("id")
    session = platform.login(name, platform.create_user(name))
    platform.spawn(session)
    # Nothing runs in the server: the idle culler must stop it on its own.
    wait_for(lambda: not platform.api("GET", f"/users/{name}").json()["servers"], 90, interval=1,
             what="the idle culler to stop the server")
    assert "idle" in platform.hub_log().lower()
