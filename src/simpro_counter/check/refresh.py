"""The checks of refreshing: the status, `/api/init`, and `POST refresh` with no token, a
wrong one and the right one (in the background, then in the foreground)."""

from __future__ import annotations

import secrets

import httpx

from simpro_counter.check.probe import (
    TIMEOUT,
    Body,
    CheckError,
    Probe,
    answer,
    json_object,
    parse,
    status_line,
)
from simpro_counter.contract import CountRefreshed, CountStatus, InitAnswer, RefreshStarted

REFRESH = "/api/simpro/customers/refresh"
# Seconds between polls of the refresh status while a refresh runs.
_POLL_SECONDS = 0.5


class RefreshChecks:
    """Each method is one check: its detail line, or :class:`CheckError` saying why not."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def status(self) -> str:
        status = answer(await self.probe.request("GET", REFRESH), 200, CountStatus)
        count = "none yet" if status.count is None else f"{status.count:,}"
        refreshing = ", refreshing now" if status.is_refreshing else ""
        return f"count {count}, ttl {status.ttl} s, storage {status.storage}{refreshing}"

    async def init(self) -> str:
        init = answer(await self.probe.request("GET", "/api/init"), 200, InitAnswer)
        if init.success is not True:
            raise CheckError("field success: expected true, got false")
        if init.message != "Initialization completed":
            raise CheckError(
                f"field message: expected 'Initialization completed', got {init.message!r}"
            )
        return init.message

    async def post_without_token(self) -> str:
        # background=true: should the server wrongly accept it, it does not scan in our face.
        response = await self.probe.request("POST", REFRESH, params={"background": "true"})
        if response.status_code == 401:
            return "401: refused (ADMIN_TOKEN is set on the server)"
        if response.status_code == 403:
            return (
                "403: ADMIN_TOKEN is not set on the server, so this deployment cannot be "
                "refreshed over HTTP (the scheduler still refreshes stale values)"
            )
        raise CheckError(
            f"expected 401 or 403, got {status_line(response)}: anyone can trigger a refresh"
        )

    async def post_wrong_token(self) -> str:
        wrong = "wrong-" + secrets.token_hex(8)
        response = await self.probe.request(
            "POST", REFRESH, headers=_auth(wrong), params={"background": "true"}
        )
        if response.status_code == 401:
            return "401: a wrong token is refused"
        if response.status_code == 403:
            return "403: no ADMIN_TOKEN on the server, so no token is accepted"
        if response.status_code == 429:
            return "429: refused, wrong tokens from here are being throttled"
        raise CheckError(f"expected 401, got {status_line(response)}: a wrong token was accepted")

    async def background_refresh(self, token: str) -> str:
        response = await self.probe.request(
            "POST", REFRESH, headers=_auth(token), params={"background": "true"}
        )
        _refused(response)
        if response.status_code == 409:
            started = "409: a refresh was already running; waited for it"
        elif response.status_code == 202:
            if json_object(response, 202).get("success") is not True:
                raise CheckError("202 but field success is not true")
            answer(response, 202, RefreshStarted)
            started = "202 Accepted"
        else:
            raise CheckError(f"expected 202 (or 409), got {status_line(response)}")
        status = await self._finished_refresh(token)
        if status.count is None:
            raise CheckError("after the refresh: field count: expected int, got null")
        error = _latest_error(status)
        if error is not None:
            raise CheckError(f"the refresh failed: lastError {error!r}")
        earlier = " (lastError still shows an earlier failure)" if status.last_error else ""
        return f"{started}; the refresh finished with count {status.count:,}{earlier}"

    async def _finished_refresh(self, token: str) -> CountStatus:
        def ready(response: httpx.Response, body: Body) -> bool:
            refreshing = body.get("isRefreshing")
            if not isinstance(refreshing, bool):
                raise CheckError(f"field isRefreshing: expected bool, got {refreshing}")
            return not refreshing

        polled = await self.probe.poll(
            REFRESH,
            ready=ready,
            pause=lambda response: _POLL_SECONDS,
            timed_out=lambda requests: f"still refreshing after {self.probe.wait:.0f} s",
            headers=_auth(token),  # with the token, `lastError` is the error itself
        )
        return parse(CountStatus, polled.body, context="after the refresh: ")

    async def foreground_refresh(self, token: str) -> str:
        response = await self.probe.request(
            "POST",
            REFRESH,
            headers=_auth(token),
            seconds=max(self.probe.wait, TIMEOUT),
            timeout_hint=" (a full scan of a large build can take longer: raise --wait)",
        )
        _refused(response)
        if response.status_code == 409:
            return "409: another refresh is running (not an error; try again later)"
        if response.status_code == 502:
            error = json_object(response, 502).get("error")
            raise CheckError(f"502: the refresh failed (Simpro): {error}")
        refreshed = answer(response, 200, CountRefreshed)
        if refreshed.total_invoices is None or refreshed.duration is None:
            missing = "totalInvoices" if refreshed.total_invoices is None else "duration"
            raise CheckError(f"field {missing}: expected a number, got null")
        if refreshed.success is not True:
            raise CheckError("field success: expected true, got false")
        return (
            f"count {refreshed.count:,} from {refreshed.total_invoices:,} invoices "
            f"in {refreshed.duration} s, storage {refreshed.storage}"
        )


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _refused(response: httpx.Response) -> None:
    if response.status_code == 401:
        raise CheckError("401: the token was refused (is it the server's ADMIN_TOKEN?)")
    if response.status_code == 403:
        raise CheckError(
            "403: ADMIN_TOKEN is not set on the server, so refreshing over HTTP is off"
        )
    if response.status_code == 429:
        wait = response.headers.get("Retry-After", "?")
        raise CheckError(f"429: too many wrong tokens were sent lately; try again in {wait} s")


def _latest_error(status: CountStatus) -> str | None:
    """`lastError` if the latest refresh failed; an error older than the last success is not."""
    if status.last_error is None:
        return None
    failed_at, succeeded_at = status.last_error_at, status.last_success_at
    # Both are validated ISO times in UTC written the same way: they sort as strings.
    if failed_at is not None and succeeded_at is not None and failed_at < succeeded_at:
        return None
    return status.last_error
