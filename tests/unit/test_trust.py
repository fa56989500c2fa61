"""The state directory, its config file and the proxy install must be changeable by nobody else."""

from __future__ import annotations

import os
import pwd

import pytest

from himalia.hub.trust import UntrustedPath, check_trusted, check_tree_trusted
from himalia_testing import require_service


@pytest.fixture
def other_uid():
    if os.geteuid() != 0:
        require_service("giving files to another account needs root")
    return pwd.getpwnam("nobody").pw_uid


def test_a_private_state_directory_is_trusted(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "himalia_config.py").write_text("")
    check_trusted(state, "The state directory")
    check_trusted(state / "himalia_config.py", "The configuration file")
    check_trusted(tmp_path / "not-yet", "The state directory")


def test_a_state_directory_owned_by_another_account_is_refused(tmp_path, other_uid):
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, other_uid, -1)
    with pytest.raises(UntrustedPath, match=rf"{state} is owned by uid {other_uid}.*chown"):
        check_trusted(state, "The state directory")


def test_a_config_file_others_can_write_is_refused(tmp_path):
    config = tmp_path / "himalia_config.py"
    config.write_text("")
    os.chmod(config, 0o666)
    with pytest.raises(UntrustedPath, match="writable by other accounts"):
        check_trusted(config, "The configuration file")
    os.chmod(config, 0o644)
    check_trusted(config, "The configuration file")


def test_a_folder_above_others_can_write_is_refused_unless_sticky(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "state").mkdir(mode=0o700)
    os.chmod(shared, 0o777)
    with pytest.raises(UntrustedPath, match=f"{shared} is writable"):
        check_trusted(shared / "state", "The state directory")
    os.chmod(shared, 0o1777)  # like /tmp: others cannot rename what is ours inside
    check_trusted(shared / "state", "The state directory")
    # The directory itself may not rely on the sticky bit.
    os.chmod(shared / "state", 0o1777)
    with pytest.raises(UntrustedPath):
        check_trusted(shared / "state", "The state directory")


def test_a_proxy_install_with_a_file_of_another_account_is_refused(tmp_path, other_uid):
    prefix = tmp_path / "proxy"
    (prefix / "node_modules" / ".bin").mkdir(parents=True)
    (prefix / "node_modules" / "chp.js").write_text("")
    (prefix / "node_modules" / ".bin" / "chp").symlink_to("../chp.js")
    check_tree_trusted(prefix, "The proxy installed in")
    os.chown(prefix / "node_modules" / "chp.js", other_uid, -1)
    with pytest.raises(UntrustedPath, match="chp.js is owned by uid"):
        check_tree_trusted(prefix, "The proxy installed in")
