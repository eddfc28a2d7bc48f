"""Async client for Simpro list and record endpoints.

Requests share one rate limiter at the build's limit (at most that many starts in any
second, slowing down on a 429: see `limiter.py`) and a cap on requests in flight; each is
retried on transient failures (see `retry.py`). Lists are paged
concurrently once the first page reveals `Result-Pages`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx
import stamina

from simpro_counter.errors import (
    SimproAuthError,
    SimproDataError,
    SimproRequestError,
    SimproUnavailableError,
)
from simpro_counter.simpro.answers import (
    Page,
    Params,
    Record,
    RequestStats,
    int_header,
    records_of,
    simpro_message,
)
from simpro_counter.simpro.auth import ApiKeyAuth, ClientCredentialsAuth
from simpro_counter.simpro.config import SimproConfig
from simpro_counter.simpro.limiter import RateLimiter
from simpro_counter.simpro.retry import (
    TransientError,
    backoff_for,
    backoff_for_unsafe,
    describe,
    parse_retry_after,
)


class SimproClient:
    """A company-scoped Simpro API client. Use as `async with SimproClient(config) as client`."""

    def __init__(
        self,
        config: SimproConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.config = config
        self.stats = RequestStats()
        auth: httpx.Auth
        if config.api_key is not None:
            auth = ApiKeyAuth(config.api_key)
        else:
            assert config.client_id
            assert config.client_secret
            token_url = config.base_url.rstrip("/") + "/oauth2/token"
            auth = ClientCredentialsAuth(token_url, config.client_id, config.client_secret)
        self._http = httpx.AsyncClient(
            base_url=config.api_root,
            auth=auth,
            transport=transport,
            timeout=config.timeout,
            headers={"Accept": "application/json", "User-Agent": "simpro-counter"},
            limits=httpx.Limits(max_connections=config.max_in_flight),
        )
        # No burst on top of the limit, whatever the build's limiter: other integrations
        # sharing the build's quota keep their share.
        self.limiter = limiter or RateLimiter(config.rate_limit)
        self._in_flight = asyncio.Semaphore(config.max_in_flight)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def company_path(self, resource: str) -> str:
        """`invoices` → `companies/{id}/invoices/`."""
        return f"companies/{self.config.company_id}/{resource.strip('/')}/"

    # --- lists ---------------------------------------------------------------------------

    async def page(
        self,
        resource: str,
        number: int,
        *,
        columns: Sequence[str] = (),
        params: Params | None = None,
        page_size: int | None = None,
        if_modified_since: str | None = None,
    ) -> Page:
        """One page of a company-scoped list."""
        query: dict[str, str | int] = dict(params or {})
        query["page"] = number
        query["pageSize"] = page_size or self.config.page_size
        if columns:
            query["columns"] = ",".join(columns)
        headers = {"If-Modified-Since": if_modified_since} if if_modified_since else None
        path = self.company_path(resource)
        response, body = await self.get_json(path, query, headers=headers)
        if response.status_code == httpx.codes.NOT_MODIFIED:
            return Page(number, [], 0, 0, response.headers.get("Date"), not_modified=True)
        return Page(
            number=number,
            records=records_of(body, f"GET {path} page {number}"),
            total=int_header(response, "Result-Total"),
            page_count=int_header(response, "Result-Pages"),
            date=response.headers.get("Date"),
        )

    async def pages(
        self,
        resource: str,
        *,
        columns: Sequence[str] = (),
        params: Params | None = None,
        page_size: int | None = None,
        if_modified_since: str | None = None,
        page_count_hint: int | None = None,
    ) -> AsyncIterator[Page]:
        """Every page of a list, in completion order (not page order).

        Page 1 is fetched alone; once it reveals `Result-Pages` the rest are fetched
        concurrently under the rate limit. Without `Result-Pages`, pages are read one after
        another until a short page. A caller that already knows about how many pages there
        are (`page_count_hint`) saves that first round trip: pages 1 to the hint are
        fetched concurrently at once, and any beyond it that the answers reveal after.
        """
        size = page_size or self.config.page_size

        def fetch(number: int) -> Coroutine[Any, Any, Page]:
            return self.page(
                resource,
                number,
                columns=columns,
                params=params,
                page_size=size,
                if_modified_since=if_modified_since,
            )

        if page_count_hint:
            last_seen: Page | None = None
            reported = 0
            async for page in self._concurrently(range(1, page_count_hint + 1), fetch):
                reported = max(reported, page.page_count or 0)
                if page.number == page_count_hint:
                    last_seen = page
                yield page
            if reported > page_count_hint:
                async for page in self._concurrently(
                    range(page_count_hint + 1, reported + 1), fetch
                ):
                    yield page
            elif not reported and last_seen is not None:
                async for page in self._one_after_another(last_seen, size, fetch):
                    yield page
            return

        first = await fetch(1)
        yield first
        if first.not_modified:
            return
        if first.page_count is not None:
            async for page in self._concurrently(range(2, first.page_count + 1), fetch):
                yield page
            return
        async for page in self._one_after_another(first, size, fetch):
            yield page

    @staticmethod
    async def _one_after_another(
        page: Page, size: int, fetch: Callable[[int], Awaitable[Page]]
    ) -> AsyncIterator[Page]:
        """Without `Result-Pages`: the next page while the last one was full."""
        while len(page.records) >= size:
            page = await fetch(page.number + 1)
            yield page

    async def records(
        self,
        resource: str,
        *,
        columns: Sequence[str] = (),
        params: Params | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Record]:
        """Every record of a list (see :meth:`pages` for how it is paged)."""
        async for page in self.pages(resource, columns=columns, params=params, page_size=page_size):
            for record in page.records:
                yield record

    async def count(self, resource: str, *, params: Params | None = None) -> int:
        """How many records a list holds, from `Result-Total`, for the cost of one request."""
        page = await self.page(resource, 1, columns=("ID",), params=params, page_size=1)
        if page.total is None:
            raise SimproDataError(
                f"GET {self.company_path(resource)} sent no Result-Total header, so the "
                "number of records cannot be checked"
            )
        return page.total

    async def record(self, resource: str, record_id: int) -> Record | None:
        """One record by ID, or None when Simpro says it does not exist (404)."""
        path = f"{self.company_path(resource)}{record_id}"
        try:
            _, body = await self.get_json(path, {})
        except SimproRequestError as exc:
            if exc.status == httpx.codes.NOT_FOUND:
                return None
            raise
        if not isinstance(body, dict):
            raise SimproDataError(f"GET {path} sent {type(body).__name__}, not a JSON object")
        return body

    async def _concurrently(
        self, numbers: range, fetch: Callable[[int], Awaitable[Page]]
    ) -> AsyncIterator[Page]:
        """Fetch pages with a pool of workers, yielding each page as it arrives."""
        if not numbers:
            return
        # Bounded, so pages cannot pile up in memory when the consumer is slower.
        done: asyncio.Queue[Page | Exception] = asyncio.Queue(self.config.max_in_flight * 2)
        todo = iter(numbers)

        async def worker() -> None:
            for number in todo:  # one shared iterator: each worker takes the next number
                try:
                    page = await fetch(number)
                except Exception as exc:
                    await done.put(exc)
                    return
                await done.put(page)

        workers = [
            asyncio.create_task(worker())
            for _ in range(min(self.config.max_in_flight, len(numbers)))
        ]
        try:
            for _ in numbers:
                item = await done.get()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    # --- requests ------------------------------------------------------------------------

    async def get_json(
        self, path: str, params: Params, *, headers: Mapping[str, str] | None = None
    ) -> tuple[httpx.Response, Any]:
        """GET a path under the API root with retries; the response and its decoded body."""
        return await self.request_json("GET", path, params=params, headers=headers)

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[httpx.Response, Any]:
        """Send a request under the API root with retries; the response and its decoded body.

        GET is retried on every transient failure. Other methods are not idempotent, so
        they are retried only when Simpro certainly did not act: a 429, or a connection
        that could not be opened.
        """
        started = time.monotonic()
        attempts = 0
        try:
            async for attempt in stamina.retry_context(
                on=backoff_for if method == "GET" else backoff_for_unsafe,
                attempts=self.config.retry_attempts,
                timeout=self.config.retry_timeout,
                wait_initial=0.25,
                wait_max=10.0,
                wait_jitter=0.5,
            ):
                with attempt:
                    attempts = attempt.num
                    if attempts > 1:
                        self.stats.retries += 1
                    return await self._attempt(method, path, params, json, headers)
        except (TransientError, httpx.TransportError, httpx.DecodingError) as exc:
            elapsed = time.monotonic() - started
            raise SimproUnavailableError(
                f"{method} {path} failed {attempts} times in {elapsed:.1f}s; last: {describe(exc)}"
            ) from exc
        raise AssertionError("stamina ended without a result or an error")  # pragma: no cover

    async def _attempt(
        self,
        method: str,
        path: str,
        params: Params | None,
        json: Any,
        headers: Mapping[str, str] | None,
    ) -> tuple[httpx.Response, Any]:
        async with self._in_flight:
            permit = await self.limiter.acquire()
            self.stats.requests += 1
            response = await self._http.request(
                method, path, params=params, json=json, headers=headers
            )
        status = response.status_code
        self.stats.by_status[status] += 1
        if status == httpx.codes.TOO_MANY_REQUESTS:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            # Every request waits out a Retry-After, not only this one's retry; stamina's
            # testing mode turns retry waits off, and so this one.
            self.limiter.rate_limited(permit, None if stamina.is_testing() else retry_after)
            raise TransientError(
                "429 Too Many Requests (rate limited)", retry_after=retry_after, rate_limited=True
            )
        self.limiter.succeeded(permit)
        if status == httpx.codes.NOT_MODIFIED:
            return response, []
        if status >= httpx.codes.INTERNAL_SERVER_ERROR:
            raise TransientError(f"{status} {response.reason_phrase}: {simpro_message(response)}")
        if status in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            raise SimproAuthError(
                f"{status} {response.reason_phrase} from Simpro for {method} {path}: "
                f"{simpro_message(response)}; check {self.config.credential_setting}"
            )
        if status >= httpx.codes.BAD_REQUEST:
            raise SimproRequestError(
                f"{status} {response.reason_phrase} from Simpro for {method} {path}: "
                f"{simpro_message(response)}",
                status=status,
            )
        if status == httpx.codes.NO_CONTENT or not response.content:
            return response, None
        try:
            return response, response.json()
        except ValueError:
            # A body cut short by a proxy or a dropped connection: worth another try.
            raise TransientError(
                f"{status} with an invalid JSON body ({len(response.content)} bytes)"
            ) from None
