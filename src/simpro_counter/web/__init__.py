"""The HTTP service: the original's four endpoints, health, metrics and (later) pages."""

from simpro_counter.web.app import create_app

__all__ = ["create_app"]
