"""Stopping background tasks reliably."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for it to end.

    Cancels again until it does: redis-py can swallow a cancellation that arrives while
    it connects, and the task would otherwise run on. The task's own error, if it ended
    with one, is raised.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)
    with contextlib.suppress(asyncio.CancelledError):
        task.result()
