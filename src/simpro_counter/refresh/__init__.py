"""Refreshes of the counters: the refresher, its lock, its recorder and its strategies.

`from simpro_counter.refresh import Refresher, RefreshMode, CUSTOMERS` is what the
service, the scheduler and the CLI use; the pieces are importable for tests.
"""

from simpro_counter.publishing import built_on_ledger, can_sync

from .backoff import Failures, TriggerBackoff
from .lock import RefreshLock
from .recorder import RefreshMode, RefreshRecorder, RefreshRun
from .refresher import CUSTOMERS, Refresher
from .strategies import (
    Computed,
    CountStrategy,
    FullStrategy,
    IncrementalStrategy,
    SimproSource,
    Strategy,
)

__all__ = [
    "CUSTOMERS",
    "Computed",
    "CountStrategy",
    "Failures",
    "FullStrategy",
    "IncrementalStrategy",
    "RefreshLock",
    "RefreshMode",
    "RefreshRecorder",
    "RefreshRun",
    "Refresher",
    "SimproSource",
    "Strategy",
    "TriggerBackoff",
    "built_on_ledger",
    "can_sync",
]
