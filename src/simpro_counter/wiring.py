"""The composition root: the parts the service and the command line run, built from the
settings in one place.

The service (:func:`build_service`, held by `web/runtime.py`) and `simpro-counter refresh`
(:func:`open_counting`) build their Redis, store, ledger and refresher here, so a new part
or setting is wired once. This is the only
module that turns :class:`Settings` into parts; it imports the parts and never `web/` or
`cli/`, which import it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from redis.asyncio import Redis

from simpro_counter.growth import CustomerGrowth
from simpro_counter.keys import Keys
from simpro_counter.metrics import InvoiceFilter
from simpro_counter.refresh import Refresher
from simpro_counter.scheduler import Scheduler
from simpro_counter.settings import Settings, simpro_config
from simpro_counter.simpro import SimproConfig
from simpro_counter.store import EmbeddedRedis, ResilientStore
from simpro_counter.store.connection import RedisTarget, connect_target
from simpro_counter.store.ledger import InvoiceLedgerStore
from simpro_counter.store.locate import open_redis
from simpro_counter.telemetry import Telemetry
from simpro_counter.webhooks.worker import QUEUE_TIMEOUT, WebhookWorker

log = logging.getLogger("simpro_counter")


@dataclass(frozen=True)
class Counting:
    """The parts that count and publish, over one Redis client."""

    keys: Keys
    store: ResilientStore
    ledger: InvoiceLedgerStore
    refresher: Refresher
    telemetry: Telemetry


def build_refresher(
    settings: Settings,
    store: ResilientStore,
    ledger: InvoiceLedgerStore | None,
    *,
    telemetry: Telemetry | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Refresher:
    """The refresher the service and `simpro-counter refresh` both run."""
    return Refresher(
        store,
        simpro_config(settings),
        ttl=settings.customer_count_ttl,
        telemetry=telemetry,
        transport=transport,
        ledger=ledger,
        lock_ttl=settings.refresh_lock_ttl,
        invoice_filter=InvoiceFilter.of(
            types=settings.invoice_type_list, stages=settings.invoice_stage_list
        ),
        currency=settings.currency,
    )


def deployment_keys(settings: Settings) -> Keys:
    """KEY_PREFIX's keys; in a Redis Cluster all hash-tagged into one slot."""
    return Keys.of(settings.key_prefix, cluster=settings.redis_cluster)


def redis_target(settings: Settings, url: str | None = None) -> RedisTarget:
    """The Redis deployment of the settings: Sentinels, a cluster, or one server
    (`url`, the embedded one's, stands in when REDIS_URL is unset)."""
    password = settings.redis_sentinel_password
    return RedisTarget(
        url=url or settings.redis_url,
        sentinels=settings.redis_sentinel_list,
        sentinel_master=settings.redis_sentinel_master,
        sentinel_password=password.get_secret_value() if password else None,
        cluster=settings.redis_cluster,
    )


def build_counting(
    settings: Settings,
    redis_client: Redis,
    *,
    telemetry: Telemetry | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Counting:
    """Store, ledger and refresher over `redis_client` (the store is not started yet)."""
    keys = deployment_keys(settings)
    store = ResilientStore(redis_client, keys)
    ledger = InvoiceLedgerStore(redis_client, keys)
    telemetry = telemetry or Telemetry()
    refresher = build_refresher(settings, store, ledger, telemetry=telemetry, transport=transport)
    return Counting(keys, store, ledger, refresher, telemetry)


def build_scheduler(settings: Settings, counting: Counting) -> Scheduler:
    """The background loop that refreshes missing and stale values (not started yet)."""
    return Scheduler(
        counting.store,
        counting.refresher,
        interval=settings.refresh_check_interval,
        full_every=settings.full_reconcile_interval,
    )


def connect_queue(target: RedisTarget) -> Redis:
    """The webhook worker's own client: a blocking queue read needs a longer socket
    timeout than the store's client has."""
    return connect_target(target, timeout=QUEUE_TIMEOUT)


def build_webhook_worker(
    settings: Settings,
    simpro: SimproConfig,
    queue_client: Redis,
    counting: Counting,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> WebhookWorker | None:
    """The worker applying queued deliveries (not started yet); None without
    WEBHOOK_SECRET, since no delivery can then be received."""
    if not settings.webhook_secret:
        return None
    return WebhookWorker(
        queue_client,
        counting.keys,
        counting.store,
        counting.ledger,
        simpro,
        counting.refresher,
        transport=transport,
        claim_idle=settings.webhook_claim_idle,
    )


def uses_embedded_redis(settings: Settings) -> bool:
    """Whether the service runs its own server: neither REDIS_SENTINELS nor REDIS_URL set."""
    return not (settings.redis_url or settings.redis_sentinels)


async def start_service_redis(settings: Settings) -> tuple[RedisTarget, EmbeddedRedis | None]:
    """The service's Redis: REDIS_SENTINELS, REDIS_URL (a server or a cluster node), else
    an embedded redis-server started now in DATA_DIR (returned too: the caller stops it)."""
    if not uses_embedded_redis(settings):
        return redis_target(settings), None
    embedded = EmbeddedRedis(settings.data_dir)
    await asyncio.to_thread(embedded.start)
    return redis_target(settings, embedded.url), embedded


@dataclass(frozen=True)
class ServiceParts:
    """Everything one service process runs, built and connected but not started."""

    counting: Counting
    redis_client: Redis
    queue_client: Redis
    scheduler: Scheduler
    growth: CustomerGrowth
    webhooks: WebhookWorker | None
    embedded: EmbeddedRedis | None


async def build_service(
    settings: Settings,
    simpro: SimproConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ServiceParts:
    """The service's parts over its Redis (an embedded one is started here); the store is
    started, so the first read knows whether Redis answers. The caller starts the
    scheduler and the webhook worker, and stops everything."""
    target, embedded = await start_service_redis(settings)
    redis_client = connect_target(target)
    counting = build_counting(settings, redis_client, transport=transport)
    await counting.store.start()
    if counting.store.redis_healthy:  # when it is not, the store has said so already
        log.info("Redis connected at %s", counting.store.redis_location)
    queue_client = connect_queue(target)
    return ServiceParts(
        counting=counting,
        redis_client=redis_client,
        queue_client=queue_client,
        scheduler=build_scheduler(settings, counting),
        growth=CustomerGrowth(counting.ledger),
        webhooks=build_webhook_worker(
            settings, simpro, queue_client, counting, transport=transport
        ),
        embedded=embedded,
    )


@asynccontextmanager
async def open_counting(settings: Settings) -> AsyncIterator[tuple[Counting, str]]:
    """The counting parts of a command-line run and where its Redis is: the one
    :func:`~simpro_counter.store.locate.open_redis` picks. The store is started and closed
    with it, so a run uses the same store, ledger and lock the service does."""
    async with open_redis(redis_target(settings), settings.data_dir) as (redis_client, where):
        counting = build_counting(settings, redis_client)
        async with counting.store:
            yield counting, where
