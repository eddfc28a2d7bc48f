"""The lock one refresh of a group holds across every replica, kept alive while it runs.

`SET NX PX` with a random token, extended by a heartbeat three times per TTL (two missed
beats still leave it held) and released by compare-and-delete, so a killed holder frees
it within the TTL. A holder whose heartbeat finds the lock gone (it expired, another
replica took it) is cancelled rather than left to publish under a lock it no longer has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from types import TracebackType
from typing import Any

from simpro_counter.errors import RefreshRunningError
from simpro_counter.keys import LOCK_TTL_SECONDS
from simpro_counter.store.base import Store
from simpro_counter.store.tasks import stop_task

log = logging.getLogger("simpro_counter.refresh")


class RefreshLock:
    """`async with RefreshLock(store, "customers"):` runs the body under the group's lock.

    Entering raises :class:`RefreshRunningError` when another holder has it. While the
    body runs, a heartbeat extends the lock; if an extension fails, the task that entered
    is cancelled (:attr:`lost` tells why). Leaving, however the body ended, releases the
    lock (only if it is still this holder's).
    """

    def __init__(self, store: Store, group: str, *, ttl: float = LOCK_TTL_SECONDS) -> None:
        self._store = store
        self.group = group
        self._ttl_ms = int(ttl * 1000)
        self._beat = ttl / 3
        self.token = secrets.token_hex(16)
        """This holder's token (the lock's value while it holds it)."""
        self.lost = False
        """True once the heartbeat found the lock taken away and cancelled the holder."""
        self._holder: asyncio.Task[Any] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._leaving = False

    async def __aenter__(self) -> RefreshLock:
        if not await self._store.acquire_lock(self.group, self.token, self._ttl_ms):
            raise RefreshRunningError(f"a refresh of {self.group} is already running elsewhere")
        self._holder = asyncio.current_task()
        self._heartbeat = asyncio.create_task(self._keep())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._leaving = True  # from here on a failed extension cancels nothing
        try:
            if self._heartbeat is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await stop_task(self._heartbeat)
        finally:
            await self._store.release_lock(self.group, self.token)

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self._beat)
            if not await self._store.extend_lock(self.group, self.token, self._ttl_ms):
                if self._leaving or self._holder is None:
                    return
                log.warning("Refresh of %s lost its lock; stopping it", self.group)
                self.lost = True
                self._holder.cancel()
                return
