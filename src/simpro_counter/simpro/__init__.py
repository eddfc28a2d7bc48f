"""The Simpro REST API client: authentication, rate limiting, retries and pagination.

No caching and nothing web-facing lives here. IDs are parsed by
:func:`simpro_counter.ids.parse_id`, which needs none of this package's dependencies.
"""

from simpro_counter.simpro.answers import Page, RequestStats
from simpro_counter.simpro.client import SimproClient
from simpro_counter.simpro.config import SimproConfig

__all__ = ["Page", "RequestStats", "SimproClient", "SimproConfig"]
