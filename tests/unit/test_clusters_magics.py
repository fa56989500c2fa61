"""``%cluster`` argument errors and the SDK's checks before anything reaches the gateway, in a
real IPython shell; the gateway-side behaviour is in tests/integration/test_clusters.py."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from himalia.magics.clusters import ClusterMagics
from himalia.sdk import HimaliaError
from himalia.sdk.clusters import Clusters, gateway_address, parse_adapt


@pytest.fixture
def shell():
    ip = InteractiveShell.instance()
    ip.register_magics(ClusterMagics)
    return ip


@pytest.mark.parametrize("line, message", [
    ("grow", "unknown action 'grow'; choose one of: start, scale"),
    ("start --adapt 3", "--adapt must be MIN:MAX"),
    ("start --adapt 4:2", "0 <= MIN <= MAX"),
    ("start --workers -1", "--workers must be 0 or more"),
    ("start --workers 2 --adapt 1:3", "give --workers or --adapt, not both"),
    ("start --workers many", "cannot parse"),
    ("scale 3", "this kernel has no cluster"),
    ("status", "this kernel has no cluster"),
])
def test_mistakes_are_one_line_usage_errors(shell, line, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        shell.run_line_magic("cluster", line)


def test_help_lists_the_actions(shell, capsys):
    shell.run_line_magic("cluster", "--help")
    assert "start" in capsys.readouterr().out
    shell.run_line_magic("cluster", "start --help")
    assert "--adapt MIN:MAX" in capsys.readouterr().out


def test_without_a_platform_the_magic_says_what_to_set(shell, monkeypatch):
    monkeypatch.delenv("HIMALIA_API_URL", raising=False)
    monkeypatch.delenv("HIMALIA_GATEWAY_URL", raising=False)
    with pytest.raises(UsageError, match="set HIMALIA_API_URL"):
        shell.run_line_magic("cluster", "list")


def test_the_gateway_is_found_beside_the_platform_api():
    assert gateway_address({"HIMALIA_API_URL": "http://h:8000/services/himalia/"}) == \
        "http://h:8000/services/dask-gateway"
    assert gateway_address({"HIMALIA_GATEWAY_URL": "http://g/x/"}) == "http://g/x"
    assert parse_adapt("1:8") == (1, 8) and parse_adapt(None) is None
    with pytest.raises(HimaliaError, match="No hub token"):
        Clusters("http://g", token="", env={})
