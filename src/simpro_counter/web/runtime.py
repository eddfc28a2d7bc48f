"""Everything one app instance runs: Redis (maybe embedded), the store, refresher, scheduler.

The parts are built by the composition root (`wiring.py`); this module holds them for the
routes, starts them in order and stops them in reverse.
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass, field, replace

import httpx
from redis.asyncio import Redis

from simpro_counter.growth import CustomerGrowth, GrowthHistory
from simpro_counter.logsafe import RateLimitedLog
from simpro_counter.metrics import Interval
from simpro_counter.refresh import CUSTOMERS, Refresher
from simpro_counter.scheduler import Scheduler
from simpro_counter.settings import Settings
from simpro_counter.simpro import SimproClient, SimproConfig
from simpro_counter.store import EmbeddedRedis, ResilientStore
from simpro_counter.telemetry import Telemetry
from simpro_counter.web.reads import CounterReads
from simpro_counter.web.throttle import TokenThrottle
from simpro_counter.webhooks.worker import WebhookWorker
from simpro_counter.wiring import build_service

# How long a Simpro reachability result is trusted by /readyz (each check costs a request).
_SIMPRO_CHECK_SECONDS = 30.0


@dataclass
class Runtime:
    settings: Settings
    simpro: SimproConfig
    store: ResilientStore
    redis_client: Redis
    refresher: Refresher
    scheduler: Scheduler
    telemetry: Telemetry
    reads: CounterReads
    growth: CustomerGrowth
    webhooks: WebhookWorker | None = None
    embedded: EmbeddedRedis | None = None
    transport: httpx.AsyncBaseTransport | None = None
    queue_client: Redis | None = None
    token_throttle: TokenThrottle = field(default_factory=TokenThrottle)
    """Every check of ADMIN_TOKEN in this process spends from it (`web/throttle.py`)."""
    warnings: RateLimitedLog = field(default_factory=RateLimitedLog)
    """For the warnings any client can trigger (wrong tokens, bad webhooks)."""
    _simpro_checked: tuple[float, bool, str] = field(default=(0.0, False, "not checked yet"))

    @classmethod
    async def start(
        cls,
        settings: Settings,
        simpro: SimproConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Runtime:
        parts = await build_service(settings, simpro, transport=transport)
        counting = parts.counting
        runtime = cls(
            settings=settings,
            simpro=simpro,
            store=counting.store,
            redis_client=parts.redis_client,
            refresher=counting.refresher,
            scheduler=parts.scheduler,
            telemetry=counting.telemetry,
            reads=CounterReads(
                counting.store, counting.refresher, counting.telemetry, currency=settings.currency
            ),
            growth=parts.growth,
            webhooks=parts.webhooks,
            embedded=parts.embedded,
            transport=transport,
            queue_client=parts.queue_client,
        )
        # Start-up does what /api/init does: the scheduler's first check refreshes an
        # empty store at once.
        runtime.scheduler.start()
        if runtime.webhooks is not None:
            runtime.webhooks.start()
        # Everything built so far lives as long as the process: move it out of the garbage
        # collector's sight, so collections during requests stay short (tail latency).
        gc.collect()
        gc.freeze()
        return runtime

    async def aclose(self) -> None:
        """Stop the scheduler, cancel a running scan (releasing its lock), close Redis."""
        await self.scheduler.aclose()
        if self.webhooks is not None:
            await self.webhooks.aclose()
        await self.refresher.aclose()
        await self.store.aclose()
        await self.redis_client.aclose()
        if self.queue_client is not None:
            await self.queue_client.aclose()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)  # it logs that it stopped

    async def growth_history(self, interval: Interval) -> GrowthHistory:
        """The customer growth history; `HistoryUnavailableError` until a full scan has
        rebuilt the ledger under the current rules (a partial ledger gives a wrong one)."""
        current = await self.store.read(CUSTOMERS)
        ready = current is not None and self.refresher.built_on_ledger(current)
        return await self.growth.history(interval, ready=ready)

    async def simpro_reachable(self) -> tuple[bool, str]:
        """Whether Simpro answered recently (cached, so probes do not spend the rate limit)."""
        checked_at, ok, detail = self._simpro_checked
        if time.monotonic() - checked_at < _SIMPRO_CHECK_SECONDS:
            return ok, detail
        # A few quick attempts: one dropped or garbled answer is not an outage.
        config = replace(
            self.simpro,
            retry_attempts=3,
            retry_timeout=5.0,
            timeout=min(self.simpro.timeout, 5.0),
        )
        try:
            async with SimproClient(config, transport=self.transport) as client:
                await client.get_json("info/", {})
            ok, detail = True, "reachable"
        except Exception as exc:  # any failure means "not ready"; the reason is reported
            ok, detail = False, str(exc) or type(exc).__name__
        self._simpro_checked = (time.monotonic(), ok, detail)
        return ok, detail
