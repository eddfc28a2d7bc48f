"""The Simulator: one fake Simpro build with seeded data and known ground truth."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from starlette.applications import Starlette

from simpro_counter.webhooks.events import COUNTED_EVENTS

from .app import build_app
from .auth import Authenticator, Credentials
from .config import SimulatorConfig
from .dataset import Dataset
from .limits import FaultInjector, LatencyModel, rate_limit
from .stats import RequestStats
from .transport import SimulatorTransport
from .truth import Truth
from .webhook_dispatch import WebhookDispatcher


class Simulator:
    """A simulated build: data, behaviour knobs, statistics and the ASGI app serving them.

    clock: wall-clock seconds used for DateModified, Date headers and token expiry;
    tests inject a fake one to expire tokens or control timestamps without sleeping.

    hooks are called synchronously, in the thread serving the request, at the start
    of every Simpro API request (/api/v1.0/... and /oauth2/token) with its running
    number, which is stats.total after counting it (so it restarts after a reset).

    webhooks: subscriptions and deliveries of data set changes (see webhook_dispatch.py).
    Under uvicorn they go out in the background; in-process, `await
    sim.webhooks.flush()` sends what is queued. webhook_transport replaces the
    network for deliveries (e.g. httpx.ASGITransport of a receiving app).
    """

    def __init__(
        self,
        config: SimulatorConfig,
        *,
        clock: Callable[[], float] = time.time,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.dataset = Dataset.generate(
            invoices=config.invoices, customers=config.customers, seed=config.seed, clock=clock
        )
        self.faults = FaultInjector(config.fault_rate, config.fault_kinds, config.seed)
        self.stats = RequestStats()
        self.hooks: list[Callable[[int], None]] = []
        self.limiter = rate_limit(config.limiter, config.rate)
        self.latency = LatencyModel(config.latency, config.seed)
        self.auth = Authenticator(
            Credentials(
                api_key=config.api_key,
                client_id=config.client_id,
                client_secret=config.client_secret,
                token_lifetime=config.token_lifetime,
            ),
            clock,
        )
        self.webhooks = WebhookDispatcher(
            company_id=config.company_ids[0],
            seed=config.seed,
            transport=webhook_transport,
            clock=clock,
        )
        self.webhooks.stage_change_sends_updated = config.stage_change_sends_updated
        self.webhooks.reference_id = config.webhook_reference_id
        if config.webhook_url is not None:
            self.webhooks.subscribe(
                config.company_ids[0],
                name="Demo subscription",
                callback_url=config.webhook_url,
                secret=config.webhook_secret,
                events=COUNTED_EVENTS,
            )
        self.dataset.listeners.append(self.webhooks.on_change)
        self.app: Starlette = build_app(self)

    def truth(self) -> Truth:
        return self.dataset.truth()

    @property
    def webhook_log(self) -> list[dict[str, object]]:
        """One dict per finished webhook delivery; see WebhookDispatcher."""
        return self.webhooks.log

    def transport(self) -> httpx.AsyncBaseTransport:
        return SimulatorTransport(self.app)
