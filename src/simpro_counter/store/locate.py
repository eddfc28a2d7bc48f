"""Which Redis a command-line run uses: REDIS_URL, a running service's, or its own.

Given the two settings that decide it (the composition root, `wiring.py`, passes them).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

from simpro_counter.store.connection import connect
from simpro_counter.store.embedded import EmbeddedRedis


@asynccontextmanager
async def open_redis(redis_url: str | None, data_dir: Path) -> AsyncIterator[tuple[Redis, str]]:
    """A client and a description of where it points.

    With `REDIS_URL` that server; else the embedded Redis of a service running on the same
    `DATA_DIR` (its socket answers), shared, not owned; else an embedded Redis of this run's
    own, stopped at the end (its data persists in `DATA_DIR` for the next service start).
    """
    if redis_url:
        client = connect(redis_url)
        try:
            yield client, "REDIS_URL"
        finally:
            await client.aclose()
        return
    embedded = EmbeddedRedis(data_dir)
    if embedded.socket_path.exists():
        client = connect(embedded.url)
        try:
            await client.ping()
        except (RedisError, OSError):
            await client.aclose()
        else:
            try:
                yield client, f"the running service's embedded Redis in {data_dir}"
            finally:
                await client.aclose()
            return
    await asyncio.to_thread(embedded.start)
    client = connect(embedded.url)
    try:
        yield client, f"embedded Redis in {data_dir}"
    finally:
        await client.aclose()
        await asyncio.to_thread(embedded.stop)
