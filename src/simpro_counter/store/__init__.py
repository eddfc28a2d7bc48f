"""Where values live: Redis, memory, the resilient pair of both, and the embedded Redis."""

from simpro_counter.store.base import StorageName, Store
from simpro_counter.store.connection import connect
from simpro_counter.store.embedded import EmbeddedRedis
from simpro_counter.store.memory import MemoryStore
from simpro_counter.store.redis_store import RedisStore
from simpro_counter.store.resilient import ResilientStore
from simpro_counter.store.values import MetricValue, RefreshStatus

__all__ = [
    "EmbeddedRedis",
    "MemoryStore",
    "MetricValue",
    "RedisStore",
    "RefreshStatus",
    "ResilientStore",
    "StorageName",
    "Store",
    "connect",
]
