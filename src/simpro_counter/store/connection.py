"""Building the Redis client the service uses: fail fast, never retry inside redis-py."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

# A healthy Redis answers in about a millisecond; waiting longer only delays the fallback
# to memory. Retrying is the circuit breaker's job, so redis-py must not retry on its own.
SOCKET_TIMEOUT = 0.25
HEALTH_CHECK_INTERVAL = 15
CLIENT_NAME = "simpro-counter"


def connect(url: str, *, timeout: float = SOCKET_TIMEOUT) -> aioredis.Redis:
    """An asyncio Redis client for `url` with short timeouts and no retries.

    Responses are decoded to `str`. hiredis parses replies when installed (it is, via
    `redis[hiredis]`). The client connects lazily, so this never blocks or fails on a
    Redis that is down.
    """
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=HEALTH_CHECK_INTERVAL,
        client_name=CLIENT_NAME,
        decode_responses=True,
    )


def describe_location(client: aioredis.Redis) -> str:
    """`host:port` or the socket path the client talks to; never the password."""
    kwargs = client.connection_pool.connection_kwargs
    path = kwargs.get("path")
    if path:
        return str(path)
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
