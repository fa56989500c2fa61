"""Why a kernel died, read from a memory cgroup laid out as cgroup v1 and v2 lay it out."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from jupyter_events import EventLogger

from himalia.extension.kernel_exits import EXIT_SCHEMA, KernelExitWatcher, MemoryCgroup


def v1(root, kills: int, limit: int) -> MemoryCgroup:
    (root / "memory").mkdir(exist_ok=True)
    (root / "memory" / "memory.oom_control").write_text(f"oom_kill_disable 0\nunder_oom 0\noom_kill {kills}\n")
    (root / "memory" / "memory.limit_in_bytes").write_text(f"{limit}\n")
    return MemoryCgroup(root)


def v2(root, kills: int, limit: str) -> MemoryCgroup:
    (root / "memory.events").write_text(f"low 0\nhigh 0\nmax 3\noom 1\noom_kill {kills}\n")
    (root / "memory.max").write_text(f"{limit}\n")
    return MemoryCgroup(root)


def test_cgroup_v1_and_v2_counters_and_limits(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    one = v1(tmp_path / "a", 2, 320 * 1024**2)
    assert (one.oom_kills(), one.limit()) == (2, 320 * 1024**2)
    two = v2(tmp_path / "b", 5, "max")
    assert (two.oom_kills(), two.limit()) == (5, None)
    unlimited_v1 = v1(tmp_path / "a", 2, 9223372036854771712)
    assert unlimited_v1.limit() is None
    assert MemoryCgroup(tmp_path / "none").oom_kills() is None


@pytest.fixture
def watcher(tmp_path):
    app = SimpleNamespace(event_logger=EventLogger())
    w = KernelExitWatcher(app, logging.getLogger("test"), v1(tmp_path, 0, 320 * 1024**2))
    w.start()
    return w


def test_a_death_after_an_oom_kill_says_out_of_memory_with_the_limit(watcher, tmp_path):
    v1(tmp_path, 1, 320 * 1024**2)
    record = watcher.kernel_died("k1")
    assert record["reason"] == "out-of-memory"
    assert "memory limit of 320 MiB" in record["message"] and "larger profile" in record["message"]
    # The next death without a new OOM kill is another reason.
    assert watcher.kernel_died("k2")["reason"] == "exited"
    assert [e["kernel_id"] for e in watcher.exits] == ["k1", "k2"]
    # What JupyterLab receives matches the registered schema (emit validates).
    watcher.serverapp.event_logger.emit(schema_id=EXIT_SCHEMA, data=record)


def test_kills_before_the_server_started_do_not_count(tmp_path):
    app = SimpleNamespace(event_logger=EventLogger())
    w = KernelExitWatcher(app, logging.getLogger("test"), v1(tmp_path, 4, 320 * 1024**2))
    assert w.kernel_died("k")["reason"] == "exited"
