"""The Simpro REST API client: authentication, rate limiting, retries and pagination.

No caching and nothing web-facing lives here.
"""

from simpro_counter.simpro.client import Page, RequestStats, SimproClient
from simpro_counter.simpro.ids import parse_id

__all__ = ["Page", "RequestStats", "SimproClient", "parse_id"]
