"""configurable-http-proxy runs at one exact version, from a lock file with integrity hashes."""

from __future__ import annotations

import json
import os
import stat

from himalia.hub.proxy import CHP, CHP_VERSION, LOCK_DIR, find_proxy, installed_version, proxy_command


def test_the_lock_pins_the_proxy_and_every_dependency_with_a_hash():
    manifest = json.loads((LOCK_DIR / "package.json").read_text())
    assert manifest["dependencies"] == {CHP: CHP_VERSION}
    lock = json.loads((LOCK_DIR / "package-lock.json").read_text())
    packages = {k: v for k, v in lock["packages"].items() if k}
    assert packages[f"node_modules/{CHP}"]["version"] == CHP_VERSION
    assert all(p.get("integrity", "").startswith("sha512-") for p in packages.values())


def test_the_session_proxy_is_the_pinned_version(proxy_bin):
    assert installed_version(proxy_bin.parents[1]) == CHP_VERSION


def test_a_proxy_of_another_version_on_path_is_not_used(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / CHP
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 4.6.1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert find_proxy(tmp_path / "empty-prefix") is None
    fake.write_text(f"#!/bin/sh\necho {CHP_VERSION}\n")
    assert find_proxy(tmp_path / "empty-prefix") == str(fake)


def test_tls_options_reach_the_proxy():
    argv = proxy_command("chp", ip="0.0.0.0", port=443, api_port=1, hub_port=2,
                         ssl_cert="/c.pem", ssl_key="/k.pem")
    assert argv[argv.index("--ssl-cert") + 1] == "/c.pem"
    assert argv[argv.index("--ssl-key") + 1] == "/k.pem"
    assert "--ssl-cert" not in proxy_command("chp", ip="127.0.0.1", port=80, api_port=1, hub_port=2)
