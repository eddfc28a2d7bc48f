"""Building the Redis client the service uses: fail fast, never retry inside redis-py.

One server (`REDIS_URL`), a Sentinel-managed master (`REDIS_SENTINELS`) or a Redis
Cluster (`REDIS_CLUSTER=true`, `REDIS_URL` naming any node), each through redis-py's own
support, described by a :class:`RedisTarget`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

# A healthy Redis answers in about a millisecond; waiting longer only delays the fallback
# to memory. Retrying is the circuit breaker's job, so redis-py must not retry on its own.
SOCKET_TIMEOUT = 0.25
HEALTH_CHECK_INTERVAL = 15
CLIENT_NAME = "simpro-counter"
DEFAULT_SENTINEL_MASTER = "mymaster"

Topology = Literal["single", "sentinel", "cluster"]


@dataclass(frozen=True)
class RedisTarget:
    """Which Redis deployment to talk to (built from the settings by `wiring.py`).

    Its repr shows the URL with any password masked, and never the Sentinels' password.
    """

    url: str | None = field(default=None, repr=False)
    """One server, or with `cluster` any node of the cluster; may carry a password."""
    sentinels: tuple[tuple[str, int], ...] = ()
    """Sentinel addresses; when given, the master they name is used and `url` is not."""
    sentinel_master: str = DEFAULT_SENTINEL_MASTER
    sentinel_password: str | None = field(default=None, repr=False)
    """AUTH for the Sentinels themselves; never shown (left out of repr)."""
    cluster: bool = False

    def __repr__(self) -> str:
        url = masked_url(self.url) if self.url else None
        return (
            f"RedisTarget(url={url!r}, sentinels={self.sentinels!r}, "
            f"sentinel_master={self.sentinel_master!r}, cluster={self.cluster!r})"
        )

    @property
    def topology(self) -> Topology:
        if self.sentinels:
            return "sentinel"
        return "cluster" if self.cluster else "single"


def masked_url(url: str) -> str:
    """`url` with its credentials (user name and password) replaced by `***`, for showing it.

    Everything up to the last `@` goes, so a password holding an unencoded `/` or `#`
    (which urllib would read as a path) is masked too.
    """
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}"


def connect(url: str, *, timeout: float = SOCKET_TIMEOUT) -> aioredis.Redis:
    """An asyncio Redis client for `url` with short timeouts and no retries.

    Responses are decoded to `str`. hiredis parses replies when installed (it is, via
    `redis[hiredis]`). The client connects lazily, so this never blocks or fails on a
    Redis that is down.
    """
    return aioredis.Redis.from_url(url, **_client_options(timeout))


def connect_target(target: RedisTarget, *, timeout: float = SOCKET_TIMEOUT) -> aioredis.Redis:
    """A client for a single server, a Sentinel-managed master or a cluster; lazy, like
    :func:`connect`.

    A cluster client is returned under the `Redis` type: `RedisCluster` answers the same
    commands the stores use (scripts, pipelines, streams, pub/sub), routing each to the
    node owning its keys' slot — which is why every key then carries a hash tag.
    """
    if target.sentinels:
        sentinel_options: dict[str, object] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        }
        if target.sentinel_password:
            sentinel_options["password"] = target.sentinel_password
        sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            list(target.sentinels), sentinel_kwargs=sentinel_options, **_client_options(timeout)
        )
        master: aioredis.Redis = sentinel.master_for(target.sentinel_master)
        return master
    if not target.url:
        raise ValueError("a Redis target needs a URL or Sentinels")
    if target.cluster:
        options = _client_options(timeout)
        options.pop("health_check_interval")  # per-node connections check themselves
        cluster = RedisCluster.from_url(target.url, **options)
        return cast(aioredis.Redis, cluster)
    return connect(target.url, timeout=timeout)


def _first(cluster: RedisCluster) -> str:
    nodes = cluster.get_nodes()
    return f"{nodes[0].host}:{nodes[0].port}" if nodes else "its startup node"


def _client_options(timeout: float) -> dict[str, Any]:
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "client_name": CLIENT_NAME,
        "decode_responses": True,
    }


def describe_location(client: aioredis.Redis) -> str:
    """Where the client talks to, never a password: `host:port` or the socket path of one
    server; `sentinel master <name> at host:port (n Sentinels)`; `cluster of n masters,
    m replicas via host:port` (known once the client has connected)."""
    if isinstance(client, RedisCluster):
        masters, replicas = len(client.get_primaries()), len(client.get_replicas())
        if not masters:  # not connected yet: only the node of REDIS_URL is known
            return f"cluster via {_first(client)}"
        seed = client.get_default_node()
        return f"cluster of {masters} masters, {replicas} replicas via {seed.host}:{seed.port}"
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        sentinels = pool.sentinel_manager.sentinels
        master = getattr(pool, "master_address", None)
        at = f" at {master[0]}:{master[1]}" if master else ""
        return f"sentinel master {pool.service_name}{at} ({len(sentinels)} Sentinels)"
    kwargs = pool.connection_kwargs
    path = kwargs.get("path")
    if path:
        return str(path)
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
