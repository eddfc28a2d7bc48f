"""One chaos run: a real service process under reads, webhooks and refreshes while its
Redis is killed (and its AOF cut short) and Simpro fails, recorded as a `ChaosReport`.

The test suite (`tests/chaos/test_chaos.py`) runs one short cycle of the phases and
asserts on the report; `bench/soak.py` repeats the cycles for minutes and prints it.

What runs where:
- redis-server: an `EmbeddedRedis` on a loopback port in the run's directory, killed by
  its PID (SIGKILL) and started again on the same data dir.
- the simulator: under uvicorn on a thread of this process (`running_simulator`), so the
  activity below changes its data set directly and records the truth of every change
  while holding the data set's lock (nothing, not even the service, can read a state
  the truth history has not recorded yet). Its webhook dispatcher delivers each change,
  signed, to the service and retries a refused delivery (backoff widened below).
- the service: `simpro-counter serve` as its own process (`service_process`); its RSS is
  read from /proc/<pid>/status.
- the readers: asyncio tasks with one httpx client, on a thread of their own.

Faults come from the simulator's own switch (PUT /__faults: rate and kinds, at run
time), so the service meets them on its real connections to the real Simpro stand-in;
no proxy is needed.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from simpro_counter.simulator import RunningSimulator, SimulatorConfig, Truth, running_simulator
from simpro_counter.store import EmbeddedRedis
from simpro_counter.webhooks.events import COUNTED_EVENTS
from tests.redis_fixtures import free_port
from tests.service_fixtures import service_process, wait_until_counted

READ_METRICS = ("customers", "invoices", "revenue", "jobs", "quotes")
# One refresh of each group refreshes every metric (customers also counts invoices and
# revenue from the same scan).
REFRESH_GROUPS = ("customers", "jobs", "quotes")
ADMIN_TOKEN = "chaos-admin-token-0123456789abcdef0123456789"  # >= 32 characters
WEBHOOK_SECRET = "chaos-webhook-secret"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# A refused delivery is retried for about a minute: long enough for any outage of a phase.
WEBHOOK_BACKOFF: tuple[float, ...] = (0.2, 0.5, 1.0, *([1.0] * 60))
# What redis-server logs when it loads an AOF whose last command was cut short.
AOF_TRUNCATED_LOG = "aof-load-truncated"
# Kinds of Simpro failure the fault phase injects (every kind the simulator knows).
FAULTS = ("5xx", "drop", "slow", "truncated", "429")
# The stored customer count: the key the AOF is cut in (keys.py, under KEY_PREFIX).
COUNT_KEY = "chaos:customer_count"
# The service's count of webhook deliveries by outcome (its log is rate-limited); the
# outcomes of a 503: the backlog full, Redis unavailable.
DELIVERIES_METRIC = "simpro_counter_webhook_deliveries_total"
REFUSED_503 = ("backlog_full", "redis_unavailable")
MAX_EXAMPLES = 20  # failures kept verbatim per kind; all of them are counted


@dataclass(frozen=True)
class ChaosPlan:
    """How long each phase lasts and how hard it pushes."""

    seconds: float = 0.0  # run whole cycles until this much time has passed (0: one cycle)
    invoices: int = 1500
    customers: int = 400
    seed: int = 11
    readers: int = 4  # concurrent read loops
    read_pause: float = 0.02  # seconds each read loop rests between reads (CPU on a busy host)
    activity_every: float = 0.25  # seconds between data set changes
    refresh_every: float = 2.0  # seconds between admin refreshes
    baseline: float = 3.0
    redis_down: float = 3.0
    fault_seconds: float = 8.0
    fault_rate: float = 0.3
    burst: int = 150  # invoices created at once to fill the webhook backlog
    backlog_limit: int = 40  # WEBHOOK_BACKLOG_LIMIT of the service
    backlog_latency: float = 0.15  # Simpro's latency while the burst arrives
    backlog_slow: float = 3.0  # seconds Simpro stays that slow after the burst
    settle_timeout: float = 90.0
    rss_every: float = 0.25


@dataclass
class ReadLog:
    """What the readers saw; failures and wrong values are counted and a few kept."""

    reads: int = 0
    failed: int = 0
    wrong: int = 0
    decreased: int = 0
    off_history: int = 0  # right, but no state's exact value (see `_read_loop`)
    examples: list[str] = field(default_factory=list)
    slowest: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def note(self, kind: str, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{kind}: {text}")


@dataclass
class ChaosReport:
    seconds: float = 0.0
    cycles: int = 0
    reads: ReadLog = field(default_factory=ReadLog)
    changes: int = 0  # data set changes made (each one webhook delivery or more)
    deliveries: int = 0
    deliveries_retried: int = 0  # needed more than one attempt (refused, or failed)
    deliveries_refused_503: int = 0  # retried after a 503 (Redis down or backlog full)
    deliveries_refused_backlog: int = 0  # of which: the backlog was full
    deliveries_lost: list[str] = field(default_factory=list)
    refreshes: collections.Counter[int] = field(default_factory=collections.Counter)
    aof_truncations: int = 0
    aof_bytes_cut: int = 0
    aof_loaded_truncated: int = 0  # restarts whose log says aof-load-truncated kept it
    redis_kills: int = 0
    fault_requests: int = 0  # Simpro requests the simulator failed on purpose
    settle_seconds: float = 0.0  # from the last change until webhooks alone matched truth
    settled_values: dict[str, Decimal] = field(default_factory=dict)  # before any refresh
    final_values: dict[str, Decimal] = field(default_factory=dict)  # after a final refresh
    final_truth: dict[str, Decimal] = field(default_factory=dict)
    rss_kib: list[int] = field(default_factory=list)
    rss_baseline_kib: int = 0  # after warm-up (the first cycle's baseline phase)
    phases: list[tuple[str, float]] = field(default_factory=list)

    @property
    def rss_growth_kib(self) -> int:
        return max(self.rss_kib, default=0) - self.rss_baseline_kib

    def lines(self) -> list[str]:
        reads = self.reads
        ordered = sorted(reads.latencies)
        p99 = ordered[int(len(ordered) * 0.99)] if ordered else 0.0
        return [
            f"duration            {self.seconds:.1f} s, {self.cycles} cycle(s)",
            f"reads               {reads.reads:,} ({reads.reads / max(self.seconds, 1e-9):,.0f}"
            "/s), "
            f"p99 {p99 * 1000:.1f} ms, slowest {reads.slowest * 1000:.0f} ms",
            f"failed reads        {reads.failed}",
            f"wrong values        {reads.wrong} (of which decreases: {reads.decreased}); "
            f"{reads.off_history} within the truth but no state's exact value",
            f"changes / webhooks  {self.changes:,} / {self.deliveries:,} deliveries, "
            f"{self.deliveries_retried:,} retried ({self.deliveries_refused_503:,} refusals "
            f"with 503, {self.deliveries_refused_backlog:,} of them for a full backlog)",
            f"lost deliveries     {len(self.deliveries_lost)}",
            f"refreshes           {dict(sorted(self.refreshes.items()))}",
            f"redis kills         {self.redis_kills} (+{self.aof_truncations} with the AOF cut, "
            f"{self.aof_bytes_cut:,} bytes cut, "
            f"{self.aof_loaded_truncated} loaded with aof-load-truncated)",
            f"simpro faults       {self.fault_requests:,} requests failed on purpose",
            f"settled by webhooks {self.settle_seconds:.1f} s after the last change",
            f"final == truth      {self.final_values == self.final_truth} "
            f"(settled {self.settled_values == self.final_truth})",
            f"service RSS         baseline {self.rss_baseline_kib / 1024:.1f} MiB, "
            f"max {max(self.rss_kib, default=0) / 1024:.1f} MiB, "
            f"growth {self.rss_growth_kib / 1024:.1f} MiB",
        ] + [f"  {example}" for example in reads.examples]


# -- the truth over time -------------------------------------------------------------


def truth_values(truth: Truth) -> dict[str, Decimal]:
    return {
        "customers": Decimal(truth.customers),
        "invoices": Decimal(truth.invoices),
        "revenue": truth.revenue,
        "jobs": Decimal(truth.jobs),
        "quotes": Decimal(truth.quotes),
    }


class TruthHistory:
    """Every state of every metric, in order (each change appends one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, list[Decimal]] = {m: [] for m in READ_METRICS}
        self._held: dict[str, set[Decimal]] = {m: set() for m in READ_METRICS}
        self.latest: dict[str, Decimal] = {}

    def record(self, truth: Truth) -> None:
        values = truth_values(truth)
        with self._lock:
            for metric, value in values.items():
                self._states[metric].append(value)
                self._held[metric].add(value)
            self.latest = values

    def length(self) -> int:
        with self._lock:
            return len(self._states[READ_METRICS[0]])

    def within(self, metric: str, value: Decimal, length: int) -> bool:
        """Whether `value` lies between `metric`'s first state and its state `length - 1`:
        every metric only grows here, so that is never above the truth when it was read
        and never below where the run started."""
        with self._lock:
            states = self._states[metric]
            return length > 0 and states[0] <= value <= states[min(length, len(states)) - 1]

    def held(self, metric: str, value: Decimal) -> bool:
        """Whether `metric` was ever exactly `value`."""
        with self._lock:
            return value in self._held[metric]


# -- the load ------------------------------------------------------------------------


def _read_value(metric: str, body: dict[str, object]) -> Decimal | None:
    raw = body.get("total" if metric == "revenue" else "count")
    if raw is None or isinstance(raw, bool):
        return None
    return Decimal(str(raw))


async def _read_loop(
    client: httpx.AsyncClient, history: TruthHistory, log: ReadLog, stop: threading.Event,
    pause: float, deadline: float,
) -> None:  # fmt: skip
    last: dict[str, Decimal] = {}
    while not stop.is_set() and time.monotonic() < deadline:
        for metric in READ_METRICS:
            started = time.monotonic()
            try:
                response = await client.get(f"/api/simpro/{metric}")
                body = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                log.reads += 1
                log.note("failed", f"{metric}: {type(exc).__name__}: {exc}")
                continue
            elapsed = time.monotonic() - started
            known = history.length()  # after the answer: every state it could show
            log.reads += 1
            log.slowest = max(log.slowest, elapsed)
            log.latencies.append(elapsed)
            value = _read_value(metric, body) if response.status_code == 200 else None
            if value is None:
                log.note("failed", f"{metric}: {response.status_code} {response.text[:200]}")
                continue
            if not history.within(metric, value, known):
                log.note("wrong", f"{metric} = {value}, beyond the truth up to state {known}")
            elif metric in last and value < last[metric]:
                # Every metric only grows in this run: a smaller value is an older one
                # served after a newer.
                log.decreased += 1
                log.note("wrong", f"{metric} went from {last[metric]} back to {value}")
            elif not history.held(metric, value):
                # Within the truth but no state's exact value: possible only for revenue
                # (every count moves by steps of one), when deliveries were applied out
                # of order (one left pending by a failed apply, later ones applied first).
                log.off_history += 1
            last[metric] = max(value, last.get(metric, value))
            await asyncio.sleep(pause)


@contextmanager
def _readers(url: str, history: TruthHistory, log: ReadLog, plan: ChaosPlan) -> Iterator[None]:
    stop = threading.Event()
    deadline = time.monotonic() + 4 * 3600  # a bound for the loops; `stop` ends them

    async def main() -> None:
        limits = httpx.Limits(max_connections=plan.readers)
        async with httpx.AsyncClient(base_url=url, timeout=5.0, limits=limits) as client:
            await asyncio.gather(
                *(
                    _read_loop(client, history, log, stop, plan.read_pause, deadline)
                    for _ in range(plan.readers)
                )
            )

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="chaos readers")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


class Activity:
    """New invoices (some from new customers), jobs and quotes, each change recorded in
    the truth history under the data set's lock."""

    def __init__(self, running: RunningSimulator, history: TruthHistory, every: float) -> None:
        self._dataset = running.simulator.dataset
        self._history = history
        self._every = every
        self._rng = random.Random(7)
        self._ticks = 0
        self.changes = 0
        self.last_change = time.monotonic()
        self.running = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="chaos activity")
        self._change_lock = threading.Lock()

    def record_now(self) -> None:
        with self._dataset.lock:
            self._history.record(self._dataset.truth())

    def change(self, *, new_customer: bool = False) -> None:
        """One new invoice (from a customer with none: always when `new_customer`, else
        30 % of the time), a job every third change and a quote every fifth."""
        with self._change_lock, self._dataset.lock:
            self._ticks += 1
            new = self._dataset.uninvoiced_customer_ids()
            fresh = new_customer or self._rng.random() < 0.3
            self._dataset.add_invoice(customer_id=self._rng.choice(new) if new and fresh else None)
            if self._ticks % 3 == 0:
                self._dataset.add_work("jobs")
            if self._ticks % 5 == 0:
                self._dataset.add_work("quotes")
            self._history.record(self._dataset.truth())
            self.changes += 1
            self.last_change = time.monotonic()

    def _work(self) -> None:
        deadline = time.monotonic() + 4 * 3600
        while not self._stop.wait(self._every) and time.monotonic() < deadline:
            if self.running.is_set():
                self.change()

    def __enter__(self) -> Activity:
        self.running.set()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


class Refresher:
    """POSTs a refresh (with the admin token) of each group in turn while `running`."""

    def __init__(self, url: str, every: float, statuses: collections.Counter[int]) -> None:
        self._url = url
        self._every = every
        self.statuses = statuses
        self.running = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="chaos refreshes")

    def _work(self) -> None:
        deadline = time.monotonic() + 4 * 3600
        turn = 0
        with httpx.Client(base_url=self._url, timeout=60.0, headers=AUTH) as client:
            while not self._stop.wait(self._every) and time.monotonic() < deadline:
                if not self.running.is_set():
                    continue
                group = REFRESH_GROUPS[turn % len(REFRESH_GROUPS)]
                turn += 1
                try:
                    status = client.post(f"/api/simpro/{group}/refresh").status_code
                except httpx.HTTPError:
                    status = 0  # no answer at all
                self.statuses[status] += 1

    def __enter__(self) -> Refresher:
        self.running.set()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(90)


@contextmanager
def _rss_sampler(pid: int, samples: list[int], every: float) -> Iterator[None]:
    stop = threading.Event()
    status = Path(f"/proc/{pid}/status")

    def work() -> None:
        deadline = time.monotonic() + 4 * 3600
        while not stop.wait(every) and time.monotonic() < deadline:
            try:
                text = status.read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmRSS:"):
                    samples.append(int(line.split()[1]))

    thread = threading.Thread(target=work, name="chaos rss")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


# -- the chaos -----------------------------------------------------------------------


def kill_redis(server: EmbeddedRedis) -> None:
    """SIGKILL the redis-server by its PID and wait until it is gone."""
    pid = server.pid
    assert pid is not None, "redis-server is not running"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.running:  # polls (and so reaps) the process
        if time.monotonic() > deadline:
            raise AssertionError(f"redis-server {pid} outlived SIGKILL for 10 s")
        time.sleep(0.01)


def aof_tail_file(data_dir: Path) -> Path:
    """The AOF file redis appends to: `appendonly.aof` (Redis 6), or the last incremental
    file of `appendonlydir/` (Redis 7 and Valkey's multi-part AOF)."""
    single = data_dir / "appendonly.aof"
    if single.exists():
        return single
    parts = sorted(
        (data_dir / "appendonlydir").glob("*.incr.aof"),
        key=lambda p: int(p.name.rsplit(".", 3)[-3]),
    )
    if not parts:
        raise AssertionError(f"no AOF in {data_dir}")
    return parts[-1]


def truncate_aof(data_dir: Path, into_last_write_of: str) -> int:
    """Cut the AOF short in the middle of the last command that wrote the key
    `into_last_write_of` (a crash mid-write that loses the newest value and everything
    after it); the bytes cut. Without such a command, the last 5 bytes."""
    path = aof_tail_file(data_dir)
    data = path.read_bytes()
    at = data.rfind(f"\r\n{into_last_write_of}\r\n".encode())
    keep = at + 4 if at >= 0 else max(0, len(data) - 5)
    with path.open("r+b") as aof:
        aof.truncate(keep)
    return len(data) - keep


def set_faults(sim_url: str, rate: float, kinds: tuple[str, ...] = FAULTS) -> None:
    httpx.put(f"{sim_url}/__faults", json={"rate": rate, "kinds": list(kinds)}, timeout=5)


def _service_env(
    running: RunningSimulator, redis: EmbeddedRedis, plan: ChaosPlan
) -> dict[str, str]:
    return {
        "SIMPRO_BASE_URL": running.url,
        "SIMPRO_API_KEY": "demo-key",
        "SIMPRO_RATE_LIMIT": "1000",
        # Short timeouts, so "slow" faults time out and retries end within a phase.
        "SIMPRO_TIMEOUT": "1.0",
        "SIMPRO_RETRY_ATTEMPTS": "6",
        "SIMPRO_RETRY_TIMEOUT": "8",
        "REDIS_URL": redis.url,
        "KEY_PREFIX": "chaos",
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        # Deliveries a failed apply left pending are taken again after 2 s, not a minute.
        "WEBHOOK_CLAIM_IDLE": "2",
        "WEBHOOK_BACKLOG_LIMIT": str(plan.backlog_limit),
        # The scheduler checks every second: a value whose ledger rebuild failed (Redis went
        # away during a full scan) is scanned again 5 s after it was computed.
        "REFRESH_CHECK_INTERVAL": "1",
    }


def _values(url: str) -> dict[str, Decimal | None]:
    values: dict[str, Decimal | None] = {}
    for metric in READ_METRICS:
        response = httpx.get(f"{url}/api/simpro/{metric}", timeout=5)
        values[metric] = _read_value(metric, response.json()) if response.is_success else None
    return values


def _wait_for_values(url: str, want: dict[str, Decimal] | None, within: float) -> bool:
    """Poll until every metric has a value (equal to `want` when given); bounded."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        values = _values(url)
        if want is None and all(v is not None for v in values.values()):
            return True
        if want is not None and values == want:
            return True
        time.sleep(0.2)
    return False


class _Run:
    """The phases, with the parts they act on."""

    def __init__(
        self, plan: ChaosPlan, report: ChaosReport, redis: EmbeddedRedis,
        running: RunningSimulator, url: str, activity: Activity, refresher: Refresher,
    ) -> None:  # fmt: skip
        self.plan = plan
        self.report = report
        self.redis = redis
        self.running = running
        self.url = url
        self.activity = activity
        self.refresher = refresher

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.report.phases.append((name, time.monotonic() - started))

    def drain_webhooks(self) -> None:
        """Wait until the simulator has sent every queued delivery (retries included)."""
        webhooks = self.running.simulator.webhooks
        try:
            webhooks.flush_sync(timeout=self.plan.settle_timeout)
        except TimeoutError:
            raise AssertionError(
                f"webhook deliveries still pending after {self.plan.settle_timeout:g} s: "
                f"{webhooks.pending()} queued"
            ) from None

    def wait_for_redis(self) -> None:
        """Until the service serves from Redis again (its circuit closed), bounded."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = httpx.get(f"{self.url}/api/simpro/customers", timeout=5).json()
            if body.get("source") == "redis":
                return
            time.sleep(0.1)
        raise AssertionError("the service did not go back to Redis within 30 s")

    def cycle(self) -> None:
        plan, report = self.plan, self.report
        with self.phase("baseline"):
            time.sleep(plan.baseline)
        if not report.rss_baseline_kib and report.rss_kib:
            report.rss_baseline_kib = report.rss_kib[-1]

        with self.phase("redis killed"):
            kill_redis(self.redis)
            report.redis_kills += 1
            time.sleep(plan.redis_down)
            self.redis.start()

        with self.phase("redis killed, AOF cut"):
            # Quiet first, so the cut loses a published value, not an accepted delivery
            # (that would be the disk losing data, beyond what the service can help).
            self.activity.running.clear()
            self.refresher.running.clear()
            self.drain_webhooks()
            self.wait_for_redis()
            # One new customer, applied and served from Redis: the write the cut will lose.
            self.activity.change(new_customer=True)
            self.drain_webhooks()
            truth = truth_values(self.running.simulator.truth())
            if not _wait_for_values(self.url, truth, plan.settle_timeout):
                raise AssertionError(f"{_values(self.url)} never reached {truth}")
            self.wait_for_redis()
            log_before = self.redis.logfile.stat().st_size
            kill_redis(self.redis)
            report.redis_kills += 1
            report.aof_bytes_cut += truncate_aof(self.redis.data_dir, COUNT_KEY)
            report.aof_truncations += 1
            time.sleep(plan.redis_down)
            self.redis.start()
            with self.redis.logfile.open("rb") as log:
                log.seek(log_before)
                if AOF_TRUNCATED_LOG.encode() in log.read():
                    report.aof_loaded_truncated += 1
            # Still quiet: nothing but the readers until the service serves from the
            # restarted Redis, which lost the newest value.
            self.wait_for_redis()
            time.sleep(1.0)
            self.activity.running.set()
            self.refresher.running.set()

        with self.phase("simpro failing"):
            before = self.running.simulator.stats.as_json()
            set_faults(self.running.url, plan.fault_rate)
            try:
                time.sleep(plan.fault_seconds)
            finally:
                set_faults(self.running.url, 0.0)
            after = self.running.simulator.stats.as_json()
            report.fault_requests += _faults_injected(after) - _faults_injected(before)

        with self.phase("webhook backlog full"):
            # A burst while Simpro is slow (each delivery's apply fetches its invoice) fills
            # the backlog; then Simpro speeds up and the held-back deliveries drain. The
            # steady activity pauses meanwhile, or it would keep the backlog full.
            simulator = self.running.simulator
            self.activity.running.clear()
            simulator.latency.mean = plan.backlog_latency
            try:
                for _ in range(plan.burst):
                    self.activity.change()
                time.sleep(plan.backlog_slow)
            finally:
                simulator.latency.mean = 0.0
            self.drain_webhooks()
            self.activity.running.set()
        report.cycles += 1

    def settle(self) -> None:
        """No more changes or refreshes: webhooks alone must bring every value to the
        truth; then a final refresh must agree."""
        report = self.report
        with self.phase("settle"):
            self.activity.running.clear()
            self.refresher.running.clear()
            self.activity.record_now()
            self.drain_webhooks()
            truth = truth_values(self.running.simulator.truth())
            report.final_truth = truth
            _wait_for_values(self.url, truth, self.plan.settle_timeout)
            report.settle_seconds = time.monotonic() - self.activity.last_change
            report.settled_values = {k: v for k, v in _values(self.url).items() if v is not None}
            with httpx.Client(base_url=self.url, timeout=60.0, headers=AUTH) as client:
                for group in REFRESH_GROUPS:
                    report.refreshes[client.post(f"/api/simpro/{group}/refresh").status_code] += 1
            _wait_for_values(self.url, truth, 30)
            report.final_values = {k: v for k, v in _values(self.url).items() if v is not None}


def _faults_injected(stats: dict[str, object]) -> int:
    faults = stats.get("faults", {})
    return sum(int(v) for v in faults.values()) if isinstance(faults, dict) else 0


def _deliveries(running: RunningSimulator, report: ChaosReport) -> None:
    log = running.simulator.webhook_log
    report.deliveries = len(log)
    for entry in log:
        attempts = entry["attempts"]
        if isinstance(attempts, int) and attempts > 1:
            report.deliveries_retried += 1
        if not entry["ok"]:
            report.deliveries_lost.append(
                f"{entry['event']} {entry['reference']}: {entry['status']} {entry['error']}"
            )


def run_chaos(workdir: Path, plan: ChaosPlan) -> ChaosReport:
    """Start everything, run the phases (whole cycles for `plan.seconds`), stop everything."""
    report = ChaosReport()
    started = time.monotonic()
    config = SimulatorConfig(
        invoices=plan.invoices, customers=plan.customers, seed=plan.seed, rate=0,
        slow_seconds=3.0,
    )  # fmt: skip
    redis = EmbeddedRedis(workdir / "redis", port=free_port())
    with redis, running_simulator(config) as running:
        running.simulator.webhooks.backoff = WEBHOOK_BACKOFF
        # The service's Retry-After (30 s while Redis is down, 10 s for a full backlog) is
        # honoured, capped at 0.25 s so that a phase need not wait it out.
        running.simulator.webhooks.retry_after_cap = 0.25
        running.simulator.webhooks.retry_after_attempts = 200
        history = TruthHistory()
        with service_process(_service_env(running, redis, plan), workdir) as service:
            running.simulator.webhooks.subscribe(
                config.company_ids[0],
                name="chaos",
                callback_url=f"{service.url}/api/simpro/webhooks",
                secret=WEBHOOK_SECRET,
                events=COUNTED_EVENTS,
            )
            wait_until_counted(service.url)
            with httpx.Client(base_url=service.url, timeout=60.0, headers=AUTH) as client:
                for group in REFRESH_GROUPS:  # every metric has a value before the chaos
                    client.post(f"/api/simpro/{group}/refresh")
            if not _wait_for_values(service.url, None, 30):
                raise AssertionError(f"metrics without a value: {_values(service.url)}")
            activity = Activity(running, history, plan.activity_every)
            activity.record_now()
            refresher = Refresher(service.url, plan.refresh_every, report.refreshes)
            run = _Run(plan, report, redis, running, service.url, activity, refresher)
            with (
                _rss_sampler(service.process.pid, report.rss_kib, plan.rss_every),
                _readers(service.url, history, report.reads, plan),
                activity,
                refresher,
            ):
                cycles_until = started + plan.seconds
                run.cycle()
                while time.monotonic() < cycles_until:
                    run.cycle()
                run.settle()
            report.changes = activity.changes
            outcomes = _delivery_outcomes(service.url)
            report.deliveries_refused_503 = sum(outcomes.get(o, 0) for o in REFUSED_503)
            report.deliveries_refused_backlog = outcomes.get("backlog_full", 0)
        _deliveries(running, report)
    report.seconds = time.monotonic() - started
    return report


def _delivery_outcomes(url: str) -> dict[str, int]:
    """The service's webhook deliveries by outcome, read from its `/metrics`."""
    text = httpx.get(f"{url}/metrics", timeout=30.0).text
    outcomes: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == DELIVERIES_METRIC:
                outcomes[sample.labels["outcome"]] = int(sample.value)
    return outcomes
