"""`serve --workers N`: N uvicorn worker processes on one port, one supervising process.

uvicorn's own supervisor binds the socket, spawns the workers (each imports
:func:`worker_app` afresh: the spawn start method shares nothing but the socket), restarts
a worker that dies and stops them all on SIGINT/SIGTERM.

With the embedded Redis (no `REDIS_URL`) the supervisor owns redis-server: it starts it in
`DATA_DIR` before the workers, hands them its socket as `REDIS_URL` (so no worker starts
one of its own) and stops it by its PID after the last worker has exited. Everything that
must hold across workers already holds across replicas, through that one Redis: the
refresh lock, the webhook consumer group, and pub/sub keeping each near-cache current.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI

from simpro_counter.cli.common import configure_logging, settings_or_exit
from simpro_counter.cli.server_options import server_options
from simpro_counter.settings import Settings
from simpro_counter.store import EmbeddedRedis
from simpro_counter.store.processes import die_with_parent
from simpro_counter.wiring import uses_embedded_redis

# What uvicorn imports in each worker (an import string: an app object cannot be sent to a
# spawned process).
WORKER_APP = "simpro_counter.cli.workers:worker_app"


def serve_workers(settings: Settings, *, workers: int, access_log: bool) -> None:
    """Run `workers` processes of the service on `settings.host:settings.port`."""
    import uvicorn

    configure_logging()
    with _shared_redis(settings) as embedded_url:
        # The workers read their settings from the environment, as this process did; the
        # command-line overrides and the supervisor's Redis are passed the same way.
        os.environ.update({"HOST": settings.host, "PORT": str(settings.port)})
        if embedded_url is not None:
            os.environ["REDIS_URL"] = embedded_url
        # Each worker applies the limits to its own connections (MAX_CONNECTIONS each).
        uvicorn.run(
            WORKER_APP,
            factory=True,
            workers=workers,
            **server_options(settings, access_log=access_log),
        )


@contextmanager
def _shared_redis(settings: Settings) -> Iterator[str | None]:
    """The URL of the embedded server this process runs for all workers (stopped, by its
    PID, when the block ends: after uvicorn has joined every worker); None when the
    settings name a Redis (REDIS_URL or REDIS_SENTINELS) the workers reach themselves."""
    if not uses_embedded_redis(settings):
        yield None
        return
    with EmbeddedRedis(settings.data_dir) as server:
        yield server.url


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn's factory, called in the worker)."""
    from simpro_counter.web import create_app

    # A worker must not outlive its supervisor (even one killed by SIGKILL): it would keep
    # the port open with the Redis it was given gone. SIGTERM stops it gracefully.
    preexec = die_with_parent(os.getppid())
    if preexec is not None:
        preexec()
    configure_logging()
    return create_app(settings_or_exit())
