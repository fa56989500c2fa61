"""State files are replaced atomically, and internal ports stay reusable across restarts."""

from __future__ import annotations

import os
import socket
import stat
import threading

from himalia.hub.cli import port_free
from himalia.hub.config import write_private


def test_readers_see_the_old_or_the_new_content_never_an_empty_file(tmp_path):
    path = tmp_path / "runtime.json"
    write_private(path, "A" * 4096)
    seen: set[str] = set()
    stop = threading.Event()

    def read_forever():
        while not stop.is_set():
            seen.add(path.read_text()[:1] or "<empty>")

    reader = threading.Thread(target=read_forever)
    reader.start()
    try:
        for i in range(300):
            write_private(path, ("B" if i % 2 else "A") * 4096)
    finally:
        stop.set()
        reader.join()
    assert seen <= {"A", "B"}, seen
    assert "<empty>" not in seen


def test_private_files_are_0600_and_leave_no_temporary_files(tmp_path):
    path = tmp_path / "admin-token"
    write_private(path, "secret\n")
    write_private(path, "other\n")
    assert path.read_text() == "other\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["admin-token"]


def test_a_symlink_planted_at_a_state_file_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (tmp_path / "admin-token").symlink_to(victim)
    write_private(tmp_path / "admin-token", "token\n")
    assert victim.read_text() == "untouched"
    assert not (tmp_path / "admin-token").is_symlink()


def test_owner_is_set_before_the_file_appears(tmp_path):
    path = tmp_path / "owned"
    write_private(path, "x", owner=(os.getuid(), os.getgid()))
    assert (path.stat().st_uid, path.stat().st_gid) == (os.getuid(), os.getgid())


def test_a_port_whose_connections_linger_in_time_wait_counts_as_free():
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    # The side that closes first keeps the port in TIME_WAIT: here the server's.
    conn.close()
    client.recv(1)
    client.close()
    server.close()
    assert port_free(port)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        assert not port_free(busy.getsockname()[1])
    finally:
        busy.close()
