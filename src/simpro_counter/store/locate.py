"""Which Redis a command-line run uses: REDIS_URL, a running service's, or its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError

from simpro_counter.settings import Settings
from simpro_counter.store.connection import connect
from simpro_counter.store.embedded import EmbeddedRedis


@asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[tuple[Redis, str]]:
    """A client and a description of where it points.

    With `REDIS_URL` that server; else the embedded Redis of a service running on the same
    `DATA_DIR` (its socket answers), shared, not owned; else an embedded Redis of this run's
    own, stopped at the end (its data persists in `DATA_DIR` for the next service start).
    """
    if settings.redis_url:
        client = connect(settings.redis_url)
        try:
            yield client, "REDIS_URL"
        finally:
            await client.aclose()
        return
    embedded = EmbeddedRedis(settings.data_dir)
    if embedded.socket_path.exists():
        client = connect(embedded.url)
        try:
            await client.ping()
        except (RedisError, OSError):
            await client.aclose()
        else:
            try:
                yield client, f"the running service's embedded Redis in {settings.data_dir}"
            finally:
                await client.aclose()
            return
    await asyncio.to_thread(embedded.start)
    client = connect(embedded.url)
    try:
        yield client, f"embedded Redis in {settings.data_dir}"
    finally:
        await client.aclose()
        await asyncio.to_thread(embedded.stop)
