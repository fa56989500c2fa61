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


def test_files_an_older_version_left_open_are_made_private(tmp_path):
    paths = StatePaths(tmp_path / "state")
    paths.logs.mkdir(parents=True)
    os.chmod(paths.logs, 0o755)
    paths.hub_db.write_text("")
    os.chmod(paths.hub_db, 0o644)
    _prepare_state(paths)
    assert stat.S_IMODE(paths.logs.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.hub_db.stat().st_mode) == 0o600
    for entry in paths.root.iterdir():
        assert stat.S_IMODE(entry.stat().st_mode) & 0o077 == 0, entry


def test_version_change_migrates_the_api_database(tmp_path, caplog):
    paths = StatePaths(tmp_path)
    _prepare_state(paths)
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


def up(tmp_path, capsys, *args, config: str = "", env: dict | None = None) -> str:
    """Run ``himalia up`` in-process up to its first refusal; return its one-line error."""
    from himalia.hub.cli import main

    state = tmp_path / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    if config:
        (state / "himalia_config.py").write_text(config)
    code = main(["up", "--state-dir", str(state), *args], env=env or {})
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert err.count("\n") == 0 and err.startswith("himalia: "), err
    return err


def test_a_database_password_on_the_command_line_is_refused(tmp_path, capsys):
    err = up(tmp_path, capsys, "--db-url", "postgresql://hub:s3cret@127.0.0.1/hub")
    assert "--db-url contains a password, which ps shows" in err and "HIMALIA_DB_URL" in err
    assert "s3cret" not in err
    err = up(tmp_path, capsys, "--api-db-url", "postgresql://api:pw@127.0.0.1/api")
    assert "--api-db-url contains a password" in err


def test_database_urls_come_from_the_environment(tmp_path, capsys):
    err = up(tmp_path, capsys, env={"HIMALIA_DB_URL": "mongodb://nowhere"})
    assert "c.HimaliaConfig.db_url must be an SQLAlchemy URL" in err


def test_the_api_may_not_use_the_hubs_database_role(tmp_path):
    from himalia.hub.cli.platform import _api_database_url

    cfg = HimaliaConfig(state_dir=str(tmp_path), db_url="postgresql://hub@127.0.0.1:1/hub",
                        api_db_url="postgresql://hub@127.0.0.1:1/api")
    with pytest.raises(CLIError, match="uses the hub's database role"):
        _api_database_url(cfg, StatePaths(tmp_path))


def test_as_root_servers_never_run_as_root(tmp_path, capsys):
    if os.geteuid() != 0:
        pytest.skip("only a root start can put servers under root")
    err = up(tmp_path, capsys, config="c.HimaliaConfig.system_users = False\n")
    assert "as root, every user's server runs as the user's own Unix account" in err


def test_a_state_directory_another_account_can_change_is_refused(tmp_path, capsys):
    import pwd

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    ran = tmp_path / "config-ran"
    # What another account would plant: code that himalia up (root) must never run. (Should
    # the check ever fail, the bad URL ends the start before anything else happens.)
    (state / "himalia_config.py").write_text(f"open({str(ran)!r}, 'w').close()\n"
                                             "c.HimaliaConfig.db_url = 'mongodb://stop-here'\n")
    os.chmod(state / "himalia_config.py", 0o666)
    err = up(tmp_path, capsys)
    assert "The configuration file" in err and "writable by other accounts" in err
    assert not ran.exists()
    os.chmod(state / "himalia_config.py", 0o600)
    if os.geteuid() == 0:
        os.chown(state, pwd.getpwnam("nobody").pw_uid, -1)
        err = up(tmp_path, capsys)
        assert f"{state} is owned by uid" in err and "chown" in err
        assert not ran.exists()


def test_settings_that_stop_the_hub_are_one_line_at_up(tmp_path, capsys):
    err = up(tmp_path, capsys, config="c.HimaliaConfig.authenticator = 'oauth'\n"
                                      "c.HimaliaOAuthenticator.allowed_groups = {'ml-team'}\n")
    assert "c.HimaliaOAuthenticator.allowed_groups needs OAuthenticator's manage_groups" in err
    err = up(tmp_path, capsys, config="c.HimaliaConfig.system_user_prefix = ''\n")
    assert "system_user_prefix '' must be 1 to 16 characters" in err
    err = up(tmp_path, capsys, config="c.HimaliaConfig.ssl_cert = '/etc/cert.pem'\n")
    assert "ssl_cert and ssl_key go together" in err
