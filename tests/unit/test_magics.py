"""%himalia in a real IPython shell, with the API client swapped through configuration."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from himalia.magics import PlatformMagics
from himalia.sdk import Client, HimaliaError


class FakeClient:
    def __init__(self, fail: bool = False):
        self.fail = fail

    def whoami(self):
        if self.fail:
            raise HimaliaError("Cannot reach the platform API at http://x/: refused")
        return {"name": "alice", "roles": ["scientist"], "scopes": []}

    def health(self):
        return {"ok": False, "services": {"hub": {"ok": True, "detail": "HTTP 200"},
                                          "database": {"ok": False, "detail": "down"}}}


@pytest.fixture
def ip():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "himalia.magics")
    yield shell


def magics(ip) -> PlatformMagics:
    return ip.magics_manager.registry["PlatformMagics"]


def test_himalia_shows_identity_role_and_health(ip, capsys):
    magics(ip).client_factory = FakeClient
    ip.run_line_magic("himalia", "")
    out = capsys.readouterr().out
    assert "user: alice" in out and "role: scientist" in out
    assert "DEGRADED" in out and "DOWN database" in out


def test_himalia_json_returns_data(ip):
    magics(ip).client_factory = FakeClient
    data = ip.run_line_magic("himalia", "--json")
    assert data["whoami"]["name"] == "alice"


def test_unreachable_platform_is_a_usage_error(ip):
    magics(ip).client_factory = lambda: FakeClient(fail=True)
    with pytest.raises(UsageError, match="Cannot reach the platform API"):
        ip.run_line_magic("himalia", "")


def test_client_from_env_names_the_missing_setting():
    with pytest.raises(HimaliaError, match="HIMALIA_API_URL"):
        Client.from_env({"JUPYTERHUB_API_TOKEN": "t"})
    with pytest.raises(HimaliaError, match="JUPYTERHUB_API_TOKEN"):
        Client.from_env({"HIMALIA_API_URL": "http://127.0.0.1:1/"})


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_himalia_answers_help_without_calling_the_platform(ip, capsys, flag):
    magics(ip).client_factory = lambda: pytest.fail("--help must not call the platform")
    assert ip.run_line_magic("himalia", flag) is None
    out = capsys.readouterr().out
    assert "%himalia" in out and "--json" in out and "platform role" in out


def test_unknown_options_are_a_usage_error_that_points_to_help(ip):
    magics(ip).client_factory = FakeClient
    with pytest.raises(UsageError, match=r"unrecognized arguments: --bogus \(see %himalia --help\)"):
        ip.run_line_magic("himalia", "--bogus")


def test_himalia_lists_the_himalia_magics(ip, capsys):
    magics(ip).client_factory = FakeClient
    ip.run_line_magic("himalia", "")
    out = capsys.readouterr().out
    assert "magics (each answers --help):" in out
    assert "%himalia" in out.split("magics (each answers --help):")[1]
    listed = ip.run_line_magic("himalia", "--json")["magics"]
    assert "%himalia" in listed and "%load_ext" not in listed
