"""A fake Simpro REST API with seeded data and known ground truth.

Use `Simulator(config).transport()` in-process with httpx, `running_simulator()`
for real HTTP in tests, and `serve()` for a standalone demo server.

Choices where Simpro's behaviour is unknown or ambiguous:
- Result-Pages is 0 when no record matches (ceil(0 / pageSize)).
- If-Modified-Since returns records whose DateModified is at or after the date
  sent (>=, at 1 s resolution), and mutations stamp the current second, so a client
  that sends back the Date of its last response never misses a change; it may see
  a record changed in that same second twice. With no match the answer is 304 or
  200 [] (config.not_modified_status). Deleted records just disappear.
- Two builds Simpro may be: one that does not search on `ID` (config.ignore_id_filters:
  `ID=between(...)`, `ID=in(...)`, ... are silently ignored) and one that ignores
  If-Modified-Since (config.ignore_if_modified_since: every record, 200). Off by default.
- The rate limit and injected faults apply to /api/v1.0/ only; /oauth2/token gets
  latency but is never limited or faulted; /__ endpoints get neither. The limit is a
  token bucket (a burst of `rate`) or a sliding one-second window (config.limiter);
  its 429 carries no Retry-After.
- A "drop" fault sends headers and part of the body, then closes the connection
  (in-process: httpx.RemoteProtocolError); a "slow" one ends early if the client
  hangs up. The in-process transport honours the read timeout (httpx.ReadTimeout).
- Webhooks (companies/{id}/setup/webhooks/) get invoice.created/updated/deleted,
  invoice.stage.approved/pending and job/quote.created deliveries (the only data that
  changes), signed with hex HMAC-SHA1 in X-Response-Signature. Under uvicorn they go out
  in the background; in-process, `await sim.webhooks.flush()` sends them. GET /__webhooks
  shows the delivery log.
- Unverified behaviours are options (SimulatorConfig): unknown_query_fields ("ignore",
  as Simpro documents, or "reject" with 422), stage_change_sends_updated (whether a
  Stage change also sends invoice.updated) and webhook_reference_id ("ID" or
  "InternalID" in a delivery's reference).
"""

from .config import FAULT_KINDS, LIMITER_SHAPES, SimulatorConfig
from .dataset import ChangeEvent, Dataset
from .limits import FaultInjector, LatencyModel, SlidingWindow, TokenBucket
from .server import RunningSimulator, running_simulator, serve
from .simulator import Simulator
from .stats import RequestStats
from .truth import Truth
from .webhook_api import OFFERED_EVENTS as WEBHOOK_EVENTS
from .webhook_dispatch import Subscription, WebhookDispatcher

__all__ = [
    "FAULT_KINDS",
    "LIMITER_SHAPES",
    "WEBHOOK_EVENTS",
    "ChangeEvent",
    "Dataset",
    "FaultInjector",
    "LatencyModel",
    "RequestStats",
    "RunningSimulator",
    "Simulator",
    "SimulatorConfig",
    "SlidingWindow",
    "Subscription",
    "TokenBucket",
    "Truth",
    "WebhookDispatcher",
    "running_simulator",
    "serve",
]
