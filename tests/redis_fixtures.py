"""Real redis-servers for tests, started through `EmbeddedRedis` and stopped by PID.

Use them from a test module or conftest with
`pytest_plugins = ["tests.redis_fixtures"]` (or import the fixtures by name):

- `redis_server`: a fresh server of the test's own on a free loopback port, in tmp_path;
  stop and `start()` it again to simulate an outage at the same address.
- `shared_redis`: one server for the whole session.
- `redis_url`: the shared server's URL, flushed before the test.
- `redis_client`: an asyncio client (`store.connect`) on `redis_server`.

Helpers (`free_port`, `sync_client`) can be imported from here in any order relative to
the plugin registration: PYTEST_DONT_REWRITE (this module has no asserts to rewrite).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from simpro_counter.store import EmbeddedRedis, connect


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def sync_client(server: EmbeddedRedis) -> redis.Redis:
    """A plain blocking client on `server`, for assertions that bypass the store."""
    return redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=2)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("shared-redis"), port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(shared_redis: EmbeddedRedis) -> str:
    with sync_client(shared_redis) as client:
        client.flushall()
    return shared_redis.url


@pytest.fixture
async def redis_client(redis_server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    client = connect(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()
