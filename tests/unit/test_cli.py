"""Pieces of `himalia up` that need no running platform."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from himalia.hub import __version__
from himalia.hub.cli import CLIError, _migrate, _prepare_state, unreadable_by_others
from himalia.hub.config import HimaliaConfig, StatePaths
from himalia.hub.storage import current_revision, head_revision


def test_first_run_writes_private_secrets_once(tmp_path):
    paths = StatePaths(tmp_path / "state")
    assert _prepare_state(paths) is True
    token = paths.admin_token.read_text()
    for secret in (paths.admin_token, paths.bootstrap_password):
        assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(paths.root).st_mode) == 0o700
    assert _prepare_state(paths) is False
    assert paths.admin_token.read_text() == token


def test_version_change_migrates_the_api_database(tmp_path, caplog):
    paths = StatePaths(tmp_path)
    paths.version.write_text("0.0.1\n")
    cfg = HimaliaConfig(state_dir=str(tmp_path))
    with caplog.at_level("INFO", logger="himalia"):
        _migrate(cfg, paths)
    assert current_revision(cfg.resolved_api_db_url()) == head_revision()
    assert paths.version.read_text().strip() == __version__
    assert f"Upgraded from himalia 0.0.1 to {__version__}" in caplog.text


def test_bad_api_database_is_one_clear_error(tmp_path):
    cfg = HimaliaConfig(state_dir=str(tmp_path), api_db_url="postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(CLIError, match="Cannot migrate the API database"):
        _migrate(cfg, StatePaths(tmp_path))


def test_private_folders_are_found():
    root = Path(tempfile.mkdtemp())
    try:
        os.chmod(root, 0o755)
        private = root / "private"
        (private / "inner").mkdir(parents=True)
        os.chmod(private, 0o700)
        os.chmod(private / "inner", 0o755)
        assert unreadable_by_others(private / "inner") == private
        os.chmod(private, 0o755)
        assert unreadable_by_others(private / "inner") is None
    finally:
        shutil.rmtree(root)
