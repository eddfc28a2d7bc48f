"""Which Redis a command-line run uses: REDIS_URL / REDIS_SENTINELS / a cluster, a
running service's, or its own.

Given the two settings that decide it (the composition root, `wiring.py`, passes them).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

from simpro_counter.store.connection import RedisTarget, connect, connect_target
from simpro_counter.store.embedded import EmbeddedRedis


@asynccontextmanager
async def open_redis(target: RedisTarget, data_dir: Path) -> AsyncIterator[tuple[Redis, str]]:
    """A client and a description of where it points.

    With `REDIS_URL` that server; else the embedded Redis of a service running on the same
    `DATA_DIR` (its socket answers), shared, not owned; else an embedded Redis of this run's
    own, stopped at the end (its data persists in `DATA_DIR` for the next service start).
    """
    if target.url or target.sentinels:
        client = connect_target(target)
        try:
            yield client, _configured[target.topology]
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


_configured = {
    "single": "REDIS_URL",
    "sentinel": "REDIS_SENTINELS",
    "cluster": "the cluster of REDIS_URL",
}
